"""Database engine and schema migrations.

One engine per process, created in the app's lifespan and passed down.
SQLite runs in WAL mode with ``synchronous=FULL``: in WAL mode ``NORMAL``
can lose the last transactions on power loss, and a 250 reply promises
the message is safe (ARCHITECTURE invariant 1).  Nothing else here assumes
SQLite; PostgreSQL URLs work the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseUrlError(ValueError):
    """MAILSMS_DATABASE_URL cannot be used."""


def _normalise_url(url: str) -> str:
    """Accept ``postgresql://`` as meaning psycopg 3, the driver we ship."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Writers wait for each other instead of failing with "locked".
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


class WriteGate:
    """One SQLite transaction at a time across the processes of
    ``mailsms serve --workers N`` (and the threads of each).

    SQLite has one writer; when a second process finds the file locked, its
    busy handler sleeps 1, 2, 5, 10... ms between tries, so workers would
    spend their time asleep while the lock is long free.  An ``flock`` on a
    file beside the database hands over at once: the kernel wakes the next
    waiter when the holder releases it.  Taken when SQLAlchemy begins a
    transaction, released after the database's own commit or rollback
    (:func:`_gated_connection`); SQLite's busy timeout remains the fallback
    for other programs (the ``sqlite3`` shell, backups).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._pid = -1
        self._thread_lock = threading.Lock()
        self._held = threading.local()

    def _file(self) -> int:
        # After a fork the child opens its own file: flock locks belong to
        # the open file, and an inherited one would not exclude the parent.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def on_begin(self, connection: Connection) -> None:
        """SQLAlchemy's ``begin`` event: take the gate, unless the
        connection is for reads alone (see :func:`reader`)."""
        if not connection.get_execution_options().get(_READS_ONLY):
            self.acquire()

    def acquire(self) -> None:
        if getattr(self._held, "yes", False):
            return  # this thread's transaction already holds it
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        self._held.yes = True

    def release(self) -> None:
        if not getattr(self._held, "yes", False):
            return  # e.g. the pool's rollback of an idle connection
        self._held.yes = False
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the gate for this thread until the next transaction of this
        thread ends (its commit or rollback releases it) or the block ends.

        The group commit takes its turn *before* it collects the emails
        waiting in this process, so the ones that arrive while another
        process writes join this commit instead of paying for the next one.
        """
        self.acquire()
        try:
            yield
        finally:
            self.release()


# make_engine keeps the engine's gate here, for write_turn.
_GATE_KEY = "mailsms_write_gate"

# The execution option that marks an engine's connections as readers.
_READS_ONLY = "mailsms_reads_only"


def reader(engine: Engine) -> Engine:
    """``engine`` for reads alone: its transactions take no write turn.

    In WAL mode SQLite readers never wait for the writer, nor it for them,
    so a read that took the gate would only make the other worker
    processes' commits wait for it: the dashboard's and the API's lists,
    the SMTP handler's allow-list reloads and the background pollers
    (about one read a second per worker each, nearly all finding nothing),
    all queued behind and ahead of the accepted mail's 250.  A write made
    through it by mistake is still safe: SQLite's own lock and busy timeout
    serialise it, as they do for any other program on the file.

    For reads of one statement: without the gate, each SELECT sees the
    database as it is when it runs (the driver opens no transaction for a
    SELECT), so a read of several statements may see a commit between two
    of them.  The same pool serves both: this is a view of ``engine``, not
    a copy; on PostgreSQL, which has no gate, it changes nothing."""
    return engine.execution_options(**{_READS_ONLY: True})


def write_turn(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """The engine's :meth:`WriteGate.turn`; for a database without a gate
    (PostgreSQL, SQLite in memory) there is nothing to wait for."""
    gate = vars(engine).get(_GATE_KEY)
    return gate.turn() if isinstance(gate, WriteGate) else contextlib.nullcontext()


def _gated_connection(gate: WriteGate) -> type[sqlite3.Connection]:
    """A sqlite3 connection class that opens the gate after each commit and
    rollback (SQLAlchemy's own commit event fires before the commit)."""

    class GatedConnection(sqlite3.Connection):
        def commit(self) -> None:
            try:
                super().commit()
            finally:
                gate.release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                gate.release()

        def close(self) -> None:
            # An invalidated connection is closed without a rollback.
            try:
                super().close()
            finally:
                gate.release()

    return GatedConnection


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; for SQLite, create the file's folder."""
    url = _normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise DatabaseUrlError(f"cannot parse database URL: {type(exc).__name__}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # The group committer and the dispatcher use worker threads.
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 10}
        gate = None
        if database and database != ":memory:":
            path = Path(database).expanduser()
            gate = WriteGate(path.with_name(path.name + ".lock"))
            connect_args["factory"] = _gated_connection(gate)
        engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        if gate is not None:
            event.listen(engine, "begin", gate.on_begin)
            vars(engine)[_GATE_KEY] = gate
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config() -> Config:
    """Alembic's configuration for mailsms's migrations; the connection to
    run them on goes in ``config.attributes["connection"]``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
