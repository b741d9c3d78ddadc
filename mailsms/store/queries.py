"""Queries: the only code that talks SQL.  Returns plain models.

Every method is synchronous and short; the async edges run them in worker
threads (:mod:`mailsms.store.runner`).  Every method takes the current time
from its caller, so tests and the dispatcher agree on one clock.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Executable,
    Integer,
    Table,
    and_,
    bindparam,
    false,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import configure_mappers
from sqlmodel import Session, col

from mailsms.limits import Charge
from mailsms.routing import PairUse, allocate_number
from mailsms.store.abuse import AbuseQueries, charge_within, forget_old_windows
from mailsms.store.db import reader
from mailsms.store.models import (
    Conversation,
    EmailDisposition,
    InboundEmail,
    InboundSms,
    InboundStatus,
    MailStatus,
    OutboundMail,
    OutboundSms,
    Sender,
    SmsEvent,
    SmsStatus,
    Suppression,
    VirtualNumber,
)
from mailsms.store.prepared import Prepared, listed, row_values

_TRANSIENT_RETRIES = 2
"""Extra tries of a group commit that hit a deadlock or lock timeout."""


class StoreError(Exception):
    """A request the store refuses (duplicate, unknown entry); the message
    is shown to the admin as is."""


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewSms:
    to_number: str
    text: str
    encoding: str
    segments: int
    from_number: str | None = None
    """None: allocate in the enqueue transaction (see mailsms.routing)."""


@dataclass(frozen=True, slots=True)
class NewMail:
    """An email to queue for delivery."""

    kind: str
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    message: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """Where an inbound SMS goes, and the email it answers (if any)."""

    to: str
    via: str
    """``conversation``, ``owner`` or ``catch-all``."""
    subject: str | None = None
    message_id: str | None = None
    thread_references: tuple[str, ...] = ()


@dataclass(slots=True)
class AcceptedEmail:
    """One email as the SMTP handler accepted it, ready to be committed."""

    message_id: str
    mail_from: str
    from_address: str
    subject: str | None
    received_at: datetime
    deadline_at: datetime
    peer: str | None = None
    size: int = 0
    disposition: str = EmailDisposition.QUEUED
    reason: str | None = None
    attachments: str | None = None
    thread_references: str | None = None
    headers: str | None = None
    auth_results: str | None = None
    """Our Authentication-Results value (RFC 8601) for this message."""
    own_number: str | None = None
    """The number assigned to the sender's registered entry."""
    pool: tuple[str, ...] = ()
    default_from: str | None = None
    charges: tuple[Charge, ...] = ()
    """Abuse counters this email adds to, checked in the same transaction."""
    sms: list[NewSms] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    email_id: int
    sms_uids: tuple[str, ...]
    duplicate: bool
    """True when this Message-ID from this author was already accepted:
    nothing new was stored and nothing will be sent twice."""
    refused: Charge | None = None
    """The limit this email would have passed: nothing was stored."""


@dataclass(frozen=True, slots=True)
class SmsOutcome:
    """What one hand-over to a carrier came to (see Store.record_outcomes)."""

    sms_id: int
    status: str
    now: datetime
    detail: str | None = None
    carrier: str | None = None
    carrier_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    next_attempt_at: datetime | None = None

    @classmethod
    def sent(
        cls, sms_id: int, carrier: str, carrier_id: str, status: str, now: datetime
    ) -> SmsOutcome:
        return cls(sms_id, status, now, f"{carrier} id {carrier_id}", carrier, carrier_id)

    @classmethod
    def retry(
        cls, sms_id: int, error: str, code: str | None, when: datetime, now: datetime
    ) -> SmsOutcome:
        detail = f"retry at {when:%Y-%m-%d %H:%M:%S}: {error}"
        return cls(
            sms_id,
            SmsStatus.QUEUED,
            now,
            detail,
            error=error,
            error_code=code,
            next_attempt_at=when,
        )

    @classmethod
    def final(
        cls, sms_id: int, status: str, error: str, code: str | None, now: datetime
    ) -> SmsOutcome:
        return cls(sms_id, status, now, error, error=error, error_code=code)


OPTED_OUT_CODE = "opted-out"
OPTED_OUT_ERROR = "the phone opted out (texted STOP) before the SMS was sent"


