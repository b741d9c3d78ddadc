"""Tables (SQLModel).  The only schema; Alembic migrations follow it.

Timestamps are aware datetimes in UTC (sqlmodel stores them as such and
refuses naive ones), so comparisons in SQL mean the same on every database.

Status model, one for all carriers (ARCHITECTURE invariant 4):
``queued -> sending -> sent -> delivered | undelivered | failed | expired``.
``sending`` is a lease: the row's ``next_attempt_at`` is the lease's end, so
a dispatcher that dies mid-send leaves a row that another claims later.
"""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class SmsStatus:
    """Status names (strings in the database, readable in SQL and JSON)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"

    ALL = (QUEUED, SENDING, SENT, DELIVERED, UNDELIVERED, FAILED, EXPIRED)
    FINAL = frozenset({DELIVERED, UNDELIVERED, FAILED, EXPIRED})
    BOUNCING = frozenset({UNDELIVERED, FAILED, EXPIRED})
    """Final states the sender is told about with a DSN."""

    # How far along a status is; a late or repeated callback never moves an
    # SMS backwards (carriers deliver callbacks out of order).
    RANK = MappingProxyType(
        {QUEUED: 0, SENDING: 1, SENT: 2, DELIVERED: 3, UNDELIVERED: 3, FAILED: 3, EXPIRED: 3}
    )


class EmailDisposition:
    """What became of an accepted email."""

    QUEUED = "queued"  # turned into one SMS per recipient
    IGNORED = "ignored"  # kept, never texted (bounce, auto-reply); reason says why


class Sender(SQLModel, table=True):
    """A registered sender: an exact address or a whole ``@domain``."""

    __tablename__ = "senders"

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=320, unique=True)
    created_at: datetime
    policy: str | None = Field(default=None, max_length=16)
    """Weakest proof accepted (``dkim``, ``smtp-auth``, ``trusted-relay``);
    None follows MAILSMS_SENDER_POLICY (see mailsms.proof)."""
    password_hash: str | None = Field(default=None, max_length=200)
    """scrypt hash for SMTP AUTH (mailsms.trust.passwords); never shown."""


class VirtualNumber(SQLModel, table=True):
    """A number we send from, optionally assigned to one sender entry."""

    __tablename__ = "numbers"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20, unique=True)
    sender_id: int | None = Field(
        default=None, foreign_key="senders.id", index=True, ondelete="SET NULL"
    )
    created_at: datetime


class InboundEmail(SQLModel, table=True):
    """An email the SMTP listener accepted (metadata only, not the body)."""

    __tablename__ = "emails"
    __table_args__ = (
        # The same Message-ID from the same author is one message: a client
        # that retries after a lost 250 must not text twice.  Its index is
        # also how the group commit looks a batch's Message-IDs up (per
        # author, one IN list).
        UniqueConstraint("from_address", "message_id", name="uq_emails_author_msgid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=998)
    mail_from: str = Field(max_length=320)
    from_address: str = Field(max_length=320)
    subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    received_at: datetime
    peer: str | None = Field(default=None, max_length=100)
    size: int = 0
    recipients: int = 0
    disposition: str = Field(default=EmailDisposition.QUEUED, max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attachments: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    thread_references: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The email's own References header: the thread it belongs to."""
    headers: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The original header block (capped), returned in bounces (RFC 3464 part 3)."""
    auth_results: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """How the sender was proven: our RFC 8601 Authentication-Results value."""


class OutboundSms(SQLModel, table=True):
    """One SMS to one phone, and its delivery state."""

    __tablename__ = "sms"
    __table_args__ = (
        # The dispatcher's query: due rows of a status, oldest first.
        Index("ix_sms_due", "status", "next_attempt_at"),
        # Partial: a new SMS has no carrier id and no bounce yet, and the
        # lookups (a delivery report's id, the pending bounces) compare the
        # column, which implies IS NOT NULL.  As full indexes, every new SMS
        # put a NULL entry in each, one more page apiece in every group
        # commit's WAL write, inside the write lock (migration 0006, which
        # also dropped an index on (from_number, to_number) nothing read).
        Index(
            "ix_sms_carrier_id",
            "carrier",
            "carrier_id",
            sqlite_where=text("carrier_id IS NOT NULL"),
            postgresql_where=text("carrier_id IS NOT NULL"),
        ),
        Index("ix_sms_email", "email_id"),
        Index(
            "ix_sms_bounce",
            "bounce",
            sqlite_where=text("bounce IS NOT NULL"),
            postgresql_where=text("bounce IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True)
    """Our public id; the carrier's idempotency key."""
    email_id: int | None = Field(default=None, foreign_key="emails.id")
    sender: str = Field(max_length=320)
    """The author (From address) who asked for this SMS."""
    to_number: str = Field(max_length=20)
    from_number: str | None = Field(default=None, max_length=20)
    text: str = Field(sa_column=Column(Text, nullable=False))
    encoding: str = Field(max_length=8)
    segments: int
    status: str = Field(default=SmsStatus.QUEUED, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime
    deadline_at: datetime
    carrier: str | None = Field(default=None, max_length=32)
    carrier_id: str | None = Field(default=None, max_length=64)
    error_code: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    bounce: str | None = Field(default=None, max_length=8)
    """``pending`` once the SMS ended failed/undelivered/expired and the
    sender must get a DSN; ``queued`` once the DSN is in the mail queue."""
    created_at: datetime
    updated_at: datetime


class SmsEvent(SQLModel, table=True):
    """Timestamped status history of an SMS."""

    __tablename__ = "sms_events"

    id: int | None = Field(default=None, primary_key=True)
    sms_id: int = Field(foreign_key="sms.id", index=True)
    status: str = Field(max_length=16)
    at: datetime
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Conversation(SQLModel, table=True):
    """Who an SMS from ``phone`` to our ``number`` is a reply to.

    One row per (number, phone): a pair belongs to exactly one sender at a
    time, so a reply can always be routed to exactly one person.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("number", "phone", name="uq_conversations_pair"),
        Index("ix_conversations_phone", "phone"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20)
    phone: str = Field(max_length=20)
    sender: str = Field(max_length=320)
    email_id: int | None = Field(default=None, foreign_key="emails.id")
    """The latest email of this sender to this phone: replies thread under it."""
    updated_at: datetime


class InboundStatus:
    PENDING = "pending"  # committed, not yet routed
    ROUTED = "routed"  # a reply email is queued
    KEYWORD = "keyword"  # STOP/START/HELP handled
    UNROUTED = "unrouted"  # nobody to send it to; kept, reason says why


class InboundSms(SQLModel, table=True):
    """An SMS a phone sent us, as the carrier's webhook reported it."""

    __tablename__ = "inbound_sms"
    __table_args__ = (
        # Carriers retry webhooks: one message, one row.
        UniqueConstraint("carrier", "carrier_id", name="uq_inbound_carrier_id"),
        Index("ix_inbound_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    carrier: str = Field(max_length=32)
    carrier_id: str = Field(max_length=64)
    from_phone: str = Field(max_length=20)
    to_number: str = Field(max_length=20)
    text: str = Field(sa_column=Column(Text, nullable=False))
    media_urls: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Newline-separated."""
    received_at: datetime
    status: str = Field(default=InboundStatus.PENDING, max_length=16)
    routed_to: str | None = Field(default=None, max_length=320)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    processed_at: datetime | None = None


class Suppression(SQLModel, table=True):
    """A phone that opted out (STOP) of SMS from one of our numbers."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("phone", "number", name="uq_suppressions_pair"),
        Index("ix_suppressions_phone", "phone"),
    )

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(max_length=20)
    number: str = Field(max_length=20)
    keyword: str = Field(max_length=16)
    created_at: datetime


class MailStatus:
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"

    ALL = (QUEUED, SENDING, SENT, FAILED)


class OutboundMail(SQLModel, table=True):
    """An email we send (a reply, a bounce, a notice), queued durably and
    retried like SMS; DKIM signing happens at delivery."""

    __tablename__ = "mail_queue"
    __table_args__ = (Index("ix_mail_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    """``reply``, ``dsn`` or ``notice``."""
    message_id: str = Field(max_length=998)
    envelope_from: str = Field(max_length=320)
    recipients: str = Field(sa_column=Column(Text, nullable=False))
    """Newline-separated."""
    message: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=MailStatus.QUEUED, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime
    deadline_at: datetime
    error_code: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime
    updated_at: datetime


class AbuseCounter(SQLModel, table=True):
    """One abuse-limit counter window (see mailsms.limits): a row per
    (scope, key, window start), incremented atomically by the store."""

    __tablename__ = "abuse_counters"
    __table_args__ = (
        UniqueConstraint("scope", "key", "window_start", name="uq_abuse_counters_window"),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=16)
    key: str = Field(max_length=320)
    window_start: datetime
    count: int = 0
