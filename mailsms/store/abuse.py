"""Store queries for sender trust and abuse limits (a mixin of ``Store``).

Counters are incremented and checked in the transaction that stores the
message (:func:`charge_within`, called by the group-commit insert): every
counter is raised with an atomic upsert (``INSERT ... ON CONFLICT DO UPDATE
... RETURNING``, on SQLite and PostgreSQL alike) and the new values are
compared with the limits; an email that would pass one takes its charges back
and is not stored, and the counts commit together with the messages they
count (no extra fsync, nothing to refund after a failure).  Two sessions racing
for the last unit therefore serialise on the counter row and exactly one
wins: the count can never be under-stated, whatever the concurrency or the
number of gateway instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailsms.limits import RETENTION_SECONDS, Charge, exceeded
from mailsms.store.models import AbuseCounter, Sender


@dataclass(frozen=True, slots=True)
class SenderTrust:
    """An allow-list entry as the SMTP handler needs it (no hash)."""

    address: str
    policy: str | None
    has_password: bool


def _store_error(message: str) -> Exception:
    # Imported late: queries.py imports this module for the mixin.
    from mailsms.store.queries import StoreError

    return StoreError(message)


class AbuseQueries:
    """Sender policy/password and abuse-counter queries."""

    engine: Engine
    reads: Engine

    # --- senders: policy and password ------------------------------------
    def register_sender(self, address: str, policy: str | None, now: datetime) -> Sender:
        """Add an entry with its policy in one transaction."""
        from sqlalchemy.exc import IntegrityError

        with Session(self.engine) as session:
            sender = Sender(address=address, created_at=now, policy=policy)
            session.add(sender)
            try:
                session.commit()
            except IntegrityError:
                raise _store_error(f"{address} is already registered") from None
            session.refresh(sender)
            return sender

    def set_sender_policy(self, address: str, policy: str | None) -> None:
        self._update_sender(address, policy=policy)

    def set_sender_password(self, address: str, password_hash: str | None) -> None:
        self._update_sender(address, password_hash=password_hash)

    def _update_sender(self, address: str, **values: Any) -> None:
        with Session(self.engine) as session:
            result = session.execute(
                update(Sender).where(col(Sender.address) == address).values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                raise _store_error(f"{address} is not registered")
            session.commit()

    def sender_trust(self) -> list[SenderTrust]:
        with Session(self.reads) as session:
            rows = session.execute(
                select(col(Sender.address), col(Sender.policy), col(Sender.password_hash))
            )
            return [SenderTrust(a, p, h is not None) for a, p, h in rows]

    def sender_password_hash(self, address: str) -> str | None:
        with Session(self.reads) as session:
            return session.scalars(
                select(col(Sender.password_hash)).where(col(Sender.address) == address)
            ).first()

    def counter_value(self, scope: str, key: str, window_start: datetime) -> int:
        with Session(self.reads) as session:
            value = session.scalars(
                select(col(AbuseCounter.count)).where(
                    col(AbuseCounter.scope) == scope,
                    col(AbuseCounter.key) == key,
                    col(AbuseCounter.window_start) == window_start,
                )
            ).first()
            return int(value or 0)


def increment(session: Session, c: Charge, amount: int) -> int:
    """Add ``amount`` to a counter with an atomic upsert; its new value."""
    table: Any = AbuseCounter.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        insert: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        insert = sqlite.insert(table)
    else:  # pragma: no cover - mailsms supports SQLite and PostgreSQL
        raise _store_error(f"abuse counters need SQLite or PostgreSQL, not {dialect}")
    statement = (
        insert.values(scope=c.scope, key=c.key, window_start=c.window_start, count=amount)
        .on_conflict_do_update(
            index_elements=["scope", "key", "window_start"],
            set_={"count": table.c.count + insert.excluded.count},
        )
        .returning(table.c.count)
    )
    return int(session.execute(statement).scalar_one())


def forget_old_windows(session: Session, charges: Sequence[Charge]) -> None:
    """Keep the table small: old windows of these keys are useless."""
    for scope, key, start in {(c.scope, c.key, c.window_start) for c in charges}:
        session.execute(
            delete(AbuseCounter).where(
                col(AbuseCounter.scope) == scope,
                col(AbuseCounter.key) == key,
                col(AbuseCounter.window_start) < start - timedelta(seconds=RETENTION_SECONDS),
            )
        )


def charge_within(session: Session, charges: Sequence[Charge]) -> Charge | None:
    """Inside the caller's transaction: add the charges and return None, or,
    when one would pass its limit, take them back and return that one."""
    if not charges:
        return None
    totals = [increment(session, c, c.amount) for c in charges]
    over = exceeded(charges, totals)
    if over is not None:
        for c in charges:
            increment(session, c, -c.amount)
    return over