@dataclass(frozen=True, slots=True)
class Claim:
    """SMS claimed for sending, and how many were refused for an opt-out."""

    rows: list[OutboundSms]
    opted_out: int = 0


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A claim of up to ``limit`` due SMS, leased for ``lease`` from the
    time the claim is made, read from ``clock`` when it runs (a claim that
    shares a commit with new emails must see their SMS as due)."""

    limit: int
    lease: timedelta
    clock: Callable[[], datetime]


Write = AcceptedEmail | SmsOutcome | ClaimRequest
"""One write of the hot paths (see :meth:`Store.commit_writes`)."""
WriteResult = EnqueueOutcome | None | Claim


@dataclass(frozen=True, slots=True)
class NumberRow:
    number: str
    sender: str | None


class Store(AbuseQueries):
    """Repository over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = reader(engine)
        """For reads of one statement: on SQLite they take no write turn
        (see :func:`mailsms.store.db.reader`)."""

    def prepare(self) -> None:
        """Compile the hot paths' statements for this database now, at
        start-up, rather than in the first group-commit rounds (see
        :func:`_prepare_statements`)."""
        _prepare_statements(self.engine.dialect)

    # --- health -----------------------------------------------------------
    def ping(self) -> None:
        with self.reads.connect() as connection:
            connection.execute(text("SELECT 1"))

    # --- senders ----------------------------------------------------------
    def add_sender(self, address: str, now: datetime) -> Sender:
        with Session(self.engine) as session:
            sender = Sender(address=address, created_at=now)
            session.add(sender)
            try:
                session.commit()
            except IntegrityError:
                raise StoreError(f"{address} is already registered") from None
            session.refresh(sender)
            return sender

    def list_senders(self) -> list[Sender]:
        with Session(self.reads) as session:
            return list(session.scalars(select(Sender).order_by(col(Sender.address))))

    def remove_sender(self, address: str) -> None:
        with Session(self.engine) as session:
            sender = session.scalars(select(Sender).where(col(Sender.address) == address)).first()
            if sender is None:
                raise StoreError(f"{address} is not registered")
            session.execute(
                update(VirtualNumber)
                .where(col(VirtualNumber.sender_id) == sender.id)
                .values(sender_id=None)
            )
            session.delete(sender)
            session.commit()

    def sender_entries(self) -> frozenset[str]:
        with Session(self.reads) as session:
            return frozenset(session.scalars(select(col(Sender.address))))

    # --- numbers ----------------------------------------------------------
    def add_number(self, number: str, sender: str | None, now: datetime) -> NumberRow:
        with Session(self.engine) as session:
            sender_id = None
            if sender is not None:
                owner = session.scalars(select(Sender).where(col(Sender.address) == sender)).first()
                if owner is None:
                    raise StoreError(f"{sender} is not a registered sender")
                sender_id = owner.id
            session.add(VirtualNumber(number=number, sender_id=sender_id, created_at=now))
            try:
                session.commit()
            except IntegrityError:
                raise StoreError(f"{number} is already registered") from None
            return NumberRow(number, sender)

    def list_numbers(self) -> list[NumberRow]:
        with Session(self.reads) as session:
            rows = session.execute(
                select(col(VirtualNumber.number), col(Sender.address))
                .join(Sender, col(VirtualNumber.sender_id) == col(Sender.id), isouter=True)
                .order_by(col(VirtualNumber.number))
            )
            return [NumberRow(number, address) for number, address in rows]

    def remove_number(self, number: str) -> None:
        with Session(self.engine) as session:
            row = session.scalars(
                select(VirtualNumber).where(col(VirtualNumber.number) == number)
            ).first()
            if row is None:
                raise StoreError(f"{number} is not registered")
            session.delete(row)
            session.commit()

    # --- accepting mail ---------------------------------------------------
    def enqueue(self, batch: Sequence[AcceptedEmail]) -> list[EnqueueOutcome]:
        """Commit a batch of accepted emails and their SMS in ONE transaction
        (group commit), with a handful of set-based statements for the whole
        batch rather than a round of ORM flushes per message.  When a
        concurrent instance commits the same Message-ID first (a unique-key
        race), fall back to one transaction per email, so one duplicate never
        costs the others their commit."""
        for attempt in range(_TRANSIENT_RETRIES + 1):
            try:
                # A Connection, not a Session: the batch is Core statements
                # only, and the ORM's bookkeeping per statement and per
                # commit is CPU spent for nothing on this hot path.
                with self.engine.begin() as connection:
                    return _insert_batch(connection, batch)
            except IntegrityError:
                break
            except OperationalError:
                # A deadlock or lock timeout between instances (PostgreSQL
                # picks a victim; SQLite's busy timeout can run out): the
                # transaction was rolled back whole, so trying again is safe.
                if attempt == _TRANSIENT_RETRIES:
                    raise
                time.sleep(0.02 * (attempt + 1))
        results: list[EnqueueOutcome] = []
        for item in batch:
            try:
                with self.engine.begin() as connection:
                    [outcome] = _insert_batch(connection, [item])
            except IntegrityError:
                outcome = self._existing(item)
            results.append(outcome)
        return results

    def _existing(self, item: AcceptedEmail) -> EnqueueOutcome:
        with self.engine.connect() as connection:
            email_id = connection.scalars(
                select(col(InboundEmail.id)).where(
                    col(InboundEmail.from_address) == item.from_address,
                    col(InboundEmail.message_id) == item.message_id,
                )
            ).one()
            return _duplicate(connection, _id(email_id))

    # --- dispatching ------------------------------------------------------
    def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> Claim:
        """Take up to ``limit`` due SMS for sending, under a lease
        (see :func:`_claim_leased`), and record the ``sending`` events.

        The opt-out check that counts is made here, in the claim's own
        transaction: an SMS from an email to a phone that has texted STOP
        since the email was accepted is never sent; it ends ``failed`` with
        a bounce due, like any other undeliverable SMS.  (Keyword replies,
        such as the STOP confirmation itself, have no email and are sent.)
        The check is read with the due rows (see _SMS_LEASE).

        Core statements built once, on a Connection, as in the group
        commit: the ORM's statement handling, object loading and expunging
        cost more CPU per SMS than the statements themselves.
        """
        with self.engine.begin() as connection:
            return _claim_due(connection, now, limit, lease_until)

    def record_outcomes(self, outcomes: Sequence[SmsOutcome]) -> list[None]:
        """Record what became of a batch of hand-overs in ONE transaction
        (the dispatcher's group commit): status, carrier id or error, next
        attempt, a bounce mark for final failures, and one event each."""
        if not outcomes:
            return []
        with self.engine.begin() as connection:
            _record_outcomes(connection, outcomes)
        return [None] * len(outcomes)

    def commit_writes(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """The writes of one process's hot paths, in ONE transaction: the
        accepted emails, then the outcomes of hand-overs, then claims (which
        see the SMS of this same commit as due).  One result per write, in
        order: its :meth:`enqueue`, :meth:`record_outcomes` or
        :meth:`claim_due` result, or the exception it failed with.

        Each commit costs a durable flush and, on SQLite, the one write lock
        every worker process takes in turn: three kinds of transaction per
        SMS were three turns where one will do.  When the shared transaction
        fails (a Message-ID race, a deadlock, a bug in one kind), it is
        rolled back whole and each kind runs again alone, in its own
        transaction(s) and with its own error handling, so one kind's
        failure is never another's.
        """
        emails = [w for w in writes if isinstance(w, AcceptedEmail)]
        outcomes = [w for w in writes if isinstance(w, SmsOutcome)]
        claims = [w for w in writes if isinstance(w, ClaimRequest)]
        enqueued: Sequence[EnqueueOutcome] | Exception = []
        recorded: list[None] | Exception = []
        claimed: list[Claim | Exception] = []
        try:
            with self.engine.begin() as connection:
                if emails:
                    enqueued = _insert_batch(connection, emails)
                if outcomes:
                    _record_outcomes(connection, outcomes)
                claimed.extend(
                    _claim_now(request, functools.partial(_claim_due, connection))
                    for request in claims
                )
        except Exception as exc:
            log.debug("shared write transaction failed (%s); each kind alone", exc)
            # Only the kinds this round has: an empty one would still take
            # a transaction (and, on SQLite, a turn of the write lock).
            if emails:
                enqueued = _outcome_or_error(self.enqueue, emails)
            if outcomes:
                recorded = _outcome_or_error(self.record_outcomes, outcomes)
            claimed = [_outcome_or_error(_claim_now, request, self.claim_due) for request in claims]
        email_results: Iterator[EnqueueOutcome | Exception] = (
            itertools.repeat(enqueued) if isinstance(enqueued, Exception) else iter(enqueued)
        )
        claim_results = iter(claimed)
        results: list[WriteResult | Exception] = []
        for write in writes:
            if isinstance(write, AcceptedEmail):
                results.append(next(email_results))
            elif isinstance(write, SmsOutcome):
                results.append(recorded if isinstance(recorded, Exception) else None)
            else:
                results.append(next(claim_results))
        return results

    # --- reading ----------------------------------------------------------
    def list_sms(self, status: str | None = None, limit: int = 100) -> list[OutboundSms]:
        with Session(self.reads) as session:
            query = select(OutboundSms).order_by(col(OutboundSms.id).desc())
            if status is not None:
                query = query.where(col(OutboundSms.status) == status)
            return list(session.scalars(query.limit(limit)))

    def list_emails(self, limit: int = 100) -> list[InboundEmail]:
        with Session(self.reads) as session:
            query = select(InboundEmail).order_by(col(InboundEmail.id).desc())
            return list(session.scalars(query.limit(limit)))

    def sms_events(self, sms_id: int) -> list[SmsEvent]:
        with Session(self.reads) as session:
            query = (
                select(SmsEvent).where(col(SmsEvent.sms_id) == sms_id).order_by(col(SmsEvent.id))
            )
            return list(session.scalars(query))

    def count_by_status(self) -> dict[str, int]:
        with Session(self.reads) as session:
            rows = session.execute(
                select(col(OutboundSms.status), func.count()).group_by(col(OutboundSms.status))
            )
            return {status: count for status, count in rows}

    # --- opt-out --------------------------------------------------------
    def suppression_for(self, phone: str) -> Suppression | None:
        """The phone's opt-out, if it has one on any of our numbers."""
        with Session(self.reads) as session:
            return session.scalars(
                select(Suppression).where(col(Suppression.phone) == phone).limit(1)
            ).first()

    def suppression_stamp(self) -> tuple[int, int | None, datetime | None]:
        """A cheap fingerprint of the opt-out table (count, highest id,
        newest row): it changes whenever a STOP adds or a START removes a
        row, so a cached copy of the phones is reloaded only then."""
        with self.reads.connect() as connection:
            count, top, newest = connection.execute(
                select(
                    func.count(),
                    func.max(col(Suppression.id)),
                    func.max(col(Suppression.created_at)),
                )
            ).one()
            return int(count), top, newest

    def suppressed_phones(self) -> frozenset[str]:
        """Every phone with an opt-out (the SMTP handler's early check)."""
        with self.reads.connect() as connection:
            return frozenset(connection.scalars(select(col(Suppression.phone)).distinct()))

    def list_suppressions(self) -> list[Suppression]:
        with Session(self.reads) as session:
            return list(session.scalars(select(Suppression).order_by(col(Suppression.id))))

    # --- inbound SMS ------------------------------------------------------
    def save_inbound(
        self,
        *,
        carrier: str,
        carrier_id: str,
        from_phone: str,
        to_number: str,
        text: str,
        media_urls: Sequence[str],
        received_at: datetime,
    ) -> tuple[int, bool]:
        """Commit an inbound SMS; (id, duplicate).  A carrier's retry of the
        same message id is a duplicate: acknowledged, not stored twice."""
        row = InboundSms(
            carrier=carrier,
            carrier_id=carrier_id,
            from_phone=from_phone,
            to_number=to_number,
            text=text,
            media_urls="\n".join(media_urls) or None,
            received_at=received_at,
            status=InboundStatus.PENDING,
        )
        try:
            with Session(self.engine) as session:
                session.add(row)
                session.commit()
                return _id(row.id), False
        except IntegrityError:
            pass
        with Session(self.engine) as session:
            existing = session.scalars(
                select(col(InboundSms.id)).where(
                    col(InboundSms.carrier) == carrier, col(InboundSms.carrier_id) == carrier_id
                )
            ).one()
            return _id(existing), True

    def pending_inbound(self, limit: int) -> list[InboundSms]:
        with Session(self.reads) as session:
            return list(
                session.scalars(
                    select(InboundSms)
                    .where(col(InboundSms.status) == InboundStatus.PENDING)
                    .order_by(col(InboundSms.id))
                    .limit(limit)
                )
            )

    def list_inbound(self, limit: int = 100) -> list[InboundSms]:
        with Session(self.reads) as session:
            query = select(InboundSms).order_by(col(InboundSms.id).desc()).limit(limit)
            return list(session.scalars(query))

    def route_for(self, phone: str, number: str, catch_all: str | None) -> Route | None:
        """Who gets an SMS from ``phone`` to our ``number``: the sender of the
        conversation on that pair, else the number's owner (an exact address,
        not a whole domain), else the catch-all address, else nobody."""
        with Session(self.engine) as session:
            found = session.execute(
                select(Conversation, InboundEmail)
                .join(
                    InboundEmail, col(Conversation.email_id) == col(InboundEmail.id), isouter=True
                )
                .where(col(Conversation.number) == number, col(Conversation.phone) == phone)
            ).first()
            if found is not None:
                pair, email = found
                if email is None:
                    return Route(to=pair.sender, via="conversation")
                refs = tuple((email.thread_references or "").split())
                return Route(
                    to=pair.sender,
                    via="conversation",
                    subject=email.subject,
                    message_id=email.message_id,
                    thread_references=refs,
                )
            owner = session.scalars(
                select(col(Sender.address))
                .join(VirtualNumber, col(VirtualNumber.sender_id) == col(Sender.id))
                .where(col(VirtualNumber.number) == number)
            ).first()
        if owner is not None and not owner.startswith("@"):
            return Route(to=owner, via="owner")
        if catch_all:
            return Route(to=catch_all, via="catch-all")
        return None

    def complete_inbound(
        self,
        inbound_id: int,
        *,
        status: str,
        routed_to: str | None,
        reason: str | None,
        now: datetime,
        deadline: datetime,
        mails: Sequence[NewMail] = (),
        replies: Sequence[NewSms] = (),
        suppress: str | None = None,
        unsuppress: bool = False,
    ) -> bool:
        """Record what became of an inbound SMS together with its effects
        (reply emails, keyword answers, opt-out changes) in ONE transaction,
        guarded by its pending state: two instances never both handle it."""
        with Session(self.engine) as session:
            row = session.get(InboundSms, inbound_id)
            if row is None or row.status != InboundStatus.PENDING:
                return False
            result = session.execute(
                update(InboundSms)
                .where(
                    col(InboundSms.id) == inbound_id,
                    col(InboundSms.status) == InboundStatus.PENDING,
                )
                .values(status=status, routed_to=routed_to, reason=reason, processed_at=now)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return False
            if suppress is not None:
                exists = session.scalars(
                    select(Suppression).where(
                        col(Suppression.phone) == row.from_phone,
                        col(Suppression.number) == row.to_number,
                    )
                ).first()
                if exists is None:
                    session.add(
                        Suppression(
                            phone=row.from_phone,
                            number=row.to_number,
                            keyword=suppress,
                            created_at=now,
                        )
                    )
            if unsuppress:
                for found in session.scalars(
                    select(Suppression).where(col(Suppression.phone) == row.from_phone)
                ):
                    session.delete(found)
            for mail in mails:
                self._add_mail(session, mail, now, deadline)
            _insert_queued_sms(
                session.connection(),
                [
                    _queued_sms(
                        sms,
                        from_number=sms.from_number,
                        sender="",
                        email_id=None,
                        now=now,
                        deadline=deadline,
                    )
                    for sms in replies
                ],
                detail="keyword reply",
            )
            session.commit()
            return True

    # --- delivery reports -------------------------------------------------
    def apply_status(
        self,
        *,
        carrier: str,
        carrier_id: str,
        status: str,
        error_code: str | None,
        error_text: str | None,
        now: datetime,
    ) -> bool:
        """Apply a carrier's delivery report; False when the id is unknown.

        A report never moves an SMS backwards (callbacks arrive out of order
        and are retried); a final failure marks the SMS for a bounce.
        """
        with Session(self.engine) as session:
            row = session.scalars(
                select(OutboundSms).where(
                    col(OutboundSms.carrier) == carrier, col(OutboundSms.carrier_id) == carrier_id
                )
            ).first()
            if row is None:
                return False
            rank = SmsStatus.RANK
            current = row.status
            moves = rank.get(status, -1) > rank.get(current, 0) or (
                status != current and current == SmsStatus.SENT and status in SmsStatus.FINAL
            )
            if not moves:
                return True
            row.status = status
            row.updated_at = now
            if status in SmsStatus.BOUNCING:
                row.error_code = error_code
                row.error = error_text or f"carrier reported {status}"
                if row.bounce is None:
                    row.bounce = "pending"
            session.add(row)
            detail = f"{carrier} report" + (
                f": {error_code} {error_text or ''}" if error_code else ""
            )
            session.add(SmsEvent(sms_id=_id(row.id), status=status, at=now, detail=detail.strip()))
            session.commit()
            return True

    # --- bounces ----------------------------------------------------------
    def pending_bounces(self, limit: int) -> list[tuple[OutboundSms, InboundEmail | None]]:
        with Session(self.reads) as session:
            rows = session.execute(
                select(OutboundSms, InboundEmail)
                .join(InboundEmail, col(OutboundSms.email_id) == col(InboundEmail.id), isouter=True)
                .where(col(OutboundSms.bounce) == "pending")
                .order_by(col(OutboundSms.id))
                .limit(limit)
            ).all()
            for sms, email in rows:
                session.expunge(sms)
                if email is not None:
                    session.expunge(email)
            return [(sms, email) for sms, email in rows]

    def queue_bounce(
        self, sms_id: int, mail: NewMail | None, now: datetime, deadline: datetime
    ) -> bool:
        """Queue the DSN for an SMS and mark it bounced, atomically (None:
        nobody to tell, e.g. a keyword reply or a bounce's own SMS)."""
        with Session(self.engine) as session:
            result = session.execute(
                update(OutboundSms)
                .where(col(OutboundSms.id) == sms_id, col(OutboundSms.bounce) == "pending")
                .values(bounce="queued" if mail is not None else "none")
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return False
            if mail is not None:
                self._add_mail(session, mail, now, deadline)
            session.commit()
            return True

    # --- outbound mail queue ---------------------------------------------
    def _add_mail(self, session: Session, mail: NewMail, now: datetime, deadline: datetime) -> None:
        session.add(
            OutboundMail(
                kind=mail.kind,
                message_id=mail.message_id,
                envelope_from=mail.envelope_from,
                recipients="\n".join(mail.recipients),
                message=mail.message,
                status=MailStatus.QUEUED,
                next_attempt_at=now,
                deadline_at=deadline,
                created_at=now,
                updated_at=now,
            )
        )

    def claim_mail(self, now: datetime, limit: int, lease_until: datetime) -> list[OutboundMail]:
        """Take due queued mail under a lease (see :func:`_claim_leased`).

        Every worker polls this about once a second, and nearly always
        finds nothing: it looks with a read first, so that an empty poll
        takes no write turn (see :func:`mailsms.store.db.reader`)."""
        with self.reads.connect() as connection:
            if not _any_due(connection, _MAIL_LEASE, now):
                return []
        with self.engine.begin() as connection:
            claimed, _ = _claim_leased(connection, _MAIL_LEASE, now, limit, lease_until)
        return claimed

    def record_mail(
        self,
        mail_id: int,
        *,
        status: str,
        now: datetime,
        error: str | None = None,
        code: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        values: dict[str, object] = {
            "status": status,
            "updated_at": now,
            "error": error,
            "error_code": code,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with Session(self.engine) as session:
            session.execute(
                update(OutboundMail).where(col(OutboundMail.id) == mail_id).values(**values)
            )
            session.commit()

    def list_mail(self, status: str | None = None, limit: int = 100) -> list[OutboundMail]:
        with Session(self.reads) as session:
            query = select(OutboundMail).order_by(col(OutboundMail.id).desc())
            if status is not None:
                query = query.where(col(OutboundMail.status) == status)
            return list(session.scalars(query.limit(limit)))


# --- tables -------------------------------------------------------------------
_EMAILS = InboundEmail.__table__  # type: ignore[attr-defined]
_SMS = OutboundSms.__table__  # type: ignore[attr-defined]
_EVENTS = SmsEvent.__table__  # type: ignore[attr-defined]
_PAIRS = Conversation.__table__  # type: ignore[attr-defined]
_MAIL = OutboundMail.__table__  # type: ignore[attr-defined]
_SUPPRESSIONS = Suppression.__table__  # type: ignore[attr-defined]


# --- leases -------------------------------------------------------------------
_Leased = TypeVar("_Leased", OutboundSms, OutboundMail)
T = TypeVar("T")

_SET_BY_CLAIM = ("status", "next_attempt_at", "updated_at")
"""Columns the claim's UPDATE sets to values it knows: not read back (a
datetime read back costs more than the rest of the row)."""


@dataclass(frozen=True, slots=True)
class _Lease(Generic[_Leased]):
    """A lease claim on one queue table, its statements prepared once (see
    mailsms.store.prepared)."""

    model: type[_Leased]
    due: Prepared
    due_skip_locked: Prepared
    take: Prepared
    returned: tuple[str, ...]
    """The columns ``take`` returns, in order."""

    @classmethod
    def build(cls, model: type[_Leased], flag: ColumnElement[bool]) -> _Lease[_Leased]:
        """``flag``: a mark read with each due row (the SMS queue's opt-out
        check), so that it costs no statement of its own."""
        table: Table = model.__table__  # type: ignore[attr-defined]
        queued, sending = SmsStatus.QUEUED, SmsStatus.SENDING
        due = (
            select(table.c.id, flag.label("flag"))
            .where(
                table.c.status == bindparam("l_status"),
                table.c.next_attempt_at <= bindparam("l_now"),
            )
            .order_by(table.c.next_attempt_at)
            .limit(bindparam("l_limit", type_=Integer))
        )
        returned = [c for c in table.c if c.name not in _SET_BY_CLAIM]

        def take(n: int) -> Executable:
            return (
                update(table)
                .where(
                    table.c.id.in_(listed("l_ids", n)),
                    # coalesce() keeps SQLite's planner off the (status,
                    # next_attempt_at) index for this guard: it would walk every
                    # due row of the queue instead of looking up the claimed ids.
                    func.coalesce(table.c.status, "").in_(
                        [bindparam("l_queued", queued), bindparam("l_sending", sending)]
                    ),
                    table.c.next_attempt_at <= bindparam("l_now"),
                )
                .values(
                    status=sending,
                    next_attempt_at=bindparam("l_until"),
                    attempts=table.c.attempts + 1,
                    updated_at=bindparam("l_now"),
                )
                .returning(*returned)
            )

        return cls(
            model,
            Prepared(lambda _: due),
            Prepared(lambda _: due.with_for_update(skip_locked=True)),
            Prepared(take, listed="l_ids"),
            tuple(c.name for c in returned),
        )

    def due_for(self, dialect: Dialect) -> Prepared:
        """The due-rows query this database runs: PostgreSQL skips rows
        another instance has locked."""
        return self.due_skip_locked if dialect.name == "postgresql" else self.due


def _claim_leased(
    connection: Connection,
    lease: _Lease[_Leased],
    now: datetime,
    limit: int,
    lease_until: datetime,
) -> tuple[list[_Leased], set[int]]:
    """Claim up to ``limit`` due rows of a queue table (SMS or mail) under a
    lease, inside the caller's transaction: the rows as they are after the
    claim, in id order, and the ids of those the lease's ``flag`` marked.

    A row is due when it is ``queued`` and its next attempt has come, or when
    it is ``sending`` but its lease ran out (its worker died).  Each status
    is one range scan of the ``(status, next_attempt_at)`` index, so the cost
    does not grow with the depth of the queue.  The UPDATE is guarded by the
    row's old state (and PostgreSQL skips rows another instance has locked),
    so two instances never both take a row; only the rows this UPDATE took
    are returned (RETURNING).  SMS and mail share the status names.

    The rows are instances of the lease's model made the way the ORM's
    loader makes them (a bare instance, the column values put in its
    ``__dict__``), without a Session to load them into and expunge them
    from again: they belong to no Session, and are for reading.
    """
    due = lease.due_for(connection.dialect)
    ids: list[int] = []
    flagged: set[int] = set()
    for status in (SmsStatus.QUEUED, SmsStatus.SENDING):
        if len(ids) >= limit:
            break
        params = {"l_status": status, "l_now": now, "l_limit": limit - len(ids)}
        for row_id, flag in due.rows(connection, params):
            ids.append(row_id)
            if flag:
                flagged.add(row_id)
    if not ids:
        return [], set()
    taken = lease.take.rows(connection, {"l_ids": ids, "l_now": now, "l_until": lease_until})
    # What the UPDATE set, as the database gives it back (in UTC).
    known = {
        "status": SmsStatus.SENDING,
        "next_attempt_at": lease_until.astimezone(UTC),
        "updated_at": now.astimezone(UTC),
    }
    mapper = sa_inspect(lease.model)
    if not mapper.configured:
        configure_mappers()  # as the ORM's first query would
    new_instance = mapper.class_manager.new_instance
    rows: list[_Leased] = []
    # RETURNING gives no order; the callers want the claim in id order.
    for row in sorted(taken, key=_first):
        instance = new_instance()
        values = instance.__dict__
        values.update(zip(lease.returned, row, strict=True))
        values.update(known)
        rows.append(instance)
    return rows, flagged.intersection(_id(row.id) for row in rows)


def _any_due(connection: Connection, lease: _Lease[_Leased], now: datetime) -> bool:
    """Whether :func:`_claim_leased` would find a row now: a look that
    locks nothing (PostgreSQL's claim skips locked rows; this does not
    need to)."""
    return any(
        lease.due.rows(connection, {"l_status": status, "l_now": now, "l_limit": 1})
        for status in (SmsStatus.QUEUED, SmsStatus.SENDING)
    )


def _first(row: tuple[Any, ...]) -> int:
    return int(row[0])


_SMS_LEASE = _Lease.build(
    OutboundSms,
    # An SMS from an email to a phone that has opted out (see claim_due).
    and_(
        _SMS.c.email_id.is_not(None),
        select(_SUPPRESSIONS.c.id).where(_SUPPRESSIONS.c.phone == _SMS.c.to_number).exists(),
    ),
)
_MAIL_LEASE = _Lease.build(OutboundMail, false())


# --- dispatching --------------------------------------------------------------
_REFUSE_OPTED_OUT = Prepared(
    lambda n: (
        update(_SMS)
        .where(_SMS.c.id.in_(listed("ids", n)))
        .values(
            status=SmsStatus.FAILED,
            error=OPTED_OUT_ERROR,
            error_code=OPTED_OUT_CODE,
            bounce="pending",
            updated_at=bindparam("now"),
        )
    ),
    listed="ids",
)
_INSERT_CLAIM_EVENTS = Prepared(
    lambda n: insert(_EVENTS).from_select(
        ["sms_id", "status", "at", "detail"],
        select(
            _SMS.c.id,
            bindparam("e_status", type_=_EVENTS.c.status.type),
            bindparam("e_at", type_=_EVENTS.c.at.type),
            bindparam("e_detail", type_=_EVENTS.c.detail.type),
        )
        .where(_SMS.c.id.in_(listed("ids", n)))
        .order_by(_SMS.c.id),
    ),
    listed="ids",
)
_EVENT_COLUMNS = ("sms_id", "status", "at", "detail")
_INSERT_EVENTS = Prepared(lambda n: insert(_EVENTS).values(row_values(_EVENT_COLUMNS, n)))


@functools.cache
def _outcome_update(shape: tuple[str, ...]) -> Prepared:
    """The UPDATE of outcomes with these ``b_``-prefixed parameters, made
    once per shape (there are a handful: sent, retry, final, bouncing)."""
    return Prepared(
        lambda _: (
            update(_SMS)
            .where(_SMS.c.id == bindparam("b_id"))
            .values({name[2:]: bindparam(name) for name in shape if name != "b_id"})
        )
    )


# --- group-commit insert ------------------------------------------------------


@dataclass(slots=True)
class _Pair:
    """A conversation as the batch sees it (loaded or allocated in it)."""

    number: str
    sender: str
    email_id: int | None
    updated_at: datetime
    row_id: int | None
    dirty: bool = False


def _duplicate(connection: Connection, email_id: int) -> EnqueueOutcome:
    uids = connection.scalars(_UIDS_OF_EMAIL, {"email_id": email_id})
    return EnqueueOutcome(email_id, tuple(uids), duplicate=True)


def sms_uid(now: datetime) -> str:
    """A new SMS's public id: a UUIDv7 (RFC 9562, section 5.7) as 32 hex
    digits, the milliseconds of ``now`` and then 74 random bits.

    Time-ordered, so a new row's uid lands at the right edge of the uid
    index.  A random uid (UUIDv4) put every SMS of a group commit on a page
    of its own, each written whole to SQLite's WAL, and once the index
    outgrew the page cache each insert read a page back first; the table
    keeps every SMS, so that only got worse with age.
    """
    millis = int(now.timestamp() * 1000) & (1 << 48) - 1
    rand = secrets.randbits(74)
    value = (
        millis << 80
        | 0x7 << 76  # version
        | (rand >> 62) << 64  # rand_a, 12 bits
        | 0b10 << 62  # variant
        | rand & (1 << 62) - 1  # rand_b, 62 bits
    )
    return f"{value:032x}"


def _queued_sms(
    sms: NewSms,
    *,
    from_number: str | None,
    sender: str,
    email_id: int | None,
    now: datetime,
    deadline: datetime,
) -> dict[str, object]:
    """The column values of a new queued SMS row (uid drawn here)."""
    return {
        "uid": sms_uid(now),
        "email_id": email_id,
        "sender": sender,
        "to_number": sms.to_number,
        "from_number": from_number,
        "text": sms.text,
        "encoding": sms.encoding,
        "segments": sms.segments,
        "status": SmsStatus.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "deadline_at": deadline,
        "created_at": now,
        "updated_at": now,
    }


def _insert_queued_sms(
    connection: Connection, rows: Sequence[dict[str, object]], detail: str | None = None
) -> None:
    """Insert SMS rows and their first ("queued") events: one executemany
    and one INSERT ... SELECT (per 512 rows, see mailsms.store.prepared),
    whatever the number of rows."""
    if not rows:
        return
    _INSERT_SMS.insert_many(connection, rows)
    # The events are made from the rows just stored, found by their unique
    # uid: no ids to read back (RETURNING in parameter order would cost
    # SQLite one INSERT per row), and no parameters or time conversions
    # per event.  In id order, as one INSERT per SMS would number them.
    uids = [values["uid"] for values in rows]
    _INSERT_QUEUED_EVENTS.rows(connection, {"uids": uids, "detail": detail})


def _email_ids(
    connection: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Stored emails by their (author, Message-ID) key: per author, one IN
    list over the unique (author, Message-ID) index.  A batch
    holds one author or a few (a relay's users), so this is a statement or
    a few per round; a separate Message-ID index would cost every email one
    more index insert, and the row-value form ``(author, id) IN (VALUES
    ...)`` makes SQLite scan the whole table."""
    by_author: dict[str, list[str]] = {}
    for author, mid in sorted(set(keys)):
        by_author.setdefault(author, []).append(mid)
    ids: dict[tuple[str, str], int] = {}
    for author, mids in by_author.items():
        found = _EMAILS_BY_KEY.rows(connection, {"author": author, "mids": mids})
        ids.update({(author, m): i for m, i in found})
    return ids


# The statements of the group commit, each compiled once per dialect and
# size and run on the driver (mailsms.store.prepared): through
# Connection.execute, SQLAlchemy's per-execution work was half of a
# round's CPU, spent holding SQLite's write lock.
_EMAIL_COLUMNS = (
    "message_id",
    "mail_from",
    "from_address",
    "subject",
    "received_at",
    "peer",
    "size",
    "recipients",
    "disposition",
    "reason",
    "attachments",
    "thread_references",
    "headers",
    "auth_results",
)
_SMS_COLUMNS = (
    "uid",
    "email_id",
    "sender",
    "to_number",
    "from_number",
    "text",
    "encoding",
    "segments",
    "status",
    "attempts",
    "next_attempt_at",
    "deadline_at",
    "created_at",
    "updated_at",
)
_PAIR_COLUMNS = ("number", "phone", "sender", "email_id", "updated_at")
_EMAILS_BY_KEY = Prepared(
    lambda n: select(_EMAILS.c.message_id, _EMAILS.c.id).where(
        _EMAILS.c.from_address == bindparam("author"),
        _EMAILS.c.message_id.in_(listed("mids", n)),
    ),
    listed="mids",
)
_INSERT_EMAILS = Prepared(
    lambda n: (
        insert(_EMAILS)
        .values(row_values(_EMAIL_COLUMNS, n))
        .returning(_EMAILS.c.from_address, _EMAILS.c.message_id, _EMAILS.c.id)
    )
)
_INSERT_SMS = Prepared(lambda n: insert(_SMS).values(row_values(_SMS_COLUMNS, n)))
_INSERT_QUEUED_EVENTS = Prepared(
    lambda n: insert(_EVENTS).from_select(
        ["sms_id", "status", "at", "detail"],
        select(
            _SMS.c.id,
            literal(SmsStatus.QUEUED, _EVENTS.c.status.type),
            _SMS.c.created_at,
            bindparam("detail", type_=_EVENTS.c.detail.type),
        )
        .where(_SMS.c.uid.in_(listed("uids", n)))
        .order_by(_SMS.c.id),
    ),
    listed="uids",
)
_PAIRS_OF_PHONES = Prepared(
    lambda n: select(
        _PAIRS.c.phone,
        _PAIRS.c.number,
        _PAIRS.c.sender,
        _PAIRS.c.email_id,
        _PAIRS.c.updated_at,
        _PAIRS.c.id,
    ).where(_PAIRS.c.phone.in_(listed("phones", n))),
    listed="phones",
)
_UPDATE_PAIRS = Prepared(
    lambda _: (
        update(_PAIRS)
        .where(_PAIRS.c.id == bindparam("b_id"))
        .values(
            sender=bindparam("b_sender"),
            email_id=bindparam("b_email"),
            updated_at=bindparam("b_at"),
        )
    )
)
_INSERT_PAIRS = Prepared(lambda n: insert(_PAIRS).values(row_values(_PAIR_COLUMNS, n)))
_UIDS_OF_EMAIL = select(_SMS.c.uid).where(_SMS.c.email_id == bindparam("email_id"))


def _prepare_statements(dialect: Dialect) -> None:
    """Compile the group commit's statements in the sizes a busy gateway
    uses (IN lists and multi-row INSERT pieces of 1 to 64): under 0.1 s of
    CPU once per process, instead of compiles of 1-27 ms each inside the
    write lock of the first rounds that meet a new size."""
    sizes = [1 << i for i in range(7)]
    for listed_or_pieces in (
        _EMAILS_BY_KEY,
        _INSERT_EMAILS,
        _INSERT_QUEUED_EVENTS,
        _PAIRS_OF_PHONES,
        _SMS_LEASE.take,
        _INSERT_CLAIM_EVENTS,
    ):
        listed_or_pieces.warm(dialect, sizes)
    for single in (_SMS_LEASE.due_for(dialect), _UPDATE_PAIRS):
        single.warm(dialect, [0])
    for one_row in (_INSERT_SMS, _INSERT_PAIRS, _INSERT_EVENTS):
        one_row.warm(dialect, [1], suffix="_0")


def _outcome_or_error(fn: Callable[..., T], *args: Any) -> T | Exception:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def _claim_now(request: ClaimRequest, claim: Callable[[datetime, int, datetime], Claim]) -> Claim:
    """``claim(now, limit, lease_until)`` for ``request``, at the time the
    claim runs (read from the request's clock)."""
    now = request.clock()
    return claim(now, request.limit, now + request.lease)


def _claim_due(connection: Connection, now: datetime, limit: int, lease_until: datetime) -> Claim:
    """:meth:`Store.claim_due` inside the caller's transaction."""
    claimed, opted_out = _claim_leased(connection, _SMS_LEASE, now, limit, lease_until)
    sending = [row for row in claimed if row.id not in opted_out]
    refused = sorted(opted_out)
    if refused:
        _REFUSE_OPTED_OUT.rows(connection, {"ids": refused, "now": now})
    # One INSERT ... SELECT per kind of event, in id order like the
    # rows: no parameters or time conversions per event.
    if sending:
        _INSERT_CLAIM_EVENTS.rows(
            connection,
            {
                "ids": [_id(row.id) for row in sending],
                "e_status": SmsStatus.SENDING,
                "e_at": now,
                "e_detail": None,
            },
        )
    if refused:
        _INSERT_CLAIM_EVENTS.rows(
            connection,
            {
                "ids": refused,
                "e_status": SmsStatus.FAILED,
                "e_at": now,
                "e_detail": OPTED_OUT_ERROR,
            },
        )
    return Claim(sending, len(refused))


def _record_outcomes(connection: Connection, outcomes: Sequence[SmsOutcome]) -> None:
    """:meth:`Store.record_outcomes` inside the caller's transaction."""
    if not outcomes:
        return
    # Outcomes of the same shape (usually all "sent") share one
    # executemany: an UPDATE statement per SMS costs more than the send.
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    events: list[dict[str, object]] = []
    for outcome in outcomes:
        values: dict[str, object] = {
            "b_id": outcome.sms_id,
            "b_status": outcome.status,
            "b_updated_at": outcome.now,
        }
        if outcome.carrier_id is not None:
            values["b_carrier"] = outcome.carrier
            values["b_carrier_id"] = outcome.carrier_id
            values["b_error"] = None
            values["b_error_code"] = None
        if outcome.error is not None:
            values["b_error"] = outcome.error
            values["b_error_code"] = outcome.error_code
        if outcome.next_attempt_at is not None:
            values["b_next_attempt_at"] = outcome.next_attempt_at
        if outcome.status in SmsStatus.BOUNCING:
            values["b_bounce"] = "pending"
        shape = tuple(sorted(values))
        shapes.setdefault(shape, []).append(values)
        events.append(
            {
                "sms_id": outcome.sms_id,
                "status": outcome.status,
                "at": outcome.now,
                "detail": outcome.detail,
            }
        )
    # A Connection, not a Session, and statements built once per shape
    # (see _outcome_update): as in the group commit.
    for shape, rows in shapes.items():
        _outcome_update(shape).many(connection, rows)
    _INSERT_EVENTS.insert_many(connection, events)


def _insert_batch(connection: Connection, batch: Sequence[AcceptedEmail]) -> list[EnqueueOutcome]:
    """Insert emails, allocate from-numbers, record conversations, insert
    SMS and their first events, with a statement or a few each whatever
    the size of the batch (one per author for the Message-ID lookup, per
    512 values of an IN list, per power-of-two piece of a multi-row INSERT;
    see mailsms.store.prepared): look the Message-IDs up,
    insert the emails, read the conversations, update and/or insert them,
    insert the SMS, insert their events.  An abuse-limit charge adds its
    own statements (mailsms.store.abuse)."""
    # 1. Message-IDs already stored, or repeated inside this batch.
    stored = _email_ids(connection, list({(item.from_address, item.message_id) for item in batch}))
    fresh: list[int] = []
    first_of: dict[tuple[str, str], int] = {}
    refused: dict[int, Charge] = {}
    # The abuse counters' queries take a Session: one on this connection (it
    # joins the transaction), made only when the batch has charges to count.
    counting: Session | None = None
    for index, item in enumerate(batch):
        key = (item.from_address, item.message_id)
        if key in stored or key in first_of:
            continue  # a duplicate is never charged
        if item.charges:
            # Count-then-check in this same transaction: the counters and
            # the message commit together, or neither does.
            if counting is None:
                counting = Session(connection)
            over = charge_within(counting, item.charges)
            if over is not None:
                refused[index] = over
                continue
        first_of[key] = index
        fresh.append(index)
    if counting is not None:
        forget_old_windows(counting, [c for i in fresh for c in batch[i].charges])
        counting.close()  # the transaction stays open: it is the caller's

    # 2. The emails, their ids returned with their (author, Message-ID)
    # key, unique within ``fresh`` (see _insert_queued_sms).
    email_ids: dict[int, int] = {}
    if fresh:
        inserted = _INSERT_EMAILS.insert_rows(connection, [_email_values(batch[i]) for i in fresh])
        by_key = {(a, m): i for a, m, i in inserted}
        email_ids = {i: by_key[batch[i].from_address, batch[i].message_id] for i in fresh}

    # 3. From-numbers: one read of the conversations of every phone in the
    # batch, then allocation in order, so later emails see earlier ones.
    phones = {sms.to_number for i in fresh for sms in batch[i].sms if sms.from_number is None}
    pairs: dict[str, dict[str, _Pair]] = {phone: {} for phone in phones}
    found = _PAIRS_OF_PHONES.rows(connection, {"phones": sorted(phones)}) if phones else []
    for phone, number, sender, email_id, updated_at, row_id in found:
        pairs[phone][number] = _Pair(number, sender, email_id, updated_at, row_id)
    sms_values: list[dict[str, object]] = []
    uids_of: dict[int, list[str]] = {}
    for index in fresh:
        item, email_id = batch[index], email_ids[index]
        chosen: dict[str, str | None] = {}
        for sms in item.sms:
            number = sms.from_number
            if number is None:
                if sms.to_number not in chosen:
                    chosen[sms.to_number] = _allocate(item, sms.to_number, email_id, pairs)
                number = chosen[sms.to_number]
            values = _queued_sms(
                sms,
                from_number=number,
                sender=item.from_address,
                email_id=email_id,
                now=item.received_at,
                deadline=item.deadline_at,
            )
            uids_of.setdefault(index, []).append(str(values["uid"]))
            sms_values.append(values)

    # 4. Conversations changed by this batch.
    changed = [pair_of for by_number in pairs.values() for pair_of in by_number.values()]
    updates = [p for p in changed if p.dirty and p.row_id is not None]
    if updates:
        _UPDATE_PAIRS.many(
            connection,
            [
                {
                    "b_id": p.row_id,
                    "b_sender": p.sender,
                    "b_email": p.email_id,
                    "b_at": p.updated_at,
                }
                for p in updates
            ],
        )
    inserts = [
        {
            "number": p.number,
            "phone": phone,
            "sender": p.sender,
            "email_id": p.email_id,
            "updated_at": p.updated_at,
        }
        for phone, by_number in pairs.items()
        for p in by_number.values()
        if p.dirty and p.row_id is None
    ]
    if inserts:
        _INSERT_PAIRS.insert_many(connection, inserts)

    # 5. The SMS and their "queued" events.
    _insert_queued_sms(connection, sms_values)

    outcomes: list[EnqueueOutcome] = []
    for index, item in enumerate(batch):
        key = (item.from_address, item.message_id)
        if index in refused:
            outcomes.append(EnqueueOutcome(0, (), duplicate=False, refused=refused[index]))
        elif index in email_ids:
            outcomes.append(
                EnqueueOutcome(email_ids[index], tuple(uids_of.get(index, ())), duplicate=False)
            )
        elif key in stored:
            outcomes.append(_duplicate(connection, stored[key]))
        else:  # the same Message-ID twice in one batch: the first one counts
            first = first_of[key]
            outcomes.append(
                EnqueueOutcome(email_ids[first], tuple(uids_of.get(first, ())), duplicate=True)
            )
    return outcomes


def _email_values(item: AcceptedEmail) -> dict[str, object]:
    return {
        "message_id": item.message_id,
        "mail_from": item.mail_from,
        "from_address": item.from_address,
        "subject": item.subject,
        "received_at": item.received_at,
        "peer": item.peer,
        "size": item.size,
        "recipients": len({sms.to_number for sms in item.sms}),
        "disposition": item.disposition,
        "reason": item.reason,
        "attachments": item.attachments,
        "thread_references": item.thread_references,
        "headers": item.headers,
        "auth_results": item.auth_results,
    }


def _allocate(
    item: AcceptedEmail, phone: str, email_id: int, pairs: dict[str, dict[str, _Pair]]
) -> str | None:
    """Pick the from-number for (sender, phone) (mailsms.routing) and mark the
    conversation as this sender's, in the batch's view of the pairs."""
    known = pairs.setdefault(phone, {})
    number = allocate_number(
        sender=item.from_address,
        phone=phone,
        own=item.own_number,
        pool=item.pool,
        default_from=item.default_from,
        conversations=[PairUse(p.number, p.sender, p.updated_at) for p in known.values()],
    )
    if number is None:
        return None
    pair = known.get(number)
    if pair is None:
        pair = known[number] = _Pair(number, item.from_address, email_id, item.received_at, None)
    pair.sender, pair.email_id, pair.updated_at, pair.dirty = (
        item.from_address,
        email_id,
        item.received_at,
        True,
    )
    return number


def _id(value: int | None) -> int:
    """A primary key after flush; None would be a bug in the store."""
    if value is None:
        raise StoreError("row has no id after flush")
    return value
