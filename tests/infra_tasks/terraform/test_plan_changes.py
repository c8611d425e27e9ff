"""The structured plan from `terraform show -json`: each resource's action and changed
attributes, sensitive values hidden before anything is stored. Pure: no Django, no
terraform (the real thing's output is checked in test_runs.py)."""

from __future__ import annotations

import json
from typing import Any

from infra_tasks.terraform.plan_changes import (
    MAX_ATTRIBUTES,
    MAX_RESOURCES,
    SENSITIVE,
    UNKNOWN,
    plan_changes,
)


def resource(address: str, actions: list[str], **change: Any) -> dict[str, Any]:
    return {"address": address, "change": {"actions": actions, **change}}


def attributes(result: dict[str, Any], address: str) -> dict[str, tuple[Any, Any]]:
    [entry] = [r for r in result["resources"] if r["address"] == address]
    return {a["name"]: (a["before"], a["after"]) for a in entry["attributes"]}


def test_an_update_lists_only_the_attributes_that_change_before_and_after() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                resource(
                    "aws_instance.web",
                    ["update"],
                    before={"instance_type": "t3.small", "ami": "ami-1", "tags": {"env": "dev"}},
                    after={"instance_type": "t3.large", "ami": "ami-1", "tags": {"env": "prod"}},
                    after_unknown={},
                )
            ]
        }
    )
    assert result["resources"][0]["action"] == "update"
    assert attributes(result, "aws_instance.web") == {
        "instance_type": ('"t3.small"', '"t3.large"'),
        "tags.env": ('"dev"', '"prod"'),
    }


def test_sensitive_values_are_hidden_at_any_depth_and_never_reach_the_result() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                resource(
                    "aws_db_instance.main",
                    ["update"],
                    before={"password": "old-secret-1", "settings": {"token": "tok-a", "n": 1}},
                    after={"password": "new-secret-2", "settings": {"token": "tok-b", "n": 1}},
                    before_sensitive={"password": True, "settings": {"token": True}},
                    after_sensitive={"password": True, "settings": {"token": True}},
                    after_unknown={},
                )
            ],
            "output_changes": {
                "dsn": {
                    "actions": ["create"],
                    "before": None,
                    "after": "postgres://u:new-secret-2@h/db",
                    "after_sensitive": True,
                }
            },
        }
    )
    text = json.dumps(result)
    for secret in ("old-secret-1", "new-secret-2", "tok-a", "tok-b"):
        assert secret not in text
    assert attributes(result, "aws_db_instance.main") == {
        "password": (SENSITIVE, SENSITIVE),  # changed: shown, values hidden
        "settings.token": (SENSITIVE, SENSITIVE),
    }
    assert result["outputs"] == [
        {"address": "output.dsn", "action": "create", "before": None, "after": SENSITIVE}
    ]


def test_an_unchanged_sensitive_value_is_not_listed() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                resource(
                    "x.y",
                    ["update"],
                    before={"password": "same", "size": 1},
                    after={"password": "same", "size": 2},
                    before_sensitive={"password": True},
                    after_sensitive={"password": True},
                )
            ]
        }
    )
    assert attributes(result, "x.y") == {"size": ("1", "2")}


def test_a_replacement_names_the_attribute_that_forces_it_and_its_reason() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                {
                    "address": "aws_db_instance.main",
                    "action_reason": "replace_because_cannot_update",
                    "change": {
                        "actions": ["delete", "create"],
                        "before": {"engine_version": "15", "id": "db-1"},
                        "after": {"engine_version": "16"},
                        "after_unknown": {"id": True},
                        "replace_paths": [["engine_version"]],
                    },
                }
            ]
        }
    )
    [entry] = result["resources"]
    assert (entry["action"], entry["reason"]) == ("replace", "must be replaced")
    rows = {a["name"]: a for a in entry["attributes"]}
    assert rows["engine_version"]["forces_replacement"] is True
    assert (rows["id"]["before"], rows["id"]["after"]) == ('"db-1"', UNKNOWN)
    assert rows["id"]["forces_replacement"] is False


def test_create_shows_what_will_be_set_and_delete_what_is_removed() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                resource(
                    "new.one",
                    ["create"],
                    before=None,
                    after={"name": "n", "list": ["a", "b"], "unset": None},
                    after_unknown={"id": True},
                ),
                resource("old.one", ["delete"], before={"name": "o"}, after=None),
                resource("same.one", ["no-op"], before={"a": 1}, after={"a": 1}),
                resource("data.aws_ami.x", ["read"], before=None, after={}, after_unknown={}),
            ]
        }
    )
    assert [r["address"] for r in result["resources"]] == ["new.one", "old.one", "data.aws_ami.x"]
    assert attributes(result, "new.one") == {
        "name": (None, '"n"'),
        "list[0]": (None, '"a"'),
        "list[1]": (None, '"b"'),
        "id": (None, UNKNOWN),
    }
    assert attributes(result, "old.one") == {"name": ('"o"', None)}


def test_a_value_becoming_unknown_shows_the_old_one_whole() -> None:
    result = plan_changes(
        {
            "resource_changes": [
                resource(
                    "terraform_data.app",
                    ["update"],
                    before={"output": {"name": "app", "pw": "hidden"}},
                    after={},
                    before_sensitive={"output": {"pw": True}},
                    after_unknown={"output": True},
                )
            ]
        }
    )
    assert attributes(result, "terraform_data.app") == {
        "output": (f'{{"name": "app", "pw": "{SENSITIVE}"}}', UNKNOWN)
    }


def test_redact_hides_known_secrets_terraform_did_not_mark() -> None:
    result = plan_changes(
        {"resource_changes": [resource("a.b", ["create"], before=None, after={"x": "s3cr3t"})]},
        redact=lambda text: text.replace("s3cr3t", "[REDACTED]"),
    )
    assert attributes(result, "a.b") == {"x": (None, '"[REDACTED]"')}


def test_huge_plans_are_bounded() -> None:
    many = [
        resource(f"r.n{i}", ["create"], before=None, after={"v": "x" * 1000})
        for i in range(MAX_RESOURCES + 5)
    ]
    wide = resource(
        "r.wide", ["create"], before=None, after={f"a{i}": i for i in range(MAX_ATTRIBUTES + 9)}
    )
    result = plan_changes({"resource_changes": [wide, *many]})
    assert len(result["resources"]) == MAX_RESOURCES and result["omitted"] == 6
    assert len(attributes(result, "r.wide")) == MAX_ATTRIBUTES + 1  # the last says "more"
    assert len(attributes(result, "r.n0")["v"][1]) <= 300
