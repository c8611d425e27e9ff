"""Several new rows written in one round trip to the database.

Recording a job inside a person's request writes three rows (its Job, its PENDING TaskResult,
the admin LogEntry). Saved one by one they cost three round trips and the ORM's save
machinery each: 0.8 ms of the web process's CPU per request (bench/dispatch.py). Here each
INSERT is still compiled by the ORM's own insert compiler, so every value is converted and
every `auto_now`/default filled exactly as `save(force_insert=True)` would, but they go to
PostgreSQL as one statement batch (psycopg's client-side binding cursor, which Django uses,
accepts several statements in one execute) and each row's primary key is read back from its
`RETURNING`. Other databases (SQLite for a quick local try) get `save()` per row.

On PostgreSQL no `pre_save`/`post_save` signals are sent: use it for rows nobody listens to.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.db.models.sql import InsertQuery


def insert_rows(*rows: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT unsaved `rows`, in order, and set each one's primary key."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        for row in rows:
            row.save(force_insert=True, using=using)
        return
    statements: list[str] = []
    params: list[Any] = []
    for row in rows:
        statement, row_params = _insert_sql(row, using)
        statements.append(statement)
        params.extend(row_params)
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(statements), params)
        for index, row in enumerate(rows):
            if index:
                cursor.nextset()
            (row.pk,) = cursor.fetchone()
            row._state.adding = False
            row._state.db = using


def _insert_sql(row: Model, using: str) -> tuple[str, tuple[Any, ...]]:
    """`row`'s INSERT … RETURNING its primary key, as Model.save() would compile it."""
    meta = row._meta
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and not (field.primary_key and row.pk is None)
    ]
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = [meta.pk]
    ((statement, params),) = compiler.as_sql()
    return statement, params
