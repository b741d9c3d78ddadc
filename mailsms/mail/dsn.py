"""Compose the bounce (DSN) sent when an SMS ends failed or undelivered.

Pure functions, no I/O.  The message is an RFC 3464 delivery status
notification: ``multipart/report; report-type=delivery-status`` (RFC 6522)
with a human-readable part, a ``message/delivery-status`` part and, when
the original headers are known, a ``text/rfc822-headers`` part.  It carries
``Auto-Submitted: auto-replied`` (RFC 3834 §5) so that well-behaved
responders do not answer it.

A DSN must be sent with the null reverse-path ``MAIL FROM:<>`` (RFC 5321
§4.5.5, RFC 3464 §2): pass ``envelope_from=""`` to the transport.  For the
same reason a DSN is never generated for a message that itself arrived with
a null reverse-path (``compose_dsn`` refuses an empty recipient).

Status codes (RFC 3463 enhanced codes).  An SMS that has *ended* failed is
final, so the DSN's ``Action`` is always ``failed`` and the status class is
always ``5`` (a ``4.x.x`` status belongs with ``Action: delayed``):

* ``invalid_number`` -> ``5.1.1`` bad destination mailbox (no such number,
  not a mobile number);
* ``unreachable`` -> ``5.4.4`` unable to route (no carrier reaches it);
* ``expired`` -> ``5.4.7`` delivery time expired: the carrier held the SMS
  for its validity period without reaching the handset.  This is also what
  a bare ``undelivered`` maps to;
* ``rejected`` -> ``5.7.1`` delivery not authorised (carrier filtering,
  blocked sender, opt-out);
* ``carrier_error`` -> ``5.0.0`` other/undefined: what a bare ``failed``
  maps to, since carriers use it for everything from bad numbers to
  account problems.

Carrier adapters know which of their error codes means what; they pass a
``reason`` when they can, and the SMS status decides otherwise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime
from types import MappingProxyType
from typing import Literal

from mailsms.mail.compose import (
    ORIGIN_HEADER,
    make_msgid,
    normalize_domain,
    normalize_msgid,
    parse_mailbox,
    phone_display,
    phone_local_part,
    sanitize_header_text,
    set_text_body,
    set_text_header,
)

__all__ = [
    "DSN_ENVELOPE_FROM",
    "DSN_STATUS",
    "DsnReason",
    "compose_dsn",
    "dsn_status",
]

DSN_ENVELOPE_FROM = ""
"""The null reverse-path (``MAIL FROM:<>``) every DSN is sent with."""

DsnReason = Literal["invalid_number", "unreachable", "expired", "rejected", "carrier_error"]

DSN_STATUS: Mapping[DsnReason, str] = MappingProxyType(
    {
        "invalid_number": "5.1.1",
        "unreachable": "5.4.4",
        "expired": "5.4.7",
        "rejected": "5.7.1",
        "carrier_error": "5.0.0",
    }
)
"""Enhanced status code (RFC 3463) per failure reason; see module docstring."""

# What each final SMS status means when the carrier gave no finer reason.
_REASON_FOR_SMS_STATUS: Mapping[str, DsnReason] = MappingProxyType(
    {
        "undelivered": "expired",
        "expired": "expired",
        "failed": "carrier_error",
        "rejected": "rejected",
    }
)

_DIAGNOSTIC_MAX = 400


def dsn_status(sms_status: str, reason: DsnReason | None = None) -> str:
    """The RFC 3463 status for a final SMS status, refined by ``reason``."""
    if reason is None:
        reason = _REASON_FOR_SMS_STATUS.get(sms_status.strip().lower(), "carrier_error")
    return DSN_STATUS[reason]


def _ascii_field(text: str, limit: int = _DIAGNOSTIC_MAX) -> str:
    """Single-line US-ASCII text for a delivery-status field.

    RFC 3464 fields are US-ASCII (only RFC 6533's global DSN allows UTF-8),
    so accents are folded (NFKD) and the rest becomes ``?``.
    """
    folded = unicodedata.normalize("NFKD", sanitize_header_text(text))
    ascii_text = "".join(c if c.isascii() else "?" for c in folded if not unicodedata.combining(c))
    return ascii_text[:limit].strip()


def _diagnostic(error_code: str | None, error_text: str | None) -> str | None:
    parts = [p for p in (_ascii_field(error_code or "", 40), _ascii_field(error_text or "")) if p]
    if not parts:
        return None
    # Not an SMTP reply, so not "smtp;": an X- diagnostic type (RFC 3464
    # §2.3.6) that says where the code comes from.
    return "X-Carrier; " + " ".join(parts)


def _header_block(raw: bytes | str | Message) -> str:
    """The header section of the original email, as text, without its body."""
    if isinstance(raw, Message):
        # Headers only: the body of the user's email stays private.
        lines = [f"{name}: {value}" for name, value in raw.items()]
        text = "\n".join(lines)
    else:
        data = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        data = data.replace("\r\n", "\n").replace("\r", "\n")
        text = data.split("\n\n", 1)[0]
    # Keep folding whitespace, drop other controls; an empty line would end
    # the header block early for whoever parses it.
    text = "".join(
        c if c in "\n\t" or unicodedata.category(c) not in {"Cc", "Cs"} else "?" for c in text
    )
    return "\n".join(line for line in text.split("\n") if line.strip()) + "\n"


def _human_text(
    *,
    display: str,
    subject: str | None,
    sms_status: str,
    status: str,
    error_code: str | None,
    error_text: str | None,
) -> str:
    subject_line = f'"{subject}"' if subject else "(no subject)"
    if error_code or error_text:
        code = f"error {error_code}" if error_code else "an error"
        detail = f": {error_text}" if error_text else ""
        carrier = f"The carrier reported {code}{detail}."
    else:
        carrier = "The carrier gave no further detail."
    return (
        f"Your message could not be delivered as an SMS to {display}.\n"
        f"\n"
        f"Subject: {subject_line}\n"
        f"SMS status: {sms_status} (delivery status {status})\n"
        f"{carrier}\n"
        f"\n"
        f"This is an automatically generated message; please do not reply.\n"
    )


def _choose_boundary(base: str, parts: list[EmailMessage]) -> str:
    """A boundary derived from our unique token that no part contains.

    Chosen here instead of by the generator so the result stays
    deterministic; the check guards against a header block crafted to
    contain it (RFC 2046 §5.1.1 requires it not to occur in any part).
    """
    rendered = b"".join(part.as_bytes(policy=policy.SMTP) for part in parts)
    boundary = base
    counter = 0
    while boundary.encode("ascii") in rendered:
        counter += 1
        boundary = f"{base}.{counter}"
    return boundary


def compose_dsn(
    *,
    phone: str,
    domain: str,
    to: str,
    original_subject: str | None,
    original_message_id: str | None,
    sms_status: str,
    error_code: str | None,
    error_text: str | None,
    arrival_date: datetime,
    now: datetime,
    unique: str,
    reason: DsnReason | None = None,
    original_recipient: str | None = None,
    original_headers: bytes | str | Message | None = None,
    envelope_id: str | None = None,
) -> EmailMessage:
    """Build the RFC 3464 bounce for an SMS that ended failed/undelivered.

    :param phone: the destination number, E.164.
    :param domain: our SMS domain; ``Reporting-MTA`` and ``MAILER-DAEMON@``.
    :param to: the original email's *envelope sender* (``MAIL FROM``); it
        must not be empty -- never bounce a bounce (RFC 3464 §2).
    :param original_subject: / :param original_message_id: of the email.
    :param sms_status: our final SMS status (``failed``, ``undelivered``).
    :param error_code: / :param error_text: the carrier's error, if any.
    :param arrival_date: when we accepted the email (``Arrival-Date``).
    :param now: the DSN's ``Date`` and ``Last-Attempt-Date``.
    :param unique: unique token for the DSN's own ``Message-ID``.
    :param reason: finer failure reason chosen by the carrier adapter;
        selects the status code (module docstring), else ``sms_status`` does.
    :param original_recipient: the recipient as the sender wrote it
        (``RCPT TO``), for ``Original-Recipient`` when it differs in form.
    :param original_headers: the original email's header section (raw bytes,
        text, or a parsed message); becomes the ``text/rfc822-headers`` part.
    :param envelope_id: the ESMTP ``ENVID`` the sender gave, if any.

    Send the result with the null reverse-path: ``envelope_from=""``.
    """
    for moment, name in ((arrival_date, "arrival_date"), (now, "now")):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    if not to.strip() or to.strip() == "<>":
        raise ValueError("no DSN for a null reverse-path (never bounce a bounce)")
    ascii_domain = normalize_domain(domain)
    display = phone_display(phone)
    final_recipient = f"{phone_local_part(phone)}@{ascii_domain}"
    status = dsn_status(sms_status, reason)
    subject = sanitize_header_text(original_subject or "") or None
    safe_status = _ascii_field(sms_status, 40) or "failed"

    msg = EmailMessage(policy=policy.default)
    msg["From"] = Address("Mail Delivery System", "MAILER-DAEMON", ascii_domain)
    msg["To"] = parse_mailbox(to)
    set_text_header(
        msg, "Subject", f"Undelivered SMS to {display}" + (f": {subject}" if subject else "")
    )
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(unique, ascii_domain)
    parent = normalize_msgid(original_message_id) if original_message_id else None
    if parent is not None:
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    msg["Auto-Submitted"] = "auto-replied"
    msg[ORIGIN_HEADER] = ascii_domain

    human = EmailMessage(policy=policy.default)
    set_text_body(
        human,
        _human_text(
            display=display,
            subject=subject,
            sms_status=safe_status,
            status=status,
            error_code=sanitize_header_text(error_code or "") or None,
            error_text=sanitize_header_text(error_text or "") or None,
        ),
    )

    per_message = Message(policy=policy.compat32)
    if envelope_id and (envid := _ascii_field(envelope_id, 100).replace(" ", "")):
        per_message["Original-Envelope-Id"] = envid
    per_message["Reporting-MTA"] = f"dns; {ascii_domain}"
    per_message["Arrival-Date"] = format_datetime(arrival_date)

    per_recipient = Message(policy=policy.compat32)
    if original_recipient:
        original = _ascii_field(original_recipient, 200).replace(" ", "")
        if original:
            per_recipient["Original-Recipient"] = f"rfc822; {original}"
    per_recipient["Final-Recipient"] = f"rfc822; {final_recipient}"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = status
    diagnostic = _diagnostic(error_code, error_text)
    if diagnostic:
        per_recipient["Diagnostic-Code"] = diagnostic
    per_recipient["Last-Attempt-Date"] = format_datetime(now)

    delivery_status = EmailMessage(policy=policy.default)
    delivery_status["Content-Type"] = "message/delivery-status"
    delivery_status.set_payload([per_message, per_recipient])

    parts = [human, delivery_status]
    if original_headers is not None:
        headers_part = EmailMessage(policy=policy.default)
        block = _header_block(original_headers)
        headers_part.set_content(
            block,
            subtype="rfc822-headers",
            charset="utf-8",
            cte="7bit"
            if block.isascii() and all(len(line) <= 998 for line in block.splitlines())
            else "quoted-printable",
        )
        parts.append(headers_part)
    for part in parts:
        # set_content marks each part as a top-level message; parts don't need it.
        del part["MIME-Version"]

    msg.make_mixed()
    msg.set_type("multipart/report")
    msg.set_param("report-type", "delivery-status")
    for part in parts:
        msg.attach(part)
    msg.set_boundary(_choose_boundary(f"=_mailsms_dsn_{unique}", parts))
    return msg
