"""Who asked for a database action: the requester fields every job record has
(workers.models.RequesterFields), in place of one `origin` string.

An old row's `origin` was "<kind>: <label>" (a person, a command, the enforcement) or
"schedule" (a firing of the database's beat entry): it is split back into kind and label,
the firing named after its beat entry as new firings are. Anything else is kept whole as the
label of a system requester, so it still reads as it did.

Safe while the previous release still runs: the new columns have database defaults (its
INSERTs leave them out), and `origin` stays in the table with a database default (the new
code's INSERTs leave it out); only the model forgets it. A later release may drop the column.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.migrations.state import StateApps
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
import django.db.models.deletion

KINDS = ("user", "cli", "schedule", "system")
KIND_CHOICES = [
    ("user", "User"),
    ("cli", "Command line"),
    ("schedule", "Schedule"),
    ("system", "System"),
]


def split_origin(origin: str, *, action: str, database_name: str) -> tuple[str, str]:
    if origin == "schedule":
        label = "nightly stop" if action == "stop" else "morning start"
        return "schedule", f"rds: {label} of {database_name}"
    kind, sep, label = origin.partition(": ")
    if sep and kind in KINDS:
        return kind, label
    return "system", origin


def origin_split(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    DatabaseAction = apps.get_model("rds", "DatabaseAction")
    rows = DatabaseAction.objects.select_related("database").only(
        "origin", "action", "database__name"
    )
    batch = []
    for row in rows.iterator(chunk_size=1000):
        row.requester_kind, row.requester_label = split_origin(
            row.origin, action=row.action, database_name=row.database.name
        )
        batch.append(row)
        if len(batch) == 1000:
            DatabaseAction.objects.bulk_update(batch, ["requester_kind", "requester_label"])
            batch = []
    DatabaseAction.objects.bulk_update(batch, ["requester_kind", "requester_label"])


def origin_join(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    DatabaseAction = apps.get_model("rds", "DatabaseAction")
    DatabaseAction.objects.filter(requester_kind="schedule").update(origin="schedule")
    DatabaseAction.objects.exclude(requester_kind="schedule").update(
        origin=models.functions.Concat(
            "requester_kind", models.Value(": "), "requester_label"
        )
    )


class Migration(migrations.Migration):

    dependencies = [
        ("rds", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddField(
                    model_name="databaseaction",
                    name="requester_kind",
                    field=models.CharField(
                        choices=KIND_CHOICES, db_default="system", max_length=16
                    ),
                ),
                migrations.AddField(
                    model_name="databaseaction",
                    name="requester_label",
                    field=models.CharField(db_default="", max_length=255),
                ),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="databaseaction",
                    name="requester_kind",
                    field=models.CharField(
                        choices=KIND_CHOICES, default="system", max_length=16
                    ),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="databaseaction",
                    name="requester_label",
                    field=models.CharField(default="", max_length=255),
                    preserve_default=False,
                ),
            ],
        ),
        migrations.AddField(
            model_name="databaseaction",
            name="requested_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(origin_split, origin_join, elidable=False),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterField(
                    model_name="databaseaction",
                    name="origin",
                    field=models.CharField(
                        db_default="", help_text="Who or what asked.", max_length=255
                    ),
                ),
            ],
            state_operations=[
                migrations.RemoveField(model_name="databaseaction", name="origin"),
            ],
        ),
    ]
