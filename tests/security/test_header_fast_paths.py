"""Header fast paths against the full parse of email.policy.default.

- From (mailsms.policy.plain_from_address): wherever the fast path answers,
  the answer must be the one the full RFC 5322 parse gives
  (CVE-2023-27043 class: the address checked is the address replies go to).
- Subject (the SMTP handler's ``_header_text``, through
  mailsms.text.mime.field_value): raw ASCII text without encoded words
  reads the same as the registry's decoded value.
- The parse policy (mailsms.text.parsing) reads headers like policy.default.
"""

from __future__ import annotations

import string
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.policy import header_from_address, plain_from_address
from mailsms.smtp.handler import _header_text
from mailsms.text.parsing import parse_message
from tests.security.test_hostile_input import ALICE_VARIANTS, MALLORY_VARIANTS

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
# Everything that changes how an address field parses, and some that don't.
NOISE = ATEXT + ' \t<>@.,;:"()[]\\é\r\n'


def _message(value: str) -> EmailMessage:
    return parse_message(f"From: {value}\r\nSubject: s\r\n\r\nbody\r\n".encode())


def _full_parse(msg: EmailMessage) -> tuple[str | None, str | None]:
    with mock.patch("mailsms.policy.plain_from_address", return_value=None):
        return header_from_address(msg)


def _agrees(value: str) -> None:
    msg = _message(value)
    fast = plain_from_address(value)
    full = _full_parse(msg)
    if fast is not None:
        assert full == (fast, None), (value, fast, full)
    # And the function as callers see it always matches the full parse.
    assert header_from_address(msg) == full, value


words = st.text(ATEXT, min_size=1, max_size=8)
dot_atoms = st.lists(words, min_size=1, max_size=3).map(".".join)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", dot_atoms, dot_atoms)
plain_shapes = st.one_of(
    addresses,
    addresses.map(lambda a: f"<{a}>"),
    st.builds(
        lambda name, a, pad: f"{pad}{' '.join(name)} <{a}>{pad}",
        st.lists(words, min_size=1, max_size=3),
        addresses,
        st.sampled_from(["", " ", "\t"]),
    ),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(plain_shapes)
def test_plain_shapes_take_the_fast_path_and_agree(value: str) -> None:
    if "=?" not in value:
        assert plain_from_address(value) is not None, value
    _agrees(value)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(NOISE, max_size=40),
        # A plain shape with hostile characters spliced in somewhere.
        st.builds(
            lambda shape, at, junk: shape[:at] + junk + shape[at:],
            plain_shapes,
            st.integers(0, 60),
            st.text(NOISE, min_size=1, max_size=4),
        ),
    )
)
def test_any_from_value_agrees_with_the_full_parse(value: str) -> None:
    if "\r" in value or "\n" in value:
        # Only folding (CRLF + WSP) can appear inside a parsed field value.
        value = value.replace("\r", "").replace("\n", "\r\n ")
    _agrees(value)


@pytest.mark.parametrize("value", MALLORY_VARIANTS + ALICE_VARIANTS)
def test_known_spoofing_shapes_agree(value: str) -> None:
    _agrees(value)


@pytest.mark.parametrize(
    "value",
    [
        '"Alice" <alice@corp.example>',  # quoted string: full parse
        "alice@corp.example (Alice)",  # comment
        "=?utf-8?q?Al=C3=AFce?= <alice@corp.example>",  # encoded word
        "Alice\r\n <alice@corp.example>",  # folded
        "Ali.ce <alice@corp.example>",  # obsolete phrase
        "alice@[192.0.2.1]",  # domain literal
    ],
)
def test_unusual_shapes_leave_the_fast_path(value: str) -> None:
    assert plain_from_address(value) is None
    _agrees(value)


def test_the_parse_policy_reads_headers_like_policy_default() -> None:
    raw = (
        b"From: =?utf-8?q?Al=C3=AFce?= <alice@corp.example>\r\n"
        b"Subject: =?utf-8?b?w6lsw6g=?= and more\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
    )
    ours = parse_message(raw)
    reference = BytesParser(policy=policy.default).parsebytes(raw)
    for name in ("From", "Subject", "Date", "Content-Type"):
        assert str(ours[name]) == str(reference[name])
        assert type(ours[name]).__mro__[1:] == type(reference[name]).__mro__[1:]
    assert ours["From"].addresses == reference["From"].addresses
    assert ours.get_content_charset() == reference.get_content_charset()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.characters(codec="ascii", exclude_characters="\r\n") | st.sampled_from(["=?", "é"]),
        max_size=40,
    ).map("".join),
    st.booleans(),
)
def test_subject_text_agrees_with_the_registry(value: str, folded: bool) -> None:
    if folded and " " in value:
        value = value.replace(" ", "\r\n ", 1)  # a folded field
    msg = parse_message(f"Subject: {value}\r\nFrom: a@b.example\r\n\r\nbody\r\n".encode())
    registry = msg.get("Subject")
    expected = " ".join(str(registry).split()) or None if registry is not None else None
    assert _header_text(msg, "Subject") == expected, value
