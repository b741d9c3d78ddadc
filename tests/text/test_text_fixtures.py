"""Golden tests: every fixtures/*.eml against its sibling .txt (default options).

A .txt holding ``ERROR: <ExceptionName>`` expects that TextError instead.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailsms.text import (
    EmptyMessage,
    TextError,
    TextOptions,
    email_to_sms,
    format_preview,
    preview,
)

FIXTURES = Path(__file__).parent / "fixtures"
EMLS = sorted(FIXTURES.glob("*.eml"))


def _load(name: str) -> EmailMessage:
    msg = email.message_from_bytes((FIXTURES / f"{name}.eml").read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_fixture_set_is_large_enough() -> None:
    assert len(EMLS) >= 40
    assert sum(1 for p in EMLS if p.with_suffix(".txt").exists()) >= 40


@pytest.mark.parametrize("path", [p for p in EMLS if p.with_suffix(".txt").exists()], ids=str)
def test_fixture(path: Path) -> None:
    expected = path.with_suffix(".txt").read_text(encoding="utf-8").rstrip("\n")
    msg = _load(path.stem)
    if expected.startswith("ERROR: "):
        with pytest.raises(TextError) as info:
            email_to_sms(msg, TextOptions())
        assert type(info.value).__name__ == expected.removeprefix("ERROR: ")
        assert info.value.reason
        return
    conversion = email_to_sms(msg, TextOptions())
    assert len(conversion.messages) == 1
    assert conversion.messages[0].text == expected
    assert conversion.messages[0].segments <= 6


@pytest.mark.parametrize(
    ("name", "stripped", "attachments"),
    [
        ("gmail_en_reply", ("quote",), ()),
        ("gmail_en_html_only_signature", ("quote", "signature"), ()),
        ("signature_delimiter", ("signature",), ()),
        ("gmail_forward_with_note", ("forward",), ()),
        ("gmail_forward_bare", ("forward-header",), ()),
        ("attachment_pdf", (), ("report.pdf (application/pdf)",)),
        (
            "nested_mixed_related",
            (),
            ("photo.png (image/png)", "survey.pdf (application/pdf)"),
        ),
        ("forward_as_attachment", (), ("forwarded message “Contract” (message/rfc822)",)),
    ],
)
def test_fixture_report(name: str, stripped: tuple[str, ...], attachments: tuple[str, ...]) -> None:
    conversion = email_to_sms(_load(name), TextOptions())
    assert conversion.stripped == stripped
    assert conversion.attachments == attachments


def test_encodings_of_fixtures() -> None:
    cyrillic = email_to_sms(_load("koi8r"), TextOptions())
    assert cyrillic.messages[0].encoding == "UCS-2"
    assert cyrillic.transliterated == ()
    typographic = email_to_sms(_load("cp1252_euro_typography"), TextOptions())
    assert typographic.messages[0].encoding == "GSM-7"
    assert set(typographic.transliterated) == {"—", "…", "“", "”", "’"}
    assert typographic.ucs2_chars == ()
    emoji = email_to_sms(_load("emoji_ucs2"), TextOptions())
    assert emoji.messages[0].encoding == "UCS-2"
    assert emoji.transliterated == ()
    assert emoji.ucs2_chars == ("’", "🎉", "…")


def test_long_fixture_truncated() -> None:
    conversion = email_to_sms(_load("long_truncated"), TextOptions())
    (part,) = conversion.messages
    assert conversion.truncated
    assert part.encoding == "GSM-7"
    assert part.segments == 6
    assert part.text.endswith("...")
    assert not part.text[:-3].endswith(" ")
    body = _load("long_truncated").get_content()
    assert body.startswith(part.text[:-3])
    # Cut at a word boundary: the next character in the original is a space.
    assert body[len(part.text) - 3] == " "


def test_attachment_only_reason_lists_attachment() -> None:
    with pytest.raises(EmptyMessage) as info:
        email_to_sms(_load("attachment_only_zip"), TextOptions())
    assert "logs.zip" in info.value.reason


def test_only_quote_reason() -> None:
    with pytest.raises(EmptyMessage) as info:
        email_to_sms(_load("only_quote"), TextOptions())
    assert info.value.reason == "message has no text to send after removing quotes and signature"


def test_preview_on_fixture() -> None:
    raw = (FIXTURES / "outlook_en_plain_cp1252.eml").read_bytes()
    report = preview(raw, TextOptions())
    assert report["texts"] == [
        "Hi Alice,\n\nI've added your badge to the server room - it's active from tomorrow."
    ]
    assert report["encoding"] == "GSM-7"
    assert report["segments"] == 1
    assert report["transliterated"] == ["’", "–"]
    assert report["stripped"] == ["quote"]
    assert report["truncated"] is False
    text = format_preview(report)
    assert "SMS 1/1: GSM-7, 1 segment" in text
    assert "Removed: quote" in text


def test_preview_error() -> None:
    report = preview((FIXTURES / "empty_body.eml").read_bytes(), TextOptions())
    assert report["error"] == "message has no text to send"
    assert report["error_type"] == "EmptyMessage"
    assert "Not sent: message has no text to send" in format_preview(report)
