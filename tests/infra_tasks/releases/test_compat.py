"""The backward-compatibility checker, on operation objects alone (no database)."""

from __future__ import annotations

from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation

from infra_tasks.releases.compat import FieldBefore, backward_incompatible
from infra_tasks.releases.selectors import fields_before


def nullable(model_name: str, field_name: str) -> models.Field:
    return models.CharField(max_length=10, null=True)


def not_null(model_name: str, field_name: str) -> models.Field:
    return models.CharField(max_length=10)


def flagged(*ops: Operation, field_before: FieldBefore = nullable) -> list[str]:
    return [f.operation for f in backward_incompatible("app.0002", ops, field_before=field_before)]


def test_removing_or_renaming_columns_and_tables_is_flagged() -> None:
    assert (
        len(
            flagged(
                migrations.RemoveField("widget", "legacy"),
                migrations.RenameField("widget", "old", "new"),
                migrations.DeleteModel("Gadget"),
                migrations.RenameModel("Thing", "Item"),
            )
        )
        == 4
    )


def test_added_column_is_safe_when_nullable_or_with_a_database_default() -> None:
    assert (
        flagged(
            migrations.AddField("widget", "a", models.CharField(max_length=5, null=True)),
            migrations.AddField("widget", "b", models.CharField(max_length=5, db_default="")),
            migrations.AddField("widget", "c", models.ManyToManyField("app.Tag")),
        )
        == []
    )


def test_added_not_null_column_without_database_default_is_flagged() -> None:
    # A Python default does not help: Django drops the column default after adding it.
    findings = backward_incompatible(
        "app.0003",
        [migrations.AddField("widget", "size", models.IntegerField(default=0))],
        field_before=nullable,
    )
    assert [str(f) for f in findings] == [
        "app.0003: Add field size to widget — adds a NOT NULL column without db_default: "
        "the running code's INSERTs fail"
    ]


def test_making_a_nullable_column_not_null_is_flagged_even_with_a_default() -> None:
    op = migrations.AlterField("widget", "code", models.CharField(max_length=10, default="x"))
    assert flagged(op, field_before=nullable) == ["Alter field code on widget"]
    assert flagged(op, field_before=not_null) == []
    relaxing = migrations.AlterField("widget", "code", models.CharField(max_length=10, null=True))
    assert flagged(relaxing, field_before=not_null) == []


def test_only_database_operations_of_separate_database_and_state_count() -> None:
    state_only = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveField("widget", "legacy")]
    )
    both = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.DeleteModel("Gadget")]
    )
    assert flagged(state_only) == []
    assert flagged(both) == ["Delete model Gadget"]


def test_opaque_operations_are_not_judged() -> None:
    assert (
        flagged(
            migrations.RunSQL("ALTER TABLE x DROP COLUMN y"),
            migrations.RunPython(migrations.RunPython.noop),
        )
        == []
    )


def test_field_before_a_migration_is_read_from_the_state_just_before_it() -> None:
    # auth.0002 widens Permission.name from 50 to 255 characters.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    before = fields_before(loader, ("auth", "0002_alter_permission_name_max_length"))
    after = fields_before(loader, ("auth", "0003_alter_user_email_max_length"))
    assert before("Permission", "name").max_length == 50  # type: ignore[union-attr]
    assert after("permission", "name").max_length == 255  # type: ignore[union-attr]
    assert before("permission", "no_such_field") is None
    assert before("NoSuchModel", "name") is None
