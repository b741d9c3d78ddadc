"""The store on its own: group-commit batches, duplicates, allocation inside
one batch, and migrations that match the models."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlmodel import SQLModel

from mailsms.store import AcceptedEmail, NewSms, Store, make_engine, migrate, prepared, queries
from mailsms.store.db import write_turn
from mailsms.store.models import InboundStatus, OutboundSms, SmsStatus
from mailsms.store.queries import (
    OPTED_OUT_CODE,
    OPTED_OUT_ERROR,
    Claim,
    ClaimRequest,
    EnqueueOutcome,
    SmsOutcome,
    Write,
    WriteResult,
)
from mailsms.store.runner import Batcher, DbRunner, GroupCommit

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def new_store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    return Store(engine)


def accepted(sender: str, message_id: str, phone: str, pool: tuple[str, ...] = ()) -> AcceptedEmail:
    return AcceptedEmail(
        message_id=message_id,
        mail_from=sender,
        from_address=sender,
        subject="s",
        received_at=NOW,
        deadline_at=NOW + timedelta(days=1),
        pool=pool,
        sms=[NewSms(to_number=phone, text="hi", encoding="GSM-7", segments=1)],
    )


def test_migrations_match_the_models(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []


def test_a_batch_with_a_repeated_message_id_stores_it_once(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    a = accepted("alice@corp.example", "<m1@corp.example>", "+14155551212")
    b = accepted("alice@corp.example", "<m1@corp.example>", "+14155551212")
    c = accepted("bob@corp.example", "<m1@corp.example>", "+14155551212")  # other author
    first, second, third = store.enqueue([a, b, c])
    assert not first.duplicate and second.duplicate and not third.duplicate
    assert second.email_id == first.email_id and second.sms_uids == first.sms_uids
    assert len(store.list_emails()) == 2
    assert len(store.list_sms()) == 2
    # A later batch sees the stored one as a duplicate too.
    [again] = store.enqueue([accepted("alice@corp.example", "<m1@corp.example>", "+14155551212")])
    assert again.duplicate and again.sms_uids == first.sms_uids


def test_two_senders_in_one_batch_get_different_pool_numbers_for_one_phone(
    tmp_path: Path,
) -> None:
    store = new_store(tmp_path)
    pool = ("+14155550100", "+14155550101")
    store.enqueue(
        [
            accepted("alice@corp.example", "<a@x>", "+14155551212", pool),
            accepted("bob@corp.example", "<b@x>", "+14155551212", pool),
        ]
    )
    by_sender = {row.sender: row.from_number for row in store.list_sms()}
    assert set(by_sender.values()) == set(pool)
    # Replies route to the right sender on each number.
    for sender, number in by_sender.items():
        route = store.route_for("+14155551212", number or "", None)
        assert route is not None and route.to == sender and route.message_id in ("<a@x>", "<b@x>")


def test_every_sms_gets_a_queued_event(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.enqueue([accepted("alice@corp.example", f"<m{i}@x>", "+14155551212") for i in range(5)])
    event_ids = []
    for row in sorted(store.list_sms(), key=lambda r: _sms_id(r.id)):
        [queued] = store.sms_events(_sms_id(row.id))
        assert (queued.status, queued.at, queued.detail) == ("queued", row.created_at, None)
        event_ids.append(queued.id)
    assert event_ids == sorted(event_ids)  # numbered in the order of the SMS


def test_sms_uids_are_time_ordered_uuid7(tmp_path: Path) -> None:
    # RFC 9562 UUIDv7: a new SMS's uid sorts after older ones, so inserts
    # land at the right edge of the uid index, not on random pages.
    store = new_store(tmp_path)
    first = store.enqueue([accepted("a@corp.example", "<u1@x>", "+14155550001")])
    later = accepted("a@corp.example", "<u2@x>", "+14155550002")
    second = store.enqueue([replace(later, received_at=NOW + timedelta(milliseconds=1))])
    (old,), (new,) = first[0].sms_uids, second[0].sms_uids
    for uid in (old, new):
        parsed = uuid.UUID(hex=uid)
        assert len(uid) == 32 and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(old[:12], 16) == int(NOW.timestamp() * 1000)
    assert old < new
    # Drawn in one millisecond, they still differ: 74 random bits each.
    assert len({queries.sms_uid(NOW) for _ in range(20_000)}) == 20_000


def test_a_message_id_committed_elsewhere_mid_batch_costs_the_others_nothing(
    tmp_path: Path,
) -> None:
    """Another instance commits a Message-ID between our duplicate check and
    our insert: the batch's unique-key error falls back to one transaction
    per email, and that one email is reported as the duplicate it is."""
    store = new_store(tmp_path)
    [earlier] = store.enqueue([accepted("alice@corp.example", "<race@x>", "+14155551212")])
    # Each transaction's duplicate check (its first look-up of emails by
    # Message-ID) finds nothing, as if it had run before the other commit.
    checked: list[bool] = []

    def begin(conn: Any) -> None:
        checked.clear()

    def miss(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> Any:
        if not checked and "FROM emails" in sql and "message_id IN" in sql:
            checked.append(True)
            return "SELECT from_address, message_id, id FROM emails WHERE 0", ()
        return sql, params

    event.listen(store.engine, "begin", begin)
    event.listen(store.engine, "before_cursor_execute", miss, retval=True)
    first, raced, last = store.enqueue(
        [
            accepted("alice@corp.example", "<r1@x>", "+14155551212"),
            accepted("alice@corp.example", "<race@x>", "+14155551212"),
            accepted("alice@corp.example", "<r2@x>", "+14155551212"),
        ]
    )
    event.remove(store.engine, "before_cursor_execute", miss)
    event.remove(store.engine, "begin", begin)
    assert not first.duplicate and not last.duplicate
    assert len(first.sms_uids) == len(last.sms_uids) == 1
    assert raced.duplicate and raced.email_id == earlier.email_id
    assert raced.sms_uids == earlier.sms_uids
    assert len(store.list_emails()) == 3
    rows = store.list_sms()
    assert sorted(r.uid for r in rows) == sorted(earlier.sms_uids + first.sms_uids + last.sms_uids)
    for row in rows:
        assert [e.status for e in store.sms_events(_sms_id(row.id))] == ["queued"]


def test_a_group_commit_runs_as_many_statements_for_64_emails_as_for_4(tmp_path: Path) -> None:
    """Set-based: the statements of a batch do not grow with its size (an
    INSERT ... RETURNING in parameter order once meant one INSERT per row
    on SQLite).  The emails' multi-row INSERT goes in pieces of a power of
    two rows (mailsms.store.prepared), so 63 emails take five more."""
    store = new_store(tmp_path)
    store.enqueue([accepted("alice@corp.example", "<warm@x>", "+14155551212")])
    statements: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", record)
    counts = []
    for size in (4, 64, 63):
        statements.clear()
        store.enqueue(
            [accepted("alice@corp.example", f"<{size}.{i}@x>", "+14155551212") for i in range(size)]
        )
        counts.append(len(statements))
    event.remove(store.engine, "before_cursor_execute", record)
    assert counts[0] == counts[1] <= 6, counts
    assert counts[2] == counts[0] + 5, counts  # 32 + 16 + 8 + 4 + 2 + 1
    assert sum(store.count_by_status().values()) == 1 + 4 + 64 + 63


def test_prepared_at_start_the_hot_paths_compile_nothing_while_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A compile costs milliseconds inside the write lock: Store.prepare (run
    # by the gateway at start-up) does them all before the first email.
    store = new_store(tmp_path)
    store.prepare()
    compiled: list[str] = []
    real = prepared._compile

    def counting(statement: Any, dialect: Any, suffix: str = "") -> Any:
        compiled.append(str(statement)[:40])
        return real(statement, dialect, suffix)

    monkeypatch.setattr(prepared, "_compile", counting)
    for size in (1, 6, 23, 64):
        store.enqueue(
            [
                accepted(f"s{i % 3}@corp.example", f"<{size}.{i}@x>", f"+1415555{i:04d}")
                for i in range(size)
            ]
        )
        claim = store.claim_due(NOW + timedelta(seconds=1), size, NOW + timedelta(minutes=2))
        assert len(claim.rows) == size
    assert compiled == []


def test_a_claim_and_its_record_run_as_many_statements_for_50_sms_as_for_5(
    tmp_path: Path,
) -> None:
    """The dispatcher's two transactions are set-based like the group
    commit: the claim once ran five statements through the ORM (a separate
    opt-out look-up, a read-back of the claimed rows, an events INSERT per
    row kind) and the statements do not grow with the claim's size."""
    store = new_store(tmp_path)
    _queue(store, 60)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", record)
    counts = []
    now = NOW + timedelta(seconds=1)
    for size in (5, 50):
        statements.clear()
        claim = store.claim_due(now, size, now + timedelta(minutes=2))
        claimed = len(statements)
        statements.clear()
        store.record_outcomes(
            [SmsOutcome.sent(_sms_id(r.id), "twilio", f"SM{r.id}", "sent", now) for r in claim.rows]
        )
        counts.append((len(claim.rows), claimed, len(statements)))
    event.remove(store.engine, "before_cursor_execute", record)
    # Due rows (with the opt-out check), the guarded UPDATE ... RETURNING,
    # the "sending" events; then the outcomes' UPDATE and their events.
    assert counts == [(5, 3, 2), (50, 3, 2)], counts


