"""Django's ModelBackend, with the signed-in user read by one fixed statement.

After its session (project/sessions.py), every signed-in request loads its user. Django's
backend builds that query through the ORM each time (a queryset, a filter, a compiled
SELECT): 0.34 ms of the web process's CPU per request on the 2-core development machine,
where the same SELECT prepared once costs about a third of it (`bench/sessions.py`). Which
row is found, how it becomes a user (the fields' own conversions, `Model.from_db`) and the
inactive-user rule are Django's; signing in, permissions and everything else are the
backend's own. The user is read afresh on every request, so a password change or
deactivation still takes effect on the next one.

    AUTHENTICATION_BACKENDS = ["project.auth_backends.UserBackend"]

Sessions record the backend that signed them in, so sessions begun under Django's
ModelBackend (before this backend was configured) end once, and their users sign in again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connections, router


@dataclass(frozen=True)
class _UserRead:
    """The SELECT of one user by primary key, as the ORM would write it, and how each
    column becomes the field's value."""

    sql: str
    attnames: list[str]
    converters: list[tuple[int, list[Any]]]


_reads: dict[tuple[type, str], _UserRead] = {}


def _user_read(model: type[AbstractBaseUser], alias: str) -> _UserRead:
    key = (model, alias)
    if key not in _reads:
        queryset = model._default_manager.db_manager(alias).filter(pk=0)
        compiler = queryset.query.get_compiler(alias)
        sql, _ = compiler.as_sql()
        # The compiled statement's own select list, in its order: the columns from_db takes.
        columns = [col for col, _, _ in compiler.select]
        fields = [col.target for col in columns]
        _reads[key] = _UserRead(
            sql=sql,
            attnames=[field.attname for field in fields],
            converters=list(compiler.get_converters(columns).items()),
        )
    return _reads[key]


class UserBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        alias = router.db_for_read(model)
        read = _user_read(model, alias)
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(read.sql, [model._meta.pk.get_db_prep_value(pk, connection)])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for index, (converters, expression) in read.converters:
            for converter in converters:
                values[index] = converter(values[index], expression, connection)
        user = model.from_db(alias, read.attnames, values)
        return user if self.user_can_authenticate(user) else None
