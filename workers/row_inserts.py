"""Several new rows written in one round trip to the database.

Recording a job inside a person's request writes three rows (its Job, its PENDING TaskResult,
the admin LogEntry). Saved one by one they cost three round trips and the ORM's save
machinery each: 0.8 ms of the web process's CPU per request (bench/dispatch.py). Here each
INSERT is still compiled by the ORM's own insert compiler, so every value is converted and
every `auto_now`/default filled exactly as `save(force_insert=True)` would, but they go to
PostgreSQL as one statement batch (psycopg's client-side binding cursor, which Django uses,
accepts several statements in one execute), and what the database fills in (the primary
key, fields with a database default) is read back from each one's `RETURNING`, as save()
does. Other databases (SQLite for a quick local try) get `save()` per row.

On PostgreSQL no `pre_save`/`post_save` signals are sent: use it for rows nobody listens to.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.db.models.sql import InsertQuery
from django.db.models.sql.compiler import SQLInsertCompiler


def insert_rows(*rows: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT unsaved `rows`, in order, and set on each what the database filled in."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        for row in rows:
            row.save(force_insert=True, using=using)
        return
    compiled = [_insert_compiler(row, using) for row in rows]
    statements: list[str] = []
    params: list[Any] = []
    for compiler in compiled:
        ((statement, row_params),) = compiler.as_sql()
        statements.append(statement)
        params.extend(row_params)
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(statements), params)
        for index, (row, compiler) in enumerate(zip(rows, compiled, strict=True)):
            if index:
                cursor.nextset()
            _set_returned(row, compiler, cursor.fetchone())
            row._state.adding = False
            row._state.db = using


def _insert_compiler(row: Model, using: str) -> SQLInsertCompiler:
    """The compiler of `row`'s INSERT … RETURNING what the database fills in (the primary
    key, fields with a database default), as Model.save() sets it up."""
    meta = row._meta
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and not (field.primary_key and row.pk is None)
    ]
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = meta.db_returning_fields
    return compiler


def _set_returned(row: Model, compiler: SQLInsertCompiler, values: Any) -> None:
    fields = compiler.returning_fields or []
    columns = [field.get_col(row._meta.db_table) for field in fields]
    converters = compiler.get_converters(columns)
    (converted,) = compiler.apply_converters([values], converters) if converters else [values]
    for field, value in zip(fields, converted, strict=True):
        setattr(row, field.attname, value)
