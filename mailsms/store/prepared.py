"""Hot-path statements, compiled once per dialect and run on the driver.

Role: the group commit (:meth:`mailsms.store.queries.Store.commit_writes`)
runs the same dozen statements hundreds of times a second, and on SQLite it
runs them while it holds the one write lock every worker process shares.
Through ``Connection.execute`` each execution costs SQLAlchemy 40-150 µs of
Python (compiled-cache lookup, a parameter dictionary per row built and
processed value by value, execution context and result set-up) against
10-15 µs for ``Connection.exec_driver_sql``: about half of a group-commit
round's CPU, all of it spent holding that lock.  ``exec_driver_sql`` itself
still sets up an execution context and a result per statement, about 40 µs
more: a quarter of a round of six emails (0.99 -> 0.76 ms of CPU measured),
so the statements run on a cursor of the driver's connection.

A :class:`Prepared` keeps the statement a SQLAlchemy Core construct, so
there is still one definition for SQLite and PostgreSQL and no
hand-written dialect SQL.  It is compiled once per dialect and size (the
length of an IN list, the number of rows of a multi-row INSERT); its
parameters go through the bind processors SQLAlchemy itself would apply
(``TypeEngine.bind_processor``), its rows through the result processors;
and it runs on the connection of the caller's transaction (see
:func:`_execute`), so errors are still SQLAlchemy's (``IntegrityError``,
``OperationalError``) and a connection that died is still invalidated.

Sizes: an IN list is padded to the next power of two with its own last
value (``x IN (a, b, b)`` is ``x IN (a, b)``), and a multi-row INSERT is
sent in pieces of a power of two rows, so a statement has a handful of
compiled forms, not one per length: compiling one costs milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Connection, Dialect, Executable, bindparam
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]

MAX_ROWS = 64
"""Rows per multi-row INSERT (14 columns x 64 rows stays far below every
database's limit on parameters per statement)."""

MAX_LIST = 512
"""Values per IN list."""

_REQUIRED = object()


def listed(name: str, size: int) -> list[BindParameter[Any]]:
    """The bind parameters of an IN list of ``size`` values named ``name``:
    ``column.in_(listed("ids", n))``; the caller passes ``{"ids": [...]}``."""
    return [bindparam(f"{name}_{i}") for i in range(size)]


def row_values(columns: Sequence[str], size: int) -> list[dict[str, BindParameter[Any]]]:
    """``insert(table).values(row_values(columns, n))``: ``n`` rows of bind
    parameters, each column's named after it and its row."""
    return [{c: bindparam(f"{c}_{i}") for c in columns} for i in range(size)]


def _pieces(count: int) -> Iterator[tuple[int, int]]:
    """(start, size) pieces of ``count`` rows, each a power of two up to
    :data:`MAX_ROWS`, largest first (24 rows: 16 then 8).

    Compiling a multi-row INSERT costs SQLAlchemy 3 ms for one row and
    27 ms for 64: one form per row count put a fresh compile of up to
    tens of milliseconds, inside SQLite's write lock, into many of a new
    gateway's first rounds.  Seven forms cover every count, at the price of
    a statement or two more for some rounds."""
    start = 0
    while start < count:
        size = min(MAX_ROWS, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


def _execute(connection: Connection, sql: str, params: Any, many: bool) -> list[Any]:
    """Run ``sql`` on a cursor of the driver connection under ``connection``
    (inside its transaction); the rows it returns, unconverted.

    A driver error is raised as SQLAlchemy would raise it
    (``DBAPIError.instance`` picks ``IntegrityError``, ``OperationalError``
    and so on), and a connection the dialect finds dead is invalidated
    first, as SQLAlchemy does.  When something listens for SQLAlchemy's
    cursor events (tests that count or rewrite statements, tracing tools),
    the statement goes through ``exec_driver_sql`` instead, which fires
    them (and so does a connection that has no driver connection, to raise
    SQLAlchemy's own error)."""
    dispatch = connection.dispatch
    driver = connection.connection.driver_connection
    if driver is None or dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        result = connection.exec_driver_sql(sql, params)
        return list(result.fetchall()) if result.returns_rows else []
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []
    except Exception as exc:
        dialect = connection.dialect
        base = dialect.loaded_dbapi.Error
        if not isinstance(exc, base):
            raise
        dead = dialect.is_disconnect(exc, driver, cursor)
        if dead:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, base, connection_invalidated=dead, dialect=dialect, ismulti=many
        ) from exc
    finally:
        cursor.close()


def _bucket(size: int) -> int:
    bucket = 1
    while bucket < size:
        bucket *= 2
    return bucket


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    """Positional styles: in placeholder order; named styles: each once."""
    keys: tuple[str, ...]
    """The caller's key for each name (the name, or the column of a
    one-row INSERT run as an executemany)."""
    positional: bool
    binds: tuple[Processor | None, ...]
    defaults: tuple[Any, ...]
    """A literal's own value, or _REQUIRED."""
    results: tuple[Processor | None, ...]

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        converted = []
        for key, process, default in zip(self.keys, self.binds, self.defaults, strict=True):
            value = values[key] if default is _REQUIRED else values.get(key, default)
            converted.append(value if process is None else process(value))
        if self.positional:
            return tuple(converted)
        return dict(zip(self.names, converted, strict=True))

    def convert(self, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not any(self.results):
            return [tuple(row) for row in rows]
        return [
            tuple(v if p is None else p(v) for p, v in zip(self.results, row, strict=True))
            for row in rows
        ]


def _compile(statement: Executable, dialect: Dialect, suffix: str = "") -> _Compiled:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if not isinstance(compiled, SQLCompiler) or "__[POSTCOMPILE_" in compiled.string:
        # An expanding or literal-execute parameter is rendered at execution
        # time by SQLAlchemy: build the statement with listed() instead.
        raise TypeError(
            f"cannot prepare {type(statement).__name__} {compiled.string[:60]!r}...: "
            "SQLAlchemy renders part of it at execution (an IN list? use listed())"
        )
    if compiled.escaped_bind_names:
        raise TypeError(f"bind names need escaping: {sorted(compiled.escaped_bind_names)}")
    by_name: dict[str, BindParameter[Any]] = {
        name: bind for bind, name in compiled.bind_names.items()
    }
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(by_name)
    binds = tuple(by_name[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    defaults = tuple(
        _REQUIRED if by_name[n].required else by_name[n].effective_value for n in names
    )
    keys = tuple(n.removesuffix(suffix) for n in names) if suffix else names
    columns = getattr(statement, "exported_columns", ())
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return _Compiled(compiled.string, names, keys, compiled.positional, binds, defaults, results)


class Prepared:
    """One hot-path statement: ``build(size)`` makes its Core form for a
    size (ignored by statements that have none); each dialect and size is
    compiled the first time it is used, by any thread."""

    def __init__(self, build: Callable[[int], Executable], *, listed: str | None = None) -> None:
        self._build = build
        self._listed = listed
        self._forms: dict[tuple[str, int, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _form(self, dialect: Dialect, size: int, suffix: str = "") -> _Compiled:
        key = (dialect.name, size, suffix)
        form = self._forms.get(key)
        if form is None:
            with self._lock:
                form = self._forms.get(key)
                if form is None:
                    form = self._forms[key] = _compile(self._build(size), dialect, suffix)
        return form

    def warm(self, dialect: Dialect, sizes: Iterable[int], *, suffix: str = "") -> None:
        """Compile the forms of these sizes now (at start-up), not in the
        first rounds that need them: a compile costs 1-27 ms, spent inside
        SQLite's write lock, and a new gateway's first large batches would
        each pay for several."""
        for size in sizes:
            self._form(dialect, size, suffix)

    def _listed_params(
        self, params: Mapping[str, Any], values: list[Any]
    ) -> tuple[int, dict[str, Any]]:
        assert self._listed is not None
        size = _bucket(len(values))
        values.extend(values[-1:] * (size - len(values)))
        flat = dict(params)
        flat.update((f"{self._listed}_{i}", v) for i, v in enumerate(values))
        return size, flat

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run once, or once per :data:`MAX_LIST` values of its IN list; the
        rows it returns (SELECT, RETURNING), converted."""
        if self._listed is None:
            return self._run(connection, 0, params)
        values = list(params[self._listed])
        if not values:
            raise ValueError(f"{self._listed}: an empty IN list")
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(values), MAX_LIST):
            found.extend(
                self._run(
                    connection, *self._listed_params(params, values[start : start + MAX_LIST])
                )
            )
        return found

    def _run(
        self, connection: Connection, size: int, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        form = self._form(connection.dialect, size)
        rows = _execute(connection, form.sql, form.params(params), many=False)
        return form.convert(rows) if rows else []

    def many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row of parameters (one executemany)."""
        self._executemany(connection, rows, 0)

    def insert_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (keyed by column) with one executemany of the
        one-row form (``build(1)``, made with :func:`row_values`)."""
        self._executemany(connection, rows, 1, suffix="_0")

    def _executemany(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]], size: int, suffix: str = ""
    ) -> None:
        if not rows:
            return
        form = self._form(connection.dialect, size, suffix)
        _execute(connection, form.sql, [form.params(row) for row in rows], many=True)

    def insert_rows(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """A multi-row INSERT of ``rows`` (``build(n)`` makes it for n rows
        with :func:`row_values`), in pieces of a power of two rows up to
        :data:`MAX_ROWS` (see :func:`_pieces`); the rows its RETURNING
        gives, converted."""
        returned: list[tuple[Any, ...]] = []
        for start, size in _pieces(len(rows)):
            chunk = rows[start : start + size]
            flat = {f"{k}_{i}": v for i, row in enumerate(chunk) for k, v in row.items()}
            returned.extend(self._run(connection, size, flat))
        return returned
