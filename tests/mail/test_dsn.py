"""The RFC 3464 bounce for a failed or undelivered SMS."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from typing import Any

import pytest

from mailsms.mail.compose import ORIGIN_HEADER, message_to_bytes
from mailsms.mail.dsn import DSN_ENVELOPE_FROM, compose_dsn, dsn_status

DOMAIN = "sms.example.com"
ARRIVAL = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
ORIGINAL_HEADERS = (
    b"From: Alice <alice@corp.example>\r\n"
    b"To: 4155551212@sms.example.com\r\n"
    b"Subject: Lunch tomorrow?\r\n"
    b"Message-ID: <orig-1@corp.example>\r\n"
    b"\r\n"
    b"The private body of the email.\r\n"
)


def dsn(**overrides: Any) -> EmailMessage:
    values: dict[str, Any] = {
        "phone": "+14155551212",
        "domain": DOMAIN,
        "to": "alice@corp.example",
        "original_subject": "Lunch tomorrow?",
        "original_message_id": "<orig-1@corp.example>",
        "sms_status": "undelivered",
        "error_code": "30003",
        "error_text": "Unreachable destination handset",
        "arrival_date": ARRIVAL,
        "now": NOW,
        "unique": "dsn-0001",
        "original_headers": ORIGINAL_HEADERS,
        "original_recipient": "4155551212@sms.example.com",
    }
    values.update(overrides)
    return compose_dsn(**values)


def parse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message_to_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def status_blocks(msg: EmailMessage) -> tuple[Message, list[Message]]:
    part = list(msg.iter_parts())[1]
    assert part.get_content_type() == "message/delivery-status"
    payload = part.get_payload()
    assert isinstance(payload, list)
    blocks = [block for block in payload if isinstance(block, Message)]
    assert len(blocks) == len(payload)
    return blocks[0], blocks[1:]


def test_structure_is_a_delivery_status_report() -> None:
    msg = parse(dsn())
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_top_level_headers() -> None:
    msg = parse(dsn())
    [sender] = msg["From"].addresses
    assert sender.display_name == "Mail Delivery System"
    assert sender.addr_spec == "MAILER-DAEMON@sms.example.com"
    assert msg["To"].addresses[0].addr_spec == "alice@corp.example"
    assert msg["Subject"] == "Undelivered SMS to +1 415-555-1212: Lunch tomorrow?"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<orig-1@corp.example>"
    assert msg["References"] == "<orig-1@corp.example>"
    assert msg["Message-ID"] == "<dsn-0001@sms.example.com>"
    assert msg["Date"].datetime == NOW
    assert msg[ORIGIN_HEADER] == DOMAIN
    assert DSN_ENVELOPE_FROM == ""


def test_delivery_status_fields() -> None:
    per_message, [per_recipient] = status_blocks(parse(dsn()))
    assert per_message["Reporting-MTA"] == "dns; sms.example.com"
    assert per_message["Arrival-Date"] == "Wed, 01 May 2024 12:00:00 +0000"
    assert per_recipient["Final-Recipient"] == "rfc822; 14155551212@sms.example.com"
    assert per_recipient["Original-Recipient"] == "rfc822; 4155551212@sms.example.com"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.4.7"
    assert per_recipient["Diagnostic-Code"] == "X-Carrier; 30003 Unreachable destination handset"
    assert per_recipient["Last-Attempt-Date"] == "Wed, 01 May 2024 13:00:00 +0000"


def test_human_part_names_number_error_and_subject() -> None:
    human, _, _ = parse(dsn()).iter_parts()
    text = human.get_content()
    assert "+1 415-555-1212" in text
    assert "30003" in text
    assert "Unreachable destination handset" in text
    assert "Lunch tomorrow?" in text


def test_original_headers_part_has_headers_but_not_the_body() -> None:
    part = list(parse(dsn()).iter_parts())[2]
    text = part.get_content()
    assert "Subject: Lunch tomorrow?" in text
    assert "Message-ID: <orig-1@corp.example>" in text
    assert "private body" not in text


def test_original_headers_may_be_a_parsed_message_or_absent() -> None:
    original = email.message_from_bytes(ORIGINAL_HEADERS, policy=policy.default)
    part = list(parse(dsn(original_headers=original)).iter_parts())[2]
    assert "Subject: Lunch tomorrow?" in part.get_content()
    assert "private body" not in part.get_content()
    types = [p.get_content_type() for p in parse(dsn(original_headers=None)).iter_parts()]
    assert types == ["text/plain", "message/delivery-status"]


@pytest.mark.parametrize(
    ("sms_status", "reason", "expected"),
    [
        ("undelivered", None, "5.4.7"),
        ("failed", None, "5.0.0"),
        ("failed", "invalid_number", "5.1.1"),
        ("undelivered", "rejected", "5.7.1"),
        ("failed", "unreachable", "5.4.4"),
        ("something-new", None, "5.0.0"),
    ],
)
def test_status_choice(sms_status: str, reason: Any, expected: str) -> None:
    assert dsn_status(sms_status, reason) == expected
    _, [per_recipient] = status_blocks(parse(dsn(sms_status=sms_status, reason=reason)))
    assert per_recipient["Status"] == expected
    assert per_recipient["Action"] == "failed"


def test_without_subject_error_or_message_id() -> None:
    msg = parse(
        dsn(original_subject=None, error_code=None, error_text=None, original_message_id=None)
    )
    assert msg["Subject"] == "Undelivered SMS to +1 415-555-1212"
    assert msg["In-Reply-To"] is None
    _, [per_recipient] = status_blocks(msg)
    assert per_recipient["Diagnostic-Code"] is None


def test_hostile_carrier_text_stays_ascii_single_line() -> None:
    msg = parse(
        dsn(error_text="Échec\r\nAction: delivered\r\n\r\nStatus: 2.0.0", error_code="1\n2")
    )
    _, recipients = status_blocks(msg)
    assert len(recipients) == 1
    [per_recipient] = recipients
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.4.7"
    assert per_recipient["Diagnostic-Code"] == (
        "X-Carrier; 1 2 Echec Action: delivered Status: 2.0.0"
    )
    assert message_to_bytes(msg).isascii()


def test_never_bounce_a_bounce() -> None:
    with pytest.raises(ValueError, match="bounce"):
        dsn(to="")
    with pytest.raises(ValueError, match="bounce"):
        dsn(to="<>")


def test_boundary_is_deterministic_and_absent_from_the_parts() -> None:
    crafted = b"X-Trap: --=_mailsms_dsn_dsn-0001\r\n\r\n"
    first = message_to_bytes(dsn(original_headers=crafted))
    assert first == message_to_bytes(dsn(original_headers=crafted))
    msg = email.message_from_bytes(first, policy=policy.default)
    assert len(list(msg.iter_parts())) == 3
    assert msg.get_boundary() != "=_mailsms_dsn_dsn-0001"
