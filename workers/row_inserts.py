"""Several new rows written in one round trip to the database.

Recording a job inside a person's request writes three rows (its Job, its PENDING TaskResult,
the admin LogEntry). Saved one by one they cost three round trips and the ORM's save
machinery each: 0.8 ms of the web process's CPU per request (bench/dispatch.py). Here the
rows go to PostgreSQL as one statement batch (psycopg's client-side binding cursor, which
Django uses, accepts several statements in one execute), and what the database fills in
(the primary key, fields with a database default) is read back from each one's
`RETURNING`, as save() does. Other databases (SQLite for a quick local try) get `save()` per
row.

Each INSERT is the ORM's own: the first row of a model is compiled by Django's insert
compiler, and its statement is kept (`_InsertPlan`). A later row of that model reuses the
statement with its own values, each converted as the compiler converts it (`pre_save`, so
`auto_now` and defaults are filled, then `get_db_prep_save`): compiling was a quarter of what
recording a job cost the web process. A row whose value is an expression, or a model whose
fields make their own placeholders, is compiled every time.

On PostgreSQL no `pre_save`/`post_save` signals are sent: use it for rows nobody listens to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.sql import InsertQuery
from django.db.models.sql.compiler import SQLInsertCompiler


@dataclass(frozen=True)
class _InsertPlan:
    """A model's INSERT … RETURNING statement, which takes one plain parameter per field."""

    sql: str
    fields: tuple[Field, ...]
    returning: tuple[Field, ...]


# (model, database alias, whether the primary key is given): the statement. Only models
# whose statement is value-independent are kept, so the cache holds one entry per model.
_plans: dict[tuple[type[Model], str, bool], _InsertPlan] = {}


def insert_rows(*rows: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT unsaved `rows`, in order, and set on each what the database filled in."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        for row in rows:
            row.save(force_insert=True, using=using)
        return
    statements: list[str] = []
    params: list[Any] = []
    returning: list[tuple[tuple[Field, ...], SQLInsertCompiler | None]] = []
    for row in rows:
        planned = _planned_insert(row, using, connection)
        if planned is not None:
            plan, values = planned
            statements.append(plan.sql)
            params.extend(values)
            returning.append((plan.returning, None))
            continue
        compiler = _insert_compiler(row, using)
        ((statement, row_params),) = compiler.as_sql()
        statements.append(statement)
        params.extend(row_params)
        returning.append((tuple(compiler.returning_fields or ()), compiler))
        _plan_remember(row, using, compiler, statement, row_params)
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(statements), params)
        for index, (row, (fields, converting)) in enumerate(zip(rows, returning, strict=True)):
            if index:
                cursor.nextset()
            _set_returned(row, fields, converting, cursor.fetchone())
            row._state.adding = False
            row._state.db = using


def _insert_fields(row: Model) -> list[Field]:
    """The fields Model.save() inserts: all but generated ones and an unset primary key."""
    return [
        field
        for field in row._meta.local_concrete_fields
        if not field.generated and not (field.primary_key and row.pk is None)
    ]


def _insert_compiler(row: Model, using: str) -> SQLInsertCompiler:
    """The compiler of `row`'s INSERT … RETURNING what the database fills in (the primary
    key, fields with a database default), as Model.save() sets it up."""
    query = InsertQuery(type(row))
    query.insert_values(_insert_fields(row), [row])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = row._meta.db_returning_fields
    return compiler


def _planned_insert(
    row: Model, using: str, connection: BaseDatabaseWrapper
) -> tuple[_InsertPlan, list[Any]] | None:
    """The kept statement for `row` and its parameters, or None if it must be compiled."""
    plan = _plans.get((type(row), using, row.pk is not None))
    if plan is None:
        return None
    values = []
    for field in plan.fields:
        value = field.pre_save(row, True)
        if hasattr(value, "resolve_expression"):
            return None  # an expression (Now(), a database default) is compiled into the SQL
        values.append(field.get_db_prep_save(value, connection=connection))
    return plan, values


def _plan_remember(
    row: Model, using: str, compiler: SQLInsertCompiler, statement: str, params: Any
) -> None:
    """Keep `statement` for `row`'s model if it is one plain parameter per field: no field
    makes its own placeholder, no value was an expression, nothing comes after the values,
    and what RETURNING reads needs no conversion."""
    fields = list(compiler.query.fields)
    returning = tuple(compiler.returning_fields or ())
    columns: list[Any] = [field.get_col(row._meta.db_table) for field in returning]
    if (
        any(hasattr(field, "get_placeholder") for field in fields)
        # pre_save has run: what is left on the row is what went in.
        or any(hasattr(getattr(row, field.attname), "resolve_expression") for field in fields)
        or len(params) != len(fields)
        or statement.count("%s") != len(fields)
        or compiler.get_converters(columns)
    ):
        return
    _plans[(type(row), using, row.pk is not None)] = _InsertPlan(
        statement, tuple(fields), returning
    )


def _set_returned(
    row: Model, fields: tuple[Field, ...], compiler: SQLInsertCompiler | None, values: Any
) -> None:
    if compiler is not None:
        columns: list[Any] = [field.get_col(row._meta.db_table) for field in fields]
        converters = compiler.get_converters(columns)
        if converters:
            (values,) = compiler.apply_converters([values], converters)
    for field, value in zip(fields, values, strict=True):
        setattr(row, field.attname, value)
