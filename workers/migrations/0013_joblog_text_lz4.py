"""Job log text is compressed with lz4 instead of PostgreSQL's default pglz.

A busy terraform apply stores several megabytes of log text a minute while it keeps the
machine's cores busy; pglz spent 0.10 s of PostgreSQL CPU per 100k lines and lz4 0.07 s
(bench/terraform_logs.py), and reading the log back for the job page decompresses faster
too. The price is about 20 % more space for log text. Applies to rows written from now on;
a server built without lz4 keeps pglz. PostgreSQL only (SET COMPRESSION is 14+).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

ALTER = 'ALTER TABLE "workers_joblogchunk" ALTER COLUMN "text" SET COMPRESSION {method}'


def set_compression(method: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not _has_lz4(connection):
            return
        schema_editor.execute(ALTER.format(method=method))

    return run


def _has_lz4(connection: Any) -> bool:
    """PostgreSQL 14 or later, built with lz4."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class Migration(migrations.Migration):
    dependencies = [("workers", "0012_job_claims")]

    operations = [
        migrations.RunPython(set_compression("lz4"), set_compression("default")),
    ]
