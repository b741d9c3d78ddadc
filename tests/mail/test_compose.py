"""Composition of the email carrying an SMS answer back to the sender."""

from __future__ import annotations

import email
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.mail.compose import (
    MAX_REFERENCES,
    ORIGIN_HEADER,
    compose_reply,
    message_to_bytes,
    normalize_msgid,
    reply_subject,
    sanitize_header_text,
)

DOMAIN = "sms.example.com"
RECEIVED = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def reply(**overrides: Any) -> EmailMessage:
    values: dict[str, Any] = {
        "phone": "+14155551212",
        "domain": DOMAIN,
        "to": "alice@corp.example",
        "original_subject": "Lunch tomorrow?",
        "original_message_id": "<orig-1@corp.example>",
        "references": [],
        "text": "Sure, see you at noon",
        "media_urls": (),
        "received_at": RECEIVED,
        "unique": "reply-0001",
    }
    values.update(overrides)
    return compose_reply(**values)


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message_to_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body_of(msg: EmailMessage) -> str:
    # Decoded from the CRLF wire form; compare with plain newlines.
    content = msg.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_from_is_the_phone_on_our_domain_with_international_display_name() -> None:
    msg = reparse(reply())
    [sender] = msg["From"].addresses
    assert sender.display_name == "+1 415-555-1212"
    assert sender.addr_spec == "14155551212@sms.example.com"
    assert msg["To"].addresses[0].addr_spec == "alice@corp.example"


def test_other_countries_use_their_international_format() -> None:
    msg = reparse(reply(phone="+447911123456"))
    [sender] = msg["From"].addresses
    assert sender.display_name == "+44 7911 123456"
    assert sender.username == "447911123456"


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Lunch tomorrow?", "Re: Lunch tomorrow?"),
        ("Re: Lunch", "Re: Lunch"),
        ("RE: Lunch", "Re: Lunch"),
        ("re:Lunch", "Re: Lunch"),
        ("Aw: Mittag", "Re: Mittag"),
        ("AW: Re: SV: Lunch", "Re: Lunch"),
        ("Re[2]: Lunch", "Re: Lunch"),
        ("Réponse: Lunch", "Re: Réponse: Lunch"),
        ("Fwd: Lunch", "Re: Fwd: Lunch"),
        ("Rebooking: flight", "Re: Rebooking: flight"),
        ("  spaced   out  ", "Re: spaced out"),
        (None, "SMS from +1 415-555-1212"),
        ("", "SMS from +1 415-555-1212"),
        ("   ", "SMS from +1 415-555-1212"),
        ("Re:", "SMS from +1 415-555-1212"),
    ],
)
def test_subject_rules(original: str | None, expected: str) -> None:
    assert reply_subject(original, "+14155551212") == expected
    assert reparse(reply(original_subject=original))["Subject"] == expected


def test_threading_headers() -> None:
    msg = reparse(
        reply(
            original_message_id="<orig-3@corp.example>",
            references=["<root@corp.example>", "<orig-2@corp.example>"],
        )
    )
    assert msg["In-Reply-To"] == "<orig-3@corp.example>"
    assert msg["References"].split() == [
        "<root@corp.example>",
        "<orig-2@corp.example>",
        "<orig-3@corp.example>",
    ]


def test_references_are_deduplicated_in_order_and_brackets_normalised() -> None:
    msg = reparse(
        reply(
            original_message_id="orig@corp.example",
            references=["<root@x> <a@x>", "a@x", "<orig@corp.example>"],
        )
    )
    assert msg["In-Reply-To"] == "<orig@corp.example>"
    assert msg["References"].split() == ["<root@x>", "<a@x>", "<orig@corp.example>"]


def test_long_threads_keep_the_root_and_the_latest_references() -> None:
    refs = [f"<m{i}@x>" for i in range(60)]
    msg = reparse(reply(original_message_id="<last@x>", references=refs))
    ids = msg["References"].split()
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == "<m0@x>"
    assert ids[-2:] == ["<m59@x>", "<last@x>"]


def test_without_original_message_id_there_is_no_in_reply_to() -> None:
    msg = reparse(reply(original_message_id=None))
    assert msg["In-Reply-To"] is None
    assert msg["References"] is None


def test_own_message_id_date_and_loop_stamp() -> None:
    msg = reparse(reply())
    assert msg["Message-ID"] == "<reply-0001@sms.example.com>"
    assert msg["Date"].datetime == RECEIVED
    assert msg[ORIGIN_HEADER] == DOMAIN
    # A person's reply: the user must be able to answer it (RFC 3834).
    assert msg["Auto-Submitted"] is None


def test_date_keeps_the_given_zone() -> None:
    received = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    assert reparse(reply(received_at=received))["Date"].datetime == received


def test_naive_time_and_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        reply(received_at=datetime(2024, 5, 1, 12, 0))
    with pytest.raises(ValueError, match="phone"):
        reply(phone="not a number")
    with pytest.raises(ValueError, match="address"):
        reply(to="alice@corp.example\r\nBcc: eve@evil.example")
    with pytest.raises(ValueError, match="token"):
        reply(unique="a b")
    with pytest.raises(ValueError, match="domain"):
        reply(domain="bad domain")


