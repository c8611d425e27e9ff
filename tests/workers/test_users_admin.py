"""Django's user and group admin under the one rule: the admin history (who started which
job, who switched, retried or discarded what, and when) outlives the people in it, and
changing users or groups is no way to more permissions than one holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from tests.support.html_checks import html_problems
from workers.enqueue import Requester
from workers.models import Job
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db


def admin_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    return client


def test_a_user_who_started_a_job_is_kept_with_their_history_not_deleted(
    sqs_queues: Any,
) -> None:
    """Django deletes a user's LogEntry rows with the user: deleting one whose job is still
    queued or running would leave that job without the entry saying who asked. The user's
    page offers no Delete, its URL refuses, and "delete selected" leaves them out, saying
    so; a user with no history is deleted as before."""
    users = get_user_model().objects
    starter = users.create_user("starter", is_staff=True)
    run = diagnostic_run_start(requester=Requester.for_user(starter), fail=False)
    newcomer = users.create_user("newcomer", is_staff=True)
    client = admin_client()

    page = client.get(reverse("admin:auth_user_change", args=[starter.pk])).content.decode()
    assert reverse("admin:auth_user_delete", args=[starter.pk]) not in page
    assert (
        client.post(
            reverse("admin:auth_user_delete", args=[starter.pk]), {"post": "yes"}
        ).status_code
        == 403
    )

    selected = {"action": "delete_selected", "_selected_action": [starter.pk, newcomer.pk]}
    asked = client.post(reverse("admin:auth_user_changelist"), selected).content.decode()
    assert "Not deleted, kept by their admin history" in asked and "starter" in asked
    client.post(reverse("admin:auth_user_changelist"), {**selected, "post": "yes"})

    left = users.filter(username__in=["starter", "newcomer"]).values_list("username", flat=True)
    assert list(left) == ["starter"]
    assert LogEntry.objects.filter(user=starter).count() == 1  # "Queued job …"
    assert Job.objects.get(task_id=run.task_id).requested_by == starter


def staff_with(username: str, *codenames: str) -> Any:
    """A staff member holding the auth permissions `codenames` (e.g. "change_user")."""
    user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="auth", codename__in=codenames)
    )
    return user


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def user_form(user: Any, **changes: Any) -> dict[str, Any]:
    """The user page's form as it was filled in for `user`, with `changes`."""
    fields = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        **changes,
    }
    return {name: value for name, value in fields.items() if value != ""}


def test_a_staff_member_who_changes_users_cannot_grant_permissions_even_their_own() -> None:
    """Django's user page let whoever may change users tick "Superuser status" or any
    permission or group, on their own account too. Only a superuser changes those; the
    rest of the page (names, e-mail, active, staff) is saved as before."""
    helpdesk = staff_with("helpdesk", "view_user", "change_user")
    client = signed_in(helpdesk)
    url = reverse("admin:auth_user_change", args=[helpdesk.pk])

    page = client.get(url).content.decode()
    assert html_problems(page) == []
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    assert 'name="groups"' not in page and 'name="first_name"' in page

    every_permission = [str(pk) for pk in Permission.objects.values_list("pk", flat=True)]
    group = Group.objects.create(name="Everything")
    group.permissions.set(Permission.objects.all())
    saved = client.post(
        url,
        user_form(
            helpdesk,
            first_name="Hana",
            is_superuser="on",
            user_permissions=every_permission,
            groups=[str(group.pk)],
        ),
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]

    helpdesk.refresh_from_db()
    assert helpdesk.first_name == "Hana"
    assert not helpdesk.is_superuser
    assert not helpdesk.groups.exists()
    assert set(helpdesk.user_permissions.values_list("codename", flat=True)) == {
        "view_user",
        "change_user",
    }


