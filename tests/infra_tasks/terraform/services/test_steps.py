"""The environment a terraform process (and its local-exec) gets from the worker."""

from __future__ import annotations

import pytest

from infra_tasks.terraform.services.steps import environment


def test_terraform_gets_the_worker_s_tf_settings_but_no_secret_held_for_a_workspace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every TF_ variable was passed, TF_SECRET_ ones too: a workspace's local-exec could
    read the secrets the worker holds for every other workspace. Only the workspace that
    names one gets it, as its own TF_VAR_."""
    monkeypatch.setenv("TF_SECRET_OTHER_WORKSPACE_TOKEN", "other-workspace-secret")
    monkeypatch.setenv("TF_LOG", "WARN")
    monkeypatch.setenv("TF_VAR_planted", "from the worker")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "django-secret")

    env = environment({"TF_VAR_token": "this workspace's own secret"})

    assert env["TF_LOG"] == "WARN"
    assert env["TF_VAR_token"] == "this workspace's own secret"
    assert "other-workspace-secret" not in env.values()
    assert "TF_VAR_planted" not in env and "DJANGO_SECRET_KEY" not in env