def test_body_is_utf8_text_with_media_urls_after_the_text() -> None:
    msg = reparse(
        reply(
            text="Here you go 📷 — ça va?",
            media_urls=["https://media.example/1.jpg", "https://media.example/2.png"],
        )
    )
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    body = body_of(msg)
    assert body == (
        "Here you go 📷 — ça va?\n\nMedia:\n"
        "  https://media.example/1.jpg\n  https://media.example/2.png\n"
    )
    # 7-bit safe on the wire, so no relay re-encodes it under a DKIM signature.
    assert message_to_bytes(msg).isascii()


def test_media_only_message() -> None:
    body = body_of(reparse(reply(text="", media_urls=["https://m.example/a.jpg"])))
    assert body == "Media:\n  https://m.example/a.jpg\n"


def test_hostile_sms_text_stays_in_the_body() -> None:
    hostile = (
        "hi\r\nBcc: victim@example.org\r\nSubject: injected\r\n\r\n"
        "Content-Type: text/html\n\x00\x1b[31mred\u2028X-Evil: 1"
    )
    original = reply(
        text=hostile,
        original_subject="Lunch\r\nBcc: victim@example.org",
        media_urls=["https://m.example/x\r\nX-Injected: 1"],
    )
    msg = reparse(original)
    names = [name.lower() for name in msg]
    assert "bcc" not in names
    assert "x-evil" not in names
    assert "x-injected" not in names
    assert names.count("subject") == 1
    assert msg["Subject"] == "Re: Lunch Bcc: victim@example.org"
    body = body_of(msg)
    assert "Bcc: victim@example.org" in body
    assert "Subject: injected" in body
    assert "\x00" not in body
    assert "\x1b" not in body
    assert msg.get_content_type() == "text/plain"


def test_lone_surrogates_from_json_do_not_break_encoding() -> None:
    msg = reparse(reply(text="broken \ud83d emoji", original_subject="x \udc00 y"))
    assert body_of(msg) == "broken \ufffd emoji\n"
    assert msg["Subject"] == "Re: x y"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<a@b>", "<a@b>"),
        ("a@b", "<a@b>"),
        ("  <a@b>\r\n", "<a@b>"),
        ("<a@b>\r\nBcc: x", "<a@bBcc:x>"),
        ("", None),
        ("<>", None),
        ("<" + "x" * 300 + "@b>", None),
    ],
)
def test_normalize_msgid(raw: str, expected: str | None) -> None:
    assert normalize_msgid(raw) == expected


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Zl", "Zp", "Cs"}


_header_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=200
) | st.sampled_from(["Re: x\r\nBcc: a@b", "\r\n\r\n", "=?utf-8?q?=0D=0A?=", "\u2028\u2029\x85"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    subject=st.none() | _header_text,
    text=st.text(max_size=500) | _header_text,
    msgid=st.none() | _header_text,
    references=st.lists(_header_text, max_size=5),
    media=st.lists(_header_text, max_size=3),
    phone=st.sampled_from(["+14155551212", "+447911123456", "+33612345678", "+8613800138000"]),
)
def test_headers_never_carry_controls_and_round_trip(
    subject: str | None,
    text: str,
    msgid: str | None,
    references: list[str],
    media: list[str],
    phone: str,
) -> None:
    msg = reply(
        phone=phone,
        original_subject=subject,
        original_message_id=msgid,
        references=references,
        text=text,
        media_urls=media,
    )
    for name, value in msg.items():
        assert not any(_is_control(c) for c in str(value)), (name, value)
    raw = message_to_bytes(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert [(k, str(v)) for k, v in parsed.items()] == [(k, str(v)) for k, v in msg.items()]
    for name, value in parsed.items():
        assert not any(_is_control(c) for c in str(value)), (name, value)
    assert parsed.get_content_type() == "text/plain"


@given(st.text(max_size=300))
def test_sanitize_header_text_is_one_clean_line(value: str) -> None:
    cleaned = sanitize_header_text(value)
    assert not any(_is_control(c) for c in cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned


def test_encoded_word_text_in_subject_stays_literal() -> None:
    msg = reparse(reply(original_subject="=?utf-8?q?=0D=0ABcc:_x@evil.example?="))
    assert msg["Bcc"] is None
    assert not any(_is_control(c) for c in msg["Subject"])
    assert msg["Subject"].replace("\u2060", "") == "Re: =?utf-8?q?=0D=0ABcc:_x@evil.example?="


def test_idn_recipient_domain_is_sent_in_ascii_form() -> None:
    msg = reparse(reply(to="jorg@exämple.de"))
    assert msg["To"].addresses[0].addr_spec == "jorg@xn--exmple-cua.de"


@pytest.mark.parametrize(
    "subject", ["Café ☕ à midi", "Привет как дела у тебя сегодня вечером друг мой дорогой и что"]
)
def test_non_ascii_subjects_keep_their_spaces(subject: str) -> None:
    assert reparse(reply(original_subject=subject))["Subject"] == f"Re: {subject}"