def test_a_superuser_grants_permissions_and_groups_on_the_user_page_as_before() -> None:
    root = get_user_model().objects.create_superuser("root")
    member = staff_with("member")
    group = Group.objects.create(name="Viewers")
    view_user = Permission.objects.get(content_type__app_label="auth", codename="view_user")

    saved = signed_in(root).post(
        reverse("admin:auth_user_change", args=[member.pk]),
        user_form(member, user_permissions=[str(view_user.pk)], groups=[str(group.pk)]),
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert list(member.user_permissions.all()) == [view_user]
    assert list(member.groups.all()) == [group]


def test_an_account_holding_more_than_the_staff_member_is_theirs_to_look_at_only() -> None:
    """A superuser, or someone with a permission the staff member lacks (even while
    deactivated: reactivating them would hand it on), is shown read-only: no saving, no
    new password, not deleted in bulk, and the list says why. Accounts holding nothing
    more are changed, given a password and deleted as before."""
    users = get_user_model().objects
    helpdesk = staff_with("helpdesk", "view_user", "change_user", "delete_user")
    root = users.create_superuser("root")
    stronger = staff_with("stronger", "view_user", "change_user", "add_user")
    stronger.is_active = False
    stronger.save()
    peer = staff_with("peer", "view_user")
    client = signed_in(helpdesk)

    for above in (root, stronger):
        url = reverse("admin:auth_user_change", args=[above.pk])
        response = client.get(url)
        page = response.content.decode()
        assert response.status_code == 200 and html_problems(page) == []
        assert 'name="_save"' not in page and 'name="username"' not in page
        assert client.post(url, user_form(above, is_active="on")).status_code == 403
        password_url = reverse("admin:auth_user_password_change", args=[above.pk])
        assert client.get(password_url).status_code == 403
        new_password = {"password1": "n3w-Passw0rd!x", "password2": "n3w-Passw0rd!x"}
        assert client.post(password_url, new_password).status_code == 403
    stronger.refresh_from_db()
    assert not stronger.is_active
    assert not users.get(pk=root.pk).check_password("n3w-Passw0rd!x")

    peer_url = reverse("admin:auth_user_change", args=[peer.pk])
    assert client.post(peer_url, user_form(peer, last_name="Lee")).status_code == 302
    assert users.get(pk=peer.pk).last_name == "Lee"
    password_url = reverse("admin:auth_user_password_change", args=[peer.pk])
    assert client.get(password_url).status_code == 200

    selected = {"action": "delete_selected", "_selected_action": [root.pk, stronger.pk, peer.pk]}
    asked = client.post(reverse("admin:auth_user_changelist"), selected).content.decode()
    assert "Not deleted, they hold permissions you do not: root, stronger." in asked
    client.post(reverse("admin:auth_user_changelist"), {**selected, "post": "yes"})
    left = users.filter(username__in=["root", "stronger", "peer"]).values_list(
        "username", flat=True
    )
    assert sorted(left) == ["root", "stronger"]


def test_changing_groups_does_not_let_a_staff_member_give_a_group_permissions() -> None:
    """A group's members hold its permissions: a staff member who may change groups
    renames one, and only a superuser changes what it grants."""
    helpdesk = staff_with("helpdesk", "view_group", "change_group")
    group = Group.objects.create(name="Helpdesk")
    helpdesk.groups.add(group)
    url = reverse("admin:auth_group_change", args=[group.pk])
    every_permission = [str(pk) for pk in Permission.objects.values_list("pk", flat=True)]

    client = signed_in(helpdesk)
    assert 'name="permissions"' not in client.get(url).content.decode()
    saved = client.post(url, {"name": "Support", "permissions": every_permission})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    group.refresh_from_db()
    assert group.name == "Support" and not group.permissions.exists()
    assert not helpdesk.has_perm("auth.add_user")

    root = get_user_model().objects.create_superuser("root")
    saved = signed_in(root).post(url, {"name": "Support", "permissions": every_permission[:3]})
    assert saved.status_code == 302
    assert group.permissions.count() == 3
