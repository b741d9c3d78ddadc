"""Subject policies, length policies, options validation, errors."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.text import (
    EmptyMessage,
    MessageTooLong,
    TextError,
    TextOptions,
    analyse,
    email_to_sms,
    text_to_sms,
)
from mailsms.text.normalize import normalize_text
from mailsms.text.translit import transliterate

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def _words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


def _mail(subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "sms@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


# -- subject policy -----------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "subject", "body", "expected"),
    [
        ("ignore", "Disk full", "db1 at 97%", "db1 at 97%"),
        ("prepend", "Disk full", "db1 at 97%", "Disk full: db1 at 97%"),
        ("prepend", "Disk full!", "db1 at 97%", "Disk full! db1 at 97%"),
        ("prepend", "Re: Fwd: Disk full", "db1 at 97%", "Disk full: db1 at 97%"),
        ("prepend", "AW: WG: Festplatte", "voll", "Festplatte: voll"),
        ("prepend", "Disk full", "", "Disk full"),
        ("prepend", "", "db1 at 97%", "db1 at 97%"),
        ("fallback", "Disk full", "db1 at 97%", "db1 at 97%"),
        ("fallback", "Disk full", "", "Disk full"),
        ("fallback", "Disk full", "\n\n-- \nMonitoring bot\n", "Disk full"),
    ],
)
def test_subject_policy_email(policy: str, subject: str, body: str, expected: str) -> None:
    options = TextOptions(subject_policy=policy)  # type: ignore[arg-type]
    assert email_to_sms(_mail(subject, body), options).messages[0].text == expected


def test_subject_policy_ignore_empty_body_raises() -> None:
    with pytest.raises(EmptyMessage) as info:
        email_to_sms(_mail("Disk full", ""), TextOptions())
    assert info.value.reason == "message has no text to send"


def test_subject_encoded_word_and_text_api() -> None:
    msg = _mail("Températura — élevée", "rack 4")
    conversion = email_to_sms(msg, TextOptions(subject_policy="prepend"))
    assert conversion.messages[0].text == "Températura - élevée: rack 4"
    api = text_to_sms("rack 4", TextOptions(subject_policy="prepend"), subject="Alert")
    assert api.messages[0].text == "Alert: rack 4"
    assert text_to_sms("", TextOptions(subject_policy="fallback"), "Alert").messages[0].text == (
        "Alert"
    )


# -- length policy ------------------------------------------------------------


def test_fits_untouched() -> None:
    text = "a" * 918  # exactly 6 segments
    conversion = text_to_sms(text, TextOptions())
    assert conversion.messages[0].text == text
    assert not conversion.truncated


def test_truncate_gsm() -> None:
    text = _words(400)
    conversion = text_to_sms(text, TextOptions(max_segments=2))
    (part,) = conversion.messages
    assert conversion.truncated
    assert part.encoding == "GSM-7"
    assert part.segments <= 2
    assert part.text.endswith("...")
    body = part.text[:-3]
    assert text.startswith(body)
    assert text[len(body)] == " "  # cut at a word boundary
    assert len(part.text) > 290  # and not wastefully early


def test_truncate_ucs2_uses_unicode_ellipsis() -> None:
    text = " ".join(["привет"] * 200)
    (part,) = text_to_sms(text, TextOptions(max_segments=1)).messages
    assert part.encoding == "UCS-2"
    assert part.text.endswith("…")
    assert part.segments == 1
    assert len(part.text) <= 70


def test_truncate_prefers_gsm_when_ucs2_char_is_beyond_the_cut() -> None:
    text = _words(300) + " 😀"
    (part,) = text_to_sms(text, TextOptions(max_segments=1)).messages
    assert part.encoding == "GSM-7"
    assert part.text.endswith("...")
    assert 150 <= len(part.text) <= 160


def test_truncate_without_spaces_hard_cuts() -> None:
    text = "x" * 2000
    (part,) = text_to_sms(text, TextOptions(max_segments=1)).messages
    assert part.text == "x" * 157 + "..."


def test_truncate_does_not_split_emoji_sequence() -> None:
    text = "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 40
    (part,) = text_to_sms(text, TextOptions(max_segments=1)).messages
    assert part.segments == 1
    body = part.text.removesuffix("…")
    assert not body.endswith("\u200d")


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.sampled_from(list("abc €{ \nжé😀’")), min_size=1, max_size=1500),
    st.integers(min_value=1, max_value=4),
)
def test_truncate_always_fits(text: str, limit: int) -> None:
    try:
        conversion = text_to_sms(text, TextOptions(max_segments=limit))
    except EmptyMessage:
        return
    (part,) = conversion.messages
    assert part.segments <= limit
    assert analyse(part.text) == part


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.sampled_from(list("abc €{ \nжé😀’")), min_size=1, max_size=1500),
    st.integers(min_value=1, max_value=3),
)
def test_split_always_fits(text: str, limit: int) -> None:
    try:
        conversion = text_to_sms(text, TextOptions(max_segments=limit, length_policy="split"))
    except EmptyMessage:
        return
    assert conversion.messages
    for part in conversion.messages:
        assert 1 <= part.segments <= limit
        assert part.text.strip()
    # Nothing but whitespace at the cuts is lost.
    joined = "".join("".join(p.text.split()) for p in conversion.messages)
    assert joined == "".join(transliterate(normalize_text(text))[0].split())


def test_split_at_word_boundaries() -> None:
    text = _words(300)
    conversion = text_to_sms(text, TextOptions(max_segments=2, length_policy="split"))
    assert len(conversion.messages) > 1
    assert not conversion.truncated
    assert " ".join(p.text for p in conversion.messages) == text
    assert all(p.segments <= 2 for p in conversion.messages)


def test_split_chunks_get_their_own_encoding() -> None:
    text = "a" * 300 + " " + "ж" * 50
    conversion = text_to_sms(text, TextOptions(max_segments=2, length_policy="split"))
    encodings = [p.encoding for p in conversion.messages]
    assert encodings[0] == "GSM-7"
    assert encodings[-1] == "UCS-2"


def test_refuse() -> None:
    text = "a" * (153 * 8 + 1)  # 9 segments
    with pytest.raises(MessageTooLong) as info:
        text_to_sms(text, TextOptions(length_policy="refuse"))
    assert info.value.segments == 9
    assert info.value.limit == 6
    assert info.value.reason == "message needs 9 SMS segments, the limit is 6"
    assert isinstance(info.value, TextError)


def test_refuse_within_limit_sends() -> None:
    conversion = text_to_sms("short", TextOptions(length_policy="refuse"))
    assert conversion.messages[0].text == "short"


# -- options and whitespace ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_segments": 0},
        {"subject_policy": "append"},
        {"length_policy": "drop"},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TextOptions(**kwargs)  # type: ignore[arg-type]


def test_whitespace_normalised() -> None:
    text = "  Line one   \r\n\r\n\r\n\r\nLine\u200b two\t\nLine three\n\n\n"
    conversion = text_to_sms(text, TextOptions())
    assert conversion.messages[0].text == "Line one\n\nLine two\nLine three"


def test_empty_text() -> None:
    with pytest.raises(EmptyMessage):
        text_to_sms(" \n\n ", TextOptions())


def test_conversion_is_frozen() -> None:
    conversion = text_to_sms("hi", TextOptions())
    with pytest.raises(AttributeError):
        conversion.truncated = True  # type: ignore[misc]