def test_a_claim_leases_due_sms_and_refuses_those_to_a_phone_that_opted_out(
    tmp_path: Path,
) -> None:
    """What a claim hands out, and what it records: the rows as stored after
    the claim, in id order; an SMS from an email to a phone that has opted
    out since ends failed with a bounce due, while a keyword reply to that
    phone is still sent; a leased SMS is taken again only when its lease
    runs out."""
    store = new_store(tmp_path)
    stopped, other = "+14155551212", "+14155550199"
    store.enqueue(
        [
            accepted("a@corp.example", "<1@corp.example>", stopped),
            accepted("a@corp.example", "<2@corp.example>", other),
        ]
    )
    inbound, _ = store.save_inbound(
        carrier="twilio",
        carrier_id="SM" + "1" * 32,
        from_phone=stopped,
        to_number="+14155550100",
        text="STOP",
        media_urls=(),
        received_at=NOW,
    )
    assert store.complete_inbound(
        inbound,
        status=InboundStatus.KEYWORD,
        routed_to=None,
        reason=None,
        now=NOW,
        deadline=NOW + timedelta(days=1),
        replies=[NewSms(stopped, "You are unsubscribed.", "GSM-7", 1, "+14155550100")],
        suppress="STOP",
    )
    by_phone = {(r.to_number, r.email_id is not None): _sms_id(r.id) for r in store.list_sms()}
    refused, sent, reply = by_phone[stopped, True], by_phone[other, True], by_phone[stopped, False]

    now, lease = NOW + timedelta(seconds=1), NOW + timedelta(minutes=2)
    claim = store.claim_due(now, 10, lease)
    assert claim.opted_out == 1
    assert [r.id for r in claim.rows] == [sent, reply]
    stored = {r.id: r for r in store.list_sms()}
    columns = list(OutboundSms.model_fields)
    for row in claim.rows:
        assert (row.status, row.attempts, row.next_attempt_at, row.updated_at) == (
            SmsStatus.SENDING,
            1,
            lease,
            now,
        )
        assert {c: getattr(row, c) for c in columns} == {
            c: getattr(stored[row.id], c) for c in columns
        }
        [queued, sending] = store.sms_events(_sms_id(row.id))
        assert (queued.status, sending.status, sending.at, sending.detail) == (
            SmsStatus.QUEUED,
            SmsStatus.SENDING,
            now,
            None,
        )
    gone = stored[refused]
    assert (gone.status, gone.error_code, gone.error, gone.bounce, gone.updated_at) == (
        SmsStatus.FAILED,
        OPTED_OUT_CODE,
        OPTED_OUT_ERROR,
        "pending",
        now,
    )
    assert [(e.status, e.at, e.detail) for e in store.sms_events(refused)][1:] == [
        (SmsStatus.FAILED, now, OPTED_OUT_ERROR)
    ]

    # Leased: not due again until the lease runs out, then taken again.
    assert store.claim_due(now + timedelta(seconds=30), 10, lease).rows == []
    later = lease + timedelta(seconds=1)
    again = store.claim_due(later, 10, later + timedelta(minutes=2))
    assert [(r.id, r.attempts) for r in again.rows] == [(sent, 2), (reply, 2)]
    assert again.opted_out == 0


