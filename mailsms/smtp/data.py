"""Reading the message text of the SMTP DATA command (RFC 5321 section 3.3
and 4.1.1.4): the lines up to the one holding only ".", with the
transparency dots removed (section 4.5.2).

aiosmtpd reads the text a line at a time, a coroutine call and a dozen
Python statements per line: almost a tenth of the CPU the gateway spends
accepting a 1 KiB mail (make bench).  :func:`read_message` finds the end
of the text with one search of the stream instead, and falls back to the
same line-at-a-time reading when that search cannot be used (the text
starts with a dot or a CR, or is longer than ``size_limit``).  For that
search the stream's buffer may hold the whole text, up to ``size_limit``
and one read from the socket more, as aiosmtpd's list of lines would.
The results are aiosmtpd's, including its refusals
(tests/core/test_smtp_data.py checks them against aiosmtpd's own
``smtp_DATA``):

- a line longer than ``line_limit`` octets with its CRLF (1001 in aiosmtpd,
  RFC 5321 section 4.5.3.1.6) means ``500 Line too long``;
- more than ``size_limit`` octets of text (lines with their CRLF, dots
  included) means ``552 Too much mail data`` (RFC 1870);

whichever comes first in the text; either way the whole text is read, up
to its end, before the reply, and nothing of it is kept.  As in aiosmtpd,
only CRLF ends a line: a bare CR or LF is part of the line it is in, so the
end of the text is ``CRLF . CRLF`` and nothing else (the SMTP smuggling
fixes of aiosmtpd 1.4.5).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CRLF = b"\r\n"
END = b"\r\n.\r\n"
"""The end of the text: the CRLF of its last line, then the line "."."""
LAST_LINE = b".\r\n"

LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"
"""aiosmtpd's own replies, word for word: GatewaySMTP.push gives them their
enhanced status codes as it does when aiosmtpd sends them."""


@dataclass(frozen=True, slots=True)
class Text:
    """What the client sent after the 354: the message, or the refusal."""

    content: bytes = b""
    refusal: str | None = None


async def read_message(reader: asyncio.StreamReader, *, size_limit: int, line_limit: int) -> Text:
    """Read the text of one DATA command from ``reader``, which stands at
    the start of its first line; leave ``reader`` after its last line (the
    next command, if the client sent one already, stays unread)."""
    # Any line may be the last one, ".", including the first, where there
    # is no CRLF before it to search for: a first byte that could begin
    # "." or an empty line (whose CRLF the search would need) sends the
    # text a line at a time.
    first = await reader.readexactly(1)
    if first in (b".", b"\r"):
        return await _line_by_line(reader, first, size_limit, line_limit)
    # StreamReader.readuntil gives up, leaving everything unread, when the
    # separator is not within the reader's limit; aiosmtpd sets that limit
    # to the longest line.  For this one search it is the longest text.
    # That limit is a private attribute (CPython 3.8 to 3.14): without it,
    # no fast path.
    state = vars(reader)
    limit = state.get("_limit")
    if not isinstance(limit, int):
        return await _line_by_line(reader, first, size_limit, line_limit)
    state["_limit"] = size_limit + len(END)
    try:
        block: bytes | None = await reader.readuntil(END)
    except asyncio.LimitOverrunError:
        block = None
    finally:
        state["_limit"] = limit
    if block is None:
        # Longer than the size limit: read to its end, keeping nothing.
        return await _line_by_line(reader, first, size_limit, line_limit)
    text = first + block[: -len(LAST_LINE)]  # every line with its CRLF
    if len(text) > size_limit or _longest_line(text) > line_limit:
        return Text(refusal=_first_refusal(text, size_limit, line_limit))
    # RFC 5321 section 4.5.2: a line that begins with "." loses that dot.
    # The first line does not begin with one (see above).
    return Text(text.replace(b"\r\n.", CRLF))


def _longest_line(text: bytes) -> int:
    """Octets of the longest line of ``text`` (lines end with CRLF), CRLF included."""
    return max(map(len, text.split(CRLF))) + len(CRLF)


def _first_refusal(text: bytes, size_limit: int, line_limit: int) -> str:
    """The refusal aiosmtpd reaches first, reading ``text`` line by line."""
    seen = 0
    for line in text.split(CRLF)[:-1]:
        refusal = _refusal(line + CRLF, seen, size_limit, line_limit)
        if refusal is not None:
            return refusal
        seen += len(line) + len(CRLF)
    raise AssertionError("no line of the text breaks a limit")


def _refusal(line: bytes, seen: int, size_limit: int, line_limit: int) -> str | None:
    """What aiosmtpd makes of ``line`` (with its CRLF) after ``seen``
    octets of text, in its order: a line whose CRLF is further than its
    reader's limit (``line_limit``) is refused as it is read, before it is
    counted; then the size, then the length with the CRLF."""
    if len(line) - len(CRLF) > line_limit:
        return LINE_TOO_LONG
    if seen + len(line) > size_limit:
        return TOO_MUCH_DATA
    if len(line) > line_limit:
        return LINE_TOO_LONG
    return None


async def _line_by_line(
    reader: asyncio.StreamReader, start: bytes, size_limit: int, line_limit: int
) -> Text:
    """aiosmtpd's reading, a line at a time; ``start``: the octets of the
    first line already read."""
    lines: list[bytes] = []
    seen = 0
    refusal: str | None = None
    partial = start  # what is read of the current line
    while True:
        # A CR already read may be the first half of the line's CRLF: then
        # the line may end at the next LF.
        separator = b"\n" if partial.endswith(b"\r") else CRLF
        try:
            partial += await reader.readuntil(separator)
        except asyncio.LimitOverrunError as exc:
            # Longer than the reader's limit (aiosmtpd's longest line): drop
            # what the reader holds and go on to this line's end.
            dropped = await reader.read(exc.consumed)
            refusal = refusal or LINE_TOO_LONG
            lines.clear()
            partial = _DROPPED + (b"\r" if dropped.endswith(b"\r") else b"")
            continue
        if not partial.endswith(CRLF):
            continue  # a bare LF, inside the line
        line, partial = partial, b""
        if line == LAST_LINE:
            break
        refusal = refusal or _refusal(line, seen, size_limit, line_limit)
        seen += len(line)
        if refusal is None:
            lines.append(line[1:] if line.startswith(b".") else line)
        else:
            lines.clear()  # nothing of a refused text is kept
    if refusal is not None:
        return Text(refusal=refusal)
    return Text(b"".join(lines))


_DROPPED = b"\0"
"""Stands for the dropped start of an over-long line: not empty, so the
rest of that line is never taken for the last line, "."."""
