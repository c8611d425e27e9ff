"""Django's database sessions, with the session read by one fixed statement.

Every signed-in request reads its session row. Django's own store builds that query through
the ORM each time (a queryset, a filter, a compiled SELECT, a model instance): on the 2-core
development machine 0.43 ms of the web process's CPU per read, where one fixed statement
takes 0.17 (`bench/sessions.py`), and a request that queues a job costs about 5 ms in all
(`bench/dispatch.py`). Which row is found, and everything else the store does (saving,
expiry, cycling the key, logging out), is Django's. Logging out deletes the row, so the
session ends at once in every process: no cache stands between a request and the table.

    SESSION_ENGINE = "project.sessions"
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self) -> dict[str, Any]:
        data = self._session_data_from_db()
        return self.decode(data) if data is not None else {}

    def _session_data_from_db(self) -> str | None:
        """The session's stored data, or None (and the key forgotten, as Django's store
        does, so that a write makes a new one) if the key is unknown or expired."""
        model = self.model
        connection = connections[router.db_for_read(model)]
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            # Only quoted names from the model go into the text; the values are parameters.
            cursor.execute(
                f"SELECT {quote('session_data')} FROM {quote(model._meta.db_table)} "  # noqa: S608
                f"WHERE {quote('session_key')} = %s AND {quote('expire_date')} > %s",
                [self.session_key, connection.ops.adapt_datetimefield_value(timezone.now())],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return str(row[0])
