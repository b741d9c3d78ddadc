"""The group commit's prepared statements (mailsms.store.prepared): the same
rows and types as SQLAlchemy's own execution, IN lists of any length, and
SQLAlchemy's errors, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, event, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from mailsms.store import make_engine, migrate
from mailsms.store.models import OutboundSms
from mailsms.store.prepared import MAX_LIST, MAX_ROWS, Prepared, listed, row_values
from tests.core.test_postgres import pg_schema_url  # noqa: F401 - a fixture

SMS = OutboundSms.__table__  # type: ignore[attr-defined]
PLUS_2 = timezone(timedelta(hours=2))
WHEN = datetime(2026, 11, 23, 4, 5, 6, 789012, tzinfo=UTC)


def sms_row(i: int, when: datetime = WHEN) -> dict[str, object]:
    return {
        "uid": uuid.uuid4().hex,
        "sender": "alice@corp.example",
        "to_number": f"+1415555{i:04d}",
        "from_number": None if i % 2 else "+14155550100",
        "text": f"text {i} é",
        "encoding": "UCS-2",
        "segments": 1 + i % 3,
        "status": "queued",
        "attempts": 0,
        # An offset other than UTC: stored and read back in UTC.
        "next_attempt_at": (when + timedelta(seconds=i)).astimezone(PLUS_2),
        "deadline_at": when + timedelta(days=1),
        "created_at": when,
        "updated_at": when,
    }


# The columns a test row has (an insert needs the same for every row).
COLUMNS = tuple(sms_row(0))
INSERT = Prepared(
    lambda n: insert(SMS).values(row_values(COLUMNS, n)).returning(SMS.c.id, SMS.c.created_at)
)
BY_UID = Prepared(
    lambda n: (
        select(SMS.c.uid, SMS.c.from_number, SMS.c.segments, SMS.c.next_attempt_at)
        .where(SMS.c.uid.in_(listed("uids", n)))
        .order_by(SMS.c.id)
    ),
    listed="uids",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'prepared.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_rows_and_types_are_those_of_sqlalchemys_own_execution(engine: Engine) -> None:
    rows = [sms_row(i) for i in range(5)]
    with engine.begin() as connection:
        returned = INSERT.insert_rows(connection, rows)
    assert len(returned) == 5
    assert all(created == WHEN for _, created in returned)
    uids = [str(row["uid"]) for row in rows]
    core = select(SMS.c.uid, SMS.c.from_number, SMS.c.segments, SMS.c.next_attempt_at).where(
        SMS.c.uid.in_(uids)
    )
    with engine.connect() as connection:
        prepared = BY_UID.rows(connection, {"uids": uids})
        expected = [tuple(r) for r in connection.execute(core.order_by(SMS.c.id))]
    assert prepared == expected
    # Aware datetimes in UTC, as the ORM gives them; NULL stays None.
    first = prepared[0]
    assert first[3] == WHEN and first[3].utcoffset() == timedelta(0)
    assert [r[1] for r in prepared] == ["+14155550100", None, "+14155550100", None, "+14155550100"]
    assert [r[2] for r in prepared] == [1, 2, 3, 1, 2]


def test_in_lists_of_any_length_find_each_row_once(engine: Engine) -> None:
    rows = [sms_row(i) for i in range(MAX_LIST + 90)]
    with engine.begin() as connection:
        INSERT.insert_rows(connection, rows)
    uids = [str(row["uid"]) for row in rows]
    with engine.connect() as connection:
        for length in (*range(1, 40), 63, 64, 65, 129, MAX_LIST, MAX_LIST + 1, len(uids)):
            found = BY_UID.rows(connection, {"uids": uids[:length]})
            # Padding repeats the last value: no row comes back twice; lists
            # longer than MAX_LIST run in chunks, in order.
            assert [r[0] for r in found] == uids[:length], length
        with pytest.raises(ValueError, match="empty IN list"):
            BY_UID.rows(connection, {"uids": []})


def test_multi_row_inserts_of_any_count_return_every_id(engine: Engine) -> None:
    insert_sms = Prepared(INSERT._build)  # its own compiled forms, counted below
    counts = [*range(1, MAX_ROWS + 2), 2 * MAX_ROWS + 7]
    ids: set[int] = set()
    with engine.begin() as connection:
        for count in counts:
            returned = insert_sms.insert_rows(connection, [sms_row(i) for i in range(count)])
            assert len({row_id for row_id, _ in returned}) == count
            ids.update(row_id for row_id, _ in returned)
    with engine.connect() as connection:
        stored = set(connection.scalars(select(SMS.c.id)))
    assert stored == ids and len(ids) == sum(counts)
    # Pieces of a power of two rows: seven forms (1 to 64 rows), not one
    # compile, of up to tens of milliseconds, per row count.
    assert len(insert_sms._forms) == 7


def test_executemany_forms_take_rows_keyed_by_column(engine: Engine) -> None:
    one_row = Prepared(lambda n: insert(SMS).values(row_values(COLUMNS, n)))
    rows = [sms_row(i) for i in range(3)]
    with engine.begin() as connection:
        one_row.insert_many(connection, rows)
        one_row.insert_many(connection, [])  # nothing to do, no statement
    renamed = Prepared(
        lambda _: (
            SMS.update().where(SMS.c.uid == bindparam("b_uid")).values(status=bindparam("b_status"))
        )
    )
    with engine.begin() as connection:
        renamed.many(connection, [{"b_uid": rows[0]["uid"], "b_status": "sent"}])
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(SMS.c.uid, SMS.c.status)).all())
    assert statuses == {rows[0]["uid"]: "sent", rows[1]["uid"]: "queued", rows[2]["uid"]: "queued"}


def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: Engine) -> None:
    # The group commit's fallback and the Message-ID race tell errors apart
    # by SQLAlchemy's exception classes, as with Connection.execute.
    row = sms_row(1)
    with engine.begin() as connection:
        INSERT.insert_rows(connection, [row])
    with pytest.raises(IntegrityError), engine.begin() as connection:
        INSERT.insert_rows(connection, [sms_row(2)])
        INSERT.insert_rows(connection, [dict(row)])  # the same uid again
    with engine.connect() as connection:
        assert connection.scalars(select(SMS.c.to_number)).all() == [row["to_number"]]


def test_a_connection_that_died_is_invalidated_and_the_next_one_works(
    pg_schema_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    # The server ends the session mid-transaction (a restart, a failover):
    # the error is SQLAlchemy's and says the connection was invalidated, so
    # the pool replaces it instead of handing a dead one to the next round.
    engine = make_engine(pg_schema_url)
    migrate(engine)
    try:
        with engine.connect() as connection:
            connection.begin()
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as caught:
                INSERT.insert_rows(connection, [sms_row(1)])
            assert caught.value.connection_invalidated
            assert connection.invalidated
        with engine.begin() as connection:
            [(row_id, _)] = INSERT.insert_rows(connection, [sms_row(2)])
        assert isinstance(row_id, int)
    finally:
        engine.dispose()


def test_sqlalchemys_cursor_events_still_see_each_statement(engine: Engine) -> None:
    # With a listener (a test counting statements, a tracing tool), the
    # statement runs through exec_driver_sql, which fires the events, and
    # gives the same rows.
    rows = [sms_row(i) for i in range(3)]
    with engine.begin() as connection:
        INSERT.insert_rows(connection, rows)
    uids = [str(row["uid"]) for row in rows]
    with engine.connect() as connection:
        quiet = BY_UID.rows(connection, {"uids": uids})
    seen: list[str] = []

    def record(conn: object, cursor: object, sql: str, *args: object) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as connection:
            heard = BY_UID.rows(connection, {"uids": uids})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert heard == quiet and [r[0] for r in heard] == uids
    assert len(seen) == 1 and "IN" in seen[0]


def test_a_statement_sqlalchemy_renders_at_execution_is_refused() -> None:
    # A literal IN list is an expanding parameter, rendered per execution by
    # SQLAlchemy: it would send the driver a placeholder it cannot fill.
    refused = Prepared(lambda _: select(SMS.c.id).where(SMS.c.status.in_(["queued", "sent"])))
    engine = make_engine("sqlite://")
    with engine.connect() as connection, pytest.raises(TypeError, match="listed"):
        refused.rows(connection, {})


def test_warm_compiles_ahead_of_use(engine: Engine) -> None:
    statement = Prepared(BY_UID._build, listed="uids")
    statement.warm(engine.dialect, [1, 2, 4])
    assert len(statement._forms) == 3
    rows = [sms_row(i) for i in range(3)]
    with engine.begin() as connection:
        INSERT.insert_rows(connection, rows)
    with engine.connect() as connection:
        found = statement.rows(connection, {"uids": [str(r["uid"]) for r in rows]})
    assert len(found) == 3 and len(statement._forms) == 3  # the warmed form of 4
