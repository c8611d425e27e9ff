"""Which migration operations break the code that is still running during a rolling deploy.

While a release rolls out, the previous version's code keeps serving against the migrated
schema. These operations break it: removing or renaming a column or table it reads, and
making a column NOT NULL that its INSERTs leave out. Django adds a column's default only
while adding it (it drops the database default afterwards), so an added NOT NULL column is
safe for old INSERTs only with `db_default`; a nullable column made NOT NULL is never safe,
because the old model still writes NULL into it explicitly.

Pure: it looks at operation objects and the field as it was before, never at a database.
`RunSQL` and `RunPython` are opaque and not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import models
from django.db.migrations import operations
from django.db.migrations.operations.base import Operation
from django.db.models.fields import NOT_PROVIDED


@dataclass(frozen=True)
class Finding:
    migration: str  # "app.name"
    operation: str
    reason: str

    def __str__(self) -> str:
        return f"{self.migration}: {self.operation} — {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"migration": self.migration, "operation": self.operation, "reason": self.reason}


# (model_name, field_name) -> the field before this migration, or None if unknown.
FieldBefore = Callable[[str, str], models.Field | None]


def backward_incompatible(
    migration: str, ops: Iterable[Operation], *, field_before: FieldBefore
) -> list[Finding]:
    findings: list[Finding] = []
    for op in ops:
        if isinstance(op, operations.SeparateDatabaseAndState):
            # Only what reaches the database matters to running code.
            findings += backward_incompatible(
                migration, op.database_operations, field_before=field_before
            )
            continue
        reason = _reason(op, field_before)
        if reason:
            findings.append(Finding(migration, op.describe(), reason))
    return findings


def _reason(op: Operation, field_before: FieldBefore) -> str | None:
    if isinstance(op, operations.RemoveField):
        return "drops a column the running code still selects"
    if isinstance(op, operations.RenameField):
        return "renames a column the running code still uses by its old name"
    if isinstance(op, operations.DeleteModel):
        return "drops a table the running code still uses"
    if isinstance(op, operations.RenameModel):
        return "renames a table the running code still uses by its old name"
    if isinstance(op, operations.AddField) and _not_null_without_db_default(op.field):
        return "adds a NOT NULL column without db_default: the running code's INSERTs fail"
    if isinstance(op, operations.AlterField) and not op.field.null:
        before = field_before(op.model_name, op.name)
        if before is not None and before.null:
            # The old code's model still says null=True and writes NULL explicitly, so
            # no default (Python or database) saves its INSERTs and UPDATEs.
            return "makes a nullable column NOT NULL: the running code still writes NULL"
    return None


def _not_null_without_db_default(field: models.Field) -> bool:
    if field.null or field.many_to_many:
        return False
    return field.db_default is NOT_PROVIDED