def test_a_claim_takes_only_the_rows_no_other_instance_took_meanwhile(tmp_path: Path) -> None:
    """Another instance leases one of the due SMS between this claim's read
    of the due rows and its UPDATE: the guarded UPDATE leaves that row
    alone, and the claim neither returns it nor records an event for it."""
    store = new_store(tmp_path)
    _queue(store, 3)
    first, taken, last = sorted(_sms_id(r.id) for r in store.list_sms())
    theirs = "2026-11-22 12:30:00.000000"  # the other instance's lease, as SQLite stores it

    def race(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith("UPDATE sms SET status"):
            cursor.connection.execute(
                "UPDATE sms SET status = 'sending', attempts = 1, next_attempt_at = ? WHERE id = ?",
                (theirs, taken),
            )

    event.listen(store.engine, "before_cursor_execute", race)
    now = NOW + timedelta(seconds=1)
    claim = store.claim_due(now, 10, now + timedelta(minutes=2))
    event.remove(store.engine, "before_cursor_execute", race)
    assert [r.id for r in claim.rows] == [first, last]
    assert [e.status for e in store.sms_events(taken)] == [SmsStatus.QUEUED]
    [row] = [r for r in store.list_sms() if r.id == taken]
    assert (row.attempts, row.next_attempt_at) == (1, NOW + timedelta(minutes=30))


def _plans(store: Store, statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Each step of SQLite's query plan for the recorded statements, with
    the statement it belongs to."""
    steps: list[tuple[str, str]] = []
    with store.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        for sql, params in statements:
            plan = raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            steps += [(sql, str(step[3])) for step in plan]
    return steps


def test_the_group_commit_and_the_claim_never_scan_a_whole_table(tmp_path: Path) -> None:
    """Every statement of the hot paths is answered from an index, so their
    cost does not grow with the mail already stored (a row-value
    ``(a, b) IN (VALUES ...)`` once made SQLite scan every email per batch)."""
    store = new_store(tmp_path)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        # Reads, updates, and inserts that read (INSERT ... SELECT).
        reads = " SELECT " in f" {sql.upper()} " or sql.lstrip().upper().startswith("UPDATE")
        if reads and not many:
            statements.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", record)
    store.enqueue(
        [accepted(f"s{i}@corp.example", f"<m{i}@corp.example>", "+14155551212") for i in range(5)]
    )
    store.enqueue([accepted("s0@corp.example", "<m0@corp.example>", "+14155551212")])  # duplicate
    claim = store.claim_due(NOW + timedelta(seconds=1), 10, NOW + timedelta(minutes=2))
    event.remove(store.engine, "before_cursor_execute", record)
    assert len(claim.rows) == 5

    scans = [(sql, step) for sql, step in _plans(store, statements) if step.startswith("SCAN ")]
    assert statements and scans == []


def test_delivery_reports_and_bounces_are_found_by_the_partial_indexes(tmp_path: Path) -> None:
    """The carrier-id and bounce indexes hold only SMS that have one (a new
    SMS has neither: no entry, no page written at acceptance), and the
    lookups that need them still never scan the table."""
    store = new_store(tmp_path)
    store.enqueue(
        [accepted(f"s{i}@corp.example", f"<m{i}@corp.example>", "+14155551212") for i in range(3)]
    )

    def entries(index: str) -> int:
        # The cells of the index's leaf pages: one per entry, NULLs too.
        with store.engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT coalesce(sum(ncell), 0) FROM dbstat WHERE name = :i"),
                    {"i": index},
                ).scalar_one()
            )

    assert (entries("ix_sms_carrier_id"), entries("ix_sms_bounce")) == (0, 0)
    assert entries("ix_sms_email") == 3  # a full index, for comparison
    claim = store.claim_due(NOW + timedelta(seconds=1), 10, NOW + timedelta(minutes=2))
    store.record_outcomes(
        [SmsOutcome.sent(_sms_id(r.id), "twilio", f"SM{r.id}", "sent", NOW) for r in claim.rows]
    )
    first = _sms_id(claim.rows[0].id)
    assert (entries("ix_sms_carrier_id"), entries("ix_sms_bounce")) == (3, 0)

    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if not many and sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
            statements.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", record)
    found = store.apply_status(
        carrier="twilio",
        carrier_id=f"SM{first}",
        status=SmsStatus.UNDELIVERED,
        error_code="30003",
        error_text="Unreachable destination handset",
        now=NOW + timedelta(minutes=1),
    )
    pending = store.pending_bounces(10)
    queued = store.queue_bounce(first, None, NOW + timedelta(minutes=2), NOW + timedelta(days=1))
    event.remove(store.engine, "before_cursor_execute", record)
    assert found and queued
    assert [sms.id for sms, _ in pending] == [first]
    steps = [step for _, step in _plans(store, statements)]
    assert not [step for step in steps if step.startswith("SCAN sms")], steps
    assert any("ix_sms_carrier_id" in step for step in steps), steps
    assert any("ix_sms_bounce" in step for step in steps), steps


def test_upgrading_to_the_partial_indexes_keeps_every_row_and_lookup(tmp_path: Path) -> None:
    """Migration 0006 on a database made by 0005, with SMS in it: the rows
    stay, the two indexes become partial, the unused (from, to) index goes,
    and a delivery report still finds its SMS; its downgrade restores 0005."""
    from alembic import command

    from mailsms.store.db import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()

    def run(step: Any, revision: str) -> None:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)

    def indexes() -> dict[str, str]:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
                {"t": "sms"},
            )
            return {name: sql for name, sql in rows if sql}

    run(command.upgrade, "0005")
    assert "WHERE" not in indexes()["ix_sms_carrier_id"] and "ix_sms_pair" in indexes()
    store = Store(engine)
    store.enqueue(
        [accepted("s@corp.example", f"<m{i}@corp.example>", "+14155551212") for i in range(2)]
    )
    claim = store.claim_due(NOW + timedelta(seconds=1), 10, NOW + timedelta(minutes=2))
    sent = _sms_id(claim.rows[0].id)
    store.record_outcomes([SmsOutcome.sent(sent, "twilio", "SMold", "sent", NOW)])

    run(command.upgrade, "head")
    after = indexes()
    assert after["ix_sms_carrier_id"].endswith("WHERE carrier_id IS NOT NULL")
    assert after["ix_sms_bounce"].endswith("WHERE bounce IS NOT NULL")
    assert "ix_sms_pair" not in after
    assert len(store.list_sms()) == 2
    assert store.apply_status(
        carrier="twilio",
        carrier_id="SMold",
        status=SmsStatus.DELIVERED,
        error_code=None,
        error_text=None,
        now=NOW + timedelta(minutes=1),
    )
    assert {row.id: row.status for row in store.list_sms()}[sent] == SmsStatus.DELIVERED

    run(command.downgrade, "0005")
    assert "WHERE" not in indexes()["ix_sms_bounce"] and "ix_sms_pair" in indexes()
    assert len(store.list_sms()) == 2


def test_sqlite_transactions_take_turns_and_an_invalidated_one_lets_go(tmp_path: Path) -> None:
    """The write gate (serve --workers N): a second engine on the same file
    begins only after the first commits, and a connection thrown away in
    the middle of a transaction does not keep the gate."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    first, second = make_engine(url), make_engine(url)
    migrate(first)
    order: list[str] = []
    holding = threading.Event()

    def hold_then_commit() -> None:
        with first.begin() as conn:
            conn.execute(text("SELECT 1"))
            holding.set()
            time.sleep(0.3)
            order.append("first commits")

    worker = threading.Thread(target=hold_then_commit)
    worker.start()
    assert holding.wait(5)
    with second.begin() as conn:
        order.append("second begins")
        conn.execute(text("SELECT 1"))
    worker.join(5)
    assert order == ["first commits", "second begins"]

    with first.connect() as conn:
        conn.execute(text("SELECT 1"))  # a transaction has begun
        conn.invalidate()
    done = threading.Event()

    def begin_again() -> None:
        with second.begin() as conn:
            conn.execute(text("SELECT 1"))
        done.set()

    threading.Thread(target=begin_again, daemon=True).start()
    assert done.wait(5), "the gate stayed closed after the connection was invalidated"


def _queue(store: Store, count: int) -> None:
    for start in range(0, count, 250):
        store.enqueue(
            [
                accepted("a@corp.example", f"<q{i}@corp.example>", "+14155551212")
                for i in range(start, min(count, start + 250))
            ]
        )


def _vm_steps(store: Store) -> list[int]:
    """A counter of SQLite virtual-machine steps (in hundreds) on every new
    connection of ``store``: a deterministic measure of work, unlike time."""
    counter = [0]

    def count() -> int:
        counter[0] += 1
        return 0  # 0: carry on

    def install(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_progress_handler(count, 100)

    store.engine.dispose()
    event.listen(store.engine, "connect", install)
    return counter


def test_dispatch_work_does_not_grow_with_the_depth_of_the_queue(tmp_path: Path) -> None:
    """Claiming and recording 10 SMS costs about the same with 100 or 3,000
    due SMS waiting.  A guard on the (status, next_attempt_at) index once
    made every claim walk the whole due queue (28 against 289 steps)."""

    def steps_to_dispatch(depth: int) -> int:
        store = new_store(tmp_path / f"d{depth}")
        _queue(store, depth)
        counter = _vm_steps(store)
        now = NOW + timedelta(seconds=1)
        claim = store.claim_due(now, 10, now + timedelta(minutes=2))
        store.record_outcomes(
            [SmsOutcome.sent(_sms_id(r.id), "twilio", f"SM{r.id}", "sent", now) for r in claim.rows]
        )
        assert len(claim.rows) == 10
        return counter[0]

    shallow, deep = steps_to_dispatch(100), steps_to_dispatch(3000)
    assert deep < shallow * 1.5, (shallow, deep)


def test_a_group_commit_does_not_grow_with_the_mail_already_stored(tmp_path: Path) -> None:
    """Committing 10 new emails costs about the same with 100 or 3,000
    stored (the duplicate check once scanned every stored email)."""

    def steps_to_commit(stored: int) -> int:
        store = new_store(tmp_path / f"c{stored}")
        _queue(store, stored)
        counter = _vm_steps(store)
        outcomes = store.enqueue(
            [accepted("b@corp.example", f"<n{i}@corp.example>", "+14155550123") for i in range(10)]
        )
        assert not any(o.duplicate for o in outcomes)
        return counter[0]

    shallow, deep = steps_to_commit(100), steps_to_commit(3000)
    assert deep < shallow * 1.5, (shallow, deep)


def _sms_id(value: int | None) -> int:
    assert value is not None
    return value


@contextlib.contextmanager
def _another_worker_writing(tmp_path: Path) -> Iterator[threading.Event]:
    """Another worker process's engine on the store of ``tmp_path`` holds the
    write turn until the event it yields is set, or the block ends."""
    other = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_turn(other):
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=hold)
    writer.start()
    try:
        assert holding.wait(10)
        yield release
    finally:
        release.set()
        writer.join(10)
        other.dispose()


async def test_emails_arriving_while_another_process_writes_join_one_commit(
    tmp_path: Path,
) -> None:
    """The group commit collects its batch once it holds the write turn:
    what arrives while another worker process writes shares the next
    commit instead of queueing one commit each behind it."""
    store = new_store(tmp_path)
    batches: list[int] = []
    commit_writes = store.commit_writes

    def counting(items: Sequence[Write]) -> list[WriteResult | Exception]:
        batches.append(len(items))
        return commit_writes(items)

    store.commit_writes = counting  # type: ignore[method-assign]
    runner = DbRunner(store)
    committer = GroupCommit(runner)
    committer.start()
    try:
        with _another_worker_writing(tmp_path) as release:
            submitted = [
                asyncio.create_task(
                    committer.enqueue(
                        accepted("a@corp.example", f"<{i}@corp.example>", "+14155551212")
                    )
                )
                for i in range(3)
            ]
            await asyncio.sleep(0.05)  # the first is waiting for the turn
            submitted += [
                asyncio.create_task(
                    committer.enqueue(
                        accepted("a@corp.example", f"<{i}@corp.example>", "+14155551212")
                    )
                )
                for i in range(3, 6)
            ]
            await asyncio.sleep(0.05)
            assert batches == []  # no batch was formed while the other held the turn
            release.set()
            outcomes = await asyncio.wait_for(asyncio.gather(*submitted), 10)
    finally:
        await committer.stop()
        runner.close()
    assert batches == [6]
    assert len({o.email_id for o in outcomes}) == 6
    assert len(store.list_emails(limit=10)) == 6


def test_reads_answer_while_another_worker_holds_the_write_turn(tmp_path: Path) -> None:
    """SQLite in WAL mode lets readers run beside the writer, so reads take
    no write turn: the dashboard's and the API's lists, the SMTP dialogue's
    lookups (the per-phone count at RCPT, an AUTH password, the allow-list
    reload) and the background pollers that find nothing answer while
    another worker process commits; a write still waits for its turn."""
    store = new_store(tmp_path)
    _queue(store, 3)
    [sms] = store.list_sms(limit=1)
    sms_id = _sms_id(sms.id)
    store.add_sender("a@corp.example", NOW)
    reads: dict[str, Any] = {
        "ping": store.ping,
        "list_sms": store.list_sms,
        "list_emails": store.list_emails,
        "sms_events": lambda: store.sms_events(sms_id),
        "count_by_status": store.count_by_status,
        "list_senders": store.list_senders,
        "sender_entries": store.sender_entries,
        "sender_trust": store.sender_trust,
        "sender_password_hash": lambda: store.sender_password_hash("a@corp.example"),
        "counter_value": lambda: store.counter_value("phone-hour", "+14155551212", NOW),
        "list_numbers": store.list_numbers,
        "suppression_for": lambda: store.suppression_for("+14155551212"),
        "suppression_stamp": store.suppression_stamp,
        "suppressed_phones": store.suppressed_phones,
        "list_suppressions": store.list_suppressions,
        "pending_inbound": lambda: store.pending_inbound(10),
        "list_inbound": store.list_inbound,
        "pending_bounces": lambda: store.pending_bounces(10),
        "list_mail": store.list_mail,
        "claim_mail, nothing due": lambda: store.claim_mail(NOW, 10, NOW + timedelta(minutes=5)),
    }
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with _another_worker_writing(tmp_path) as release:
            for name, read in reads.items():
                try:
                    pool.submit(read).result(timeout=5)
                except TimeoutError:
                    pytest.fail(f"{name} waited for the other worker's write turn")
            assert store.count_by_status() == {"queued": 3}
            write = pool.submit(
                store.enqueue, [accepted("a@corp.example", "<late@corp.example>", "+14155551212")]
            )
            time.sleep(0.3)
            assert not write.done()  # the write waits for the turn
            release.set()
            [outcome] = write.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert not outcome.duplicate
    assert store.count_by_status() == {"queued": 4}


async def test_a_failed_write_turn_answers_its_callers_and_the_committer_goes_on(
    tmp_path: Path,
) -> None:
    """If taking the turn fails (the lock file), the emails waiting get the
    error (the SMTP client sees a 451 and retries) and later ones commit."""
    store = new_store(tmp_path)
    runner = DbRunner(store)
    failures = [OSError("lock file gone")]

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        if failures:
            raise failures.pop()
        yield

    committer: Batcher[AcceptedEmail, EnqueueOutcome] = Batcher(
        runner, store.enqueue, name="group-commit", turn=turn
    )
    committer.start()
    try:
        first = accepted("a@corp.example", "<1@corp.example>", "+14155551212")
        with pytest.raises(OSError, match="lock file gone"):
            await asyncio.wait_for(committer.submit(first), 10)
        outcome = await asyncio.wait_for(committer.submit(first), 10)
        assert not outcome.duplicate
    finally:
        await committer.stop()
        runner.close()
    assert len(store.list_emails(limit=10)) == 1


async def test_emails_that_joined_a_round_do_not_cost_an_empty_turn_after_it(
    tmp_path: Path,
) -> None:
    """An email submitted while a round waits for the write turn joins that
    round; its wake-up must not start a second round that finds nothing but
    still waits for a turn of the gate another worker process may hold."""
    store = new_store(tmp_path)
    runner = DbRunner(store)
    turns: list[int] = []
    release = threading.Event()

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        turns.append(1)
        release.wait(10)  # another worker process holds the gate
        yield

    committer: Batcher[AcceptedEmail, EnqueueOutcome] = Batcher(
        runner, store.enqueue, name="group-commit", turn=turn
    )
    committer.start()
    try:
        first = asyncio.create_task(
            committer.submit(accepted("a@corp.example", "<1@corp.example>", "+14155551212"))
        )
        await asyncio.sleep(0.05)  # the round is waiting for the turn
        second = asyncio.create_task(
            committer.submit(accepted("a@corp.example", "<2@corp.example>", "+14155551212"))
        )
        await asyncio.sleep(0.05)
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(first, second), 10)
        await asyncio.sleep(0.1)  # time for a stray round to start
    finally:
        await committer.stop()
        runner.close()
    assert [o.duplicate for o in outcomes] == [False, False]
    assert turns == [1]


def _commits(store: Store) -> list[int]:
    """A list that grows by one at every COMMIT the store's engine makes."""
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    return commits


def test_new_emails_outcomes_and_a_claim_share_one_commit(tmp_path: Path) -> None:
    """A round of the group commit writes the accepted emails, the outcomes
    of earlier hand-overs and the dispatcher's claim in ONE transaction, and
    the claim finds the SMS of that same round due."""
    store = new_store(tmp_path)
    [earlier] = store.enqueue([accepted("a@corp.example", "<0@corp.example>", "+14155551212")])
    [leased] = store.claim_due(NOW, 10, NOW + timedelta(minutes=2)).rows
    later = NOW + timedelta(seconds=5)
    commits = _commits(store)
    results = store.commit_writes(
        [
            accepted("a@corp.example", "<1@corp.example>", "+14155550199"),
            SmsOutcome.sent(_sms_id(leased.id), "twilio", "SM1", "sent", later),
            ClaimRequest(10, timedelta(minutes=2), lambda: later),
            accepted("a@corp.example", "<2@corp.example>", "+14155550123"),
        ]
    )
    assert commits == [1]
    first, recorded, claim, second = results
    assert isinstance(first, EnqueueOutcome) and isinstance(second, EnqueueOutcome)
    assert recorded is None
    assert isinstance(claim, Claim)
    # Both new SMS, not the one just recorded as sent.
    assert sorted(row.uid for row in claim.rows) == sorted(first.sms_uids + second.sms_uids)
    by_uid = {sms.uid: sms for sms in store.list_sms()}
    assert by_uid[leased.uid].status == SmsStatus.SENT
    assert by_uid[leased.uid].carrier_id == "SM1"
    assert earlier.sms_uids == (leased.uid,)
    assert {by_uid[uid].status for uid in first.sms_uids + second.sms_uids} == {SmsStatus.SENDING}


def test_a_write_that_fails_the_shared_commit_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one kind of write breaks the round's transaction, the round is
    rolled back whole and each kind runs again in its own: the emails and
    the claim commit, and only the outcome's caller gets the error."""
    store = new_store(tmp_path)
    [leased] = store.enqueue([accepted("a@corp.example", "<0@corp.example>", "+14155551212")])
    [row] = store.claim_due(NOW, 10, NOW + timedelta(minutes=2)).rows
    later = NOW + timedelta(seconds=5)

    def broken(*args: object) -> None:
        raise RuntimeError("outcome cannot be written")

    monkeypatch.setattr(queries, "_record_outcomes", broken)
    commits = _commits(store)
    email, recorded, claim = store.commit_writes(
        [
            accepted("a@corp.example", "<1@corp.example>", "+14155550199"),
            SmsOutcome.sent(_sms_id(row.id), "twilio", "SM1", "sent", later),
            ClaimRequest(10, timedelta(minutes=2), lambda: later),
        ]
    )
    assert isinstance(recorded, RuntimeError)
    assert isinstance(email, EnqueueOutcome) and not email.duplicate
    assert isinstance(claim, Claim)
    assert [r.uid for r in claim.rows] == list(email.sms_uids)
    assert len(commits) == 2  # the emails, then the claim; the outcome none
    by_uid = {sms.uid: sms for sms in store.list_sms()}
    assert by_uid[row.uid].status == SmsStatus.SENDING  # still leased, not sent
    assert leased.sms_uids == (row.uid,)


async def test_the_group_commit_answers_each_kind_of_write(tmp_path: Path) -> None:
    """Through the event loop: an email, an outcome and a claim submitted
    together come back each with its own kind of answer, and only a round
    that committed emails tells the dispatcher there is new work."""
    store = new_store(tmp_path)
    runner = DbRunner(store)
    committer = GroupCommit(runner)
    woken: list[int] = []
    committer.on_enqueued = lambda: woken.append(1)
    committer.start()
    try:
        outcome = await asyncio.wait_for(
            committer.enqueue(accepted("a@corp.example", "<1@corp.example>", "+14155551212")),
            10,
        )
        assert woken == [1]
        claim = await asyncio.wait_for(
            committer.claim(ClaimRequest(10, timedelta(minutes=2), lambda: NOW)), 10
        )
        assert [row.uid for row in claim.rows] == list(outcome.sms_uids)
        await asyncio.wait_for(
            committer.record(
                SmsOutcome.sent(_sms_id(claim.rows[0].id), "twilio", "SM1", "sent", NOW)
            ),
            10,
        )
        assert woken == [1]  # claims and outcomes bring no new SMS
    finally:
        await committer.stop()
        runner.close()
    [sms] = store.list_sms()
    assert sms.status == SmsStatus.SENT
