"""Raw DATA checks: line endings, header caps, header syntax, hop count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.trust.authresults import authserv_id_of, strip_forged_authentication_results
from mailsms.trust.rawcheck import (
    _BARE_EOL,
    check_header_limits,
    check_header_syntax,
    find_bare_line_endings,
    header_fields,
    may_have_field,
    received_hops,
)
from tests.trust import make_message

CLEAN = make_message()


def test_clean_crlf_mail_passes() -> None:
    assert find_bare_line_endings(CLEAN) is None
    assert check_header_syntax(CLEAN) is None
    assert check_header_limits(CLEAN, max_headers=10, max_header_bytes=2000) is None


def test_bare_lf_inside_header_is_detected() -> None:
    raw = b"From: a@corp.example\r\nSubject: hi\nBcc: victim@example.com\r\n\r\nbody\r\n"
    reason = find_bare_line_endings(raw)
    assert reason is not None
    assert "bare LF" in reason
    offset = raw.index(b"\nBcc")
    assert f"byte {offset}" in reason


def test_bare_cr_is_detected() -> None:
    raw = b"From: a@corp.example\r\nSubject: hi\rBcc: x\r\n\r\nbody\r\n"
    reason = find_bare_line_endings(raw)
    assert reason is not None and "bare CR" in reason


def test_smuggled_end_of_data_is_detected() -> None:
    # "\n.\r\n" ends DATA for lenient servers; the rest would be a new message.
    body = b"hello\n.\r\nMAIL FROM:<ceo@corp.example>\r\n"
    assert find_bare_line_endings(make_message(body=body)) is not None
    assert find_bare_line_endings(make_message(body=b"hello\r\n.\r\r\nx\r\n")) is not None


def test_bare_line_ending_at_edges() -> None:
    assert find_bare_line_endings(b"\n") is not None
    assert find_bare_line_endings(b"x\r") is not None
    assert find_bare_line_endings(b"\r\n") is None
    assert find_bare_line_endings(b"") is None


def test_header_count_cap() -> None:
    raw = b"".join(b"X-H%d: v\r\n" % i for i in range(50)) + b"\r\nbody\r\n"
    assert check_header_limits(raw, max_headers=50, max_header_bytes=10_000) is None
    reason = check_header_limits(raw, max_headers=49, max_header_bytes=10_000)
    assert reason is not None and "too many header fields" in reason


def test_folded_lines_do_not_count_as_fields() -> None:
    raw = b"Subject: a\r\n b\r\n\tc\r\nFrom: x@corp.example\r\n\r\n"
    assert check_header_limits(raw, max_headers=2, max_header_bytes=1000) is None


def test_header_size_cap() -> None:
    raw = b"Subject: " + b"x" * 5000 + b"\r\n\r\nbody"
    reason = check_header_limits(raw, max_headers=100, max_header_bytes=4096)
    assert reason is not None and "larger than 4096 bytes" in reason
    assert check_header_limits(raw, max_headers=100, max_header_bytes=6000) is None


def test_header_size_cap_without_body_separator() -> None:
    assert check_header_limits(b"Subject: x\r\n", 10, 100) is None
    assert check_header_limits(b"Subject: " + b"x" * 200, 10, 100) is not None


def test_size_cap_scans_only_the_limit() -> None:
    # A huge body after a small header must not matter.
    raw = b"Subject: x\r\n\r\n" + b"y" * 5_000_000
    assert check_header_limits(raw, 10, 100) is None


def test_received_hops() -> None:
    raw = (
        b"Received: from a by b; Mon, 3 Jun 2024 10:00:00 +0000\r\n"
        b"received: from c\r\n by d; Mon, 3 Jun 2024 10:00:00 +0000\r\n"
        b"X-Received: not counted\r\n"
        b"From: a@corp.example\r\n\r\n"
        b"Received: in the body, not counted\r\n"
    )
    assert received_hops(raw) == 2
    assert received_hops(CLEAN) == 0


def test_header_syntax_problems() -> None:
    assert check_header_syntax(b" folded first\r\nFrom: a@b.example\r\n\r\n") is not None
    assert check_header_syntax(b"From a@b.example Mon Jun 3\r\nFrom: a@b.example\r\n\r\n")
    assert check_header_syntax(b"From : a@b.example\r\n\r\n") is not None
    assert check_header_syntax(b"Subject: ok\r\n\r\nnot a header\r\n") is None


def test_header_fields_spans_cover_folded_fields() -> None:
    raw = b"A: 1\r\nB: 2\r\n  more\r\nC: 3\r\n\r\nbody"
    fields = header_fields(raw)
    assert [f.name for f in fields] == [b"A", b"B", b"C"]
    assert raw[fields[1].start : fields[1].end] == b"B: 2\r\n  more\r\n"
    assert fields[1].value(raw) == b" 2\r\n  more\r\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.integers(0, 50), st.integers(0, 5000))
def test_rawcheck_never_raises(raw: bytes, max_headers: int, max_bytes: int) -> None:
    result = find_bare_line_endings(raw)
    assert result is None or isinstance(result, str)
    result = check_header_limits(raw, max_headers, max_bytes)
    assert result is None or isinstance(result, str)
    result = check_header_syntax(raw)
    assert result is None or isinstance(result, str)
    assert received_hops(raw) >= 0
    for field in header_fields(raw):
        assert 0 <= field.start < field.end <= len(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"Received: x", b"From: a@b.example", b" fold", b"\r\n", b"\n", b"\r", b":", b"x"]
        ),
        max_size=40,
    )
)
def test_rawcheck_never_raises_on_header_like_input(parts: list[bytes]) -> None:
    raw = b"\r\n".join(parts)
    find_bare_line_endings(raw)
    check_header_limits(raw, 5, 200)
    check_header_syntax(raw)
    received_hops(raw)


_HEADERISH = st.lists(
    st.sampled_from(
        [
            b"Received: x", b"received:y", b"X-Received: z",
            b"Authentication-Results: sms.localhost; x", b"AUTHENTICATION-RESULTS:other; y",
            b"From: a@b.example", b" fold", b"\t", b"\r\n", b"\n", b"\r", b":", b"x", b"",
        ]
    ),
    max_size=30,
).map(b"\r\n".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(_HEADERISH, st.binary(max_size=300)))
def test_shortcuts_answer_like_the_full_scans(raw: bytes) -> None:
    """The cheap pre-checks (counts, a substring test) never change an
    answer: compared with the regex and the full header split."""
    assert (find_bare_line_endings(raw) is None) == (_BARE_EOL.search(raw) is None)
    fields = header_fields(raw)
    assert received_hops(raw) == sum(1 for f in fields if f.is_named(b"Received"))
    for name in (b"Received", b"Authentication-Results", b"From"):
        if any(f.is_named(name) for f in fields):
            assert may_have_field(raw, name), (raw, name)
    stripped = strip_forged_authentication_results(raw, "sms.localhost")
    kept = [f for f in fields if not (f.is_named(b"Authentication-Results") and
            authserv_id_of(f.value(raw)) == "sms.localhost")]  # fmt: skip
    if len(kept) == len(fields):
        assert stripped == raw
    else:
        assert len(stripped) < len(raw)
