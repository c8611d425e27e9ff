"""PostgreSQL going away under a running system, as a failover or restart does to clients:
only the test database's backends are touched (the server is shared)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def other_backends_terminate() -> int:
    """Terminate every connection to the test database but this one; how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
        assert name.startswith("test_"), name  # never another database on the shared server
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


@contextmanager
def database_down() -> Iterator[None]:
    """The failover window: every other connection to the test database cut and none
    accepted until the block ends; only this test's own connection lives through it."""
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
    assert name.startswith("test_"), name  # never another database on the shared server
    db = connection.settings_dict
    # A database cannot refuse connections from a session connected to it.
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        quoted = connection.ops.quote_name(name)
        admin.execute(f"ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS false")
        try:
            other_backends_terminate()
            yield
        finally:
            admin.execute(f"ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS true")


class FreezableProxy:
    """A TCP proxy on loopback in front of PostgreSQL (or any server) that can be frozen:
    while frozen it forwards nothing either way and leaves every connection, new ones too,
    open and silent: a database that hangs (a failover that black-holes traffic) rather than
    refusing. `silence` black-holes only the connections open at that moment, for good, as
    a NAT or load balancer that dropped them leaves them; new connections go through."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thawed = threading.Event()
        self._thawed.set()
        self._closed = False
        self._sockets: list[socket.socket] = [self._listener]
        self._silenced: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def silence(self) -> None:
        """From now on, swallow what either side of every open connection sends."""
        self._silenced.update(self._sockets[1:])

    def close(self) -> None:
        self._closed = True
        self._thawed.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._thawed.wait()
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._thawed.wait()
                if source not in self._silenced:
                    target.sendall(data)
        if source not in self._silenced:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
