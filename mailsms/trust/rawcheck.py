"""Hostile-input checks on raw DATA bytes, run before any parser sees them.

RFC 5321 §2.3.8 and RFC 5322 §2.1 allow CR and LF only together, as CRLF.
Different parsers disagree about a bare CR or bare LF (Python's ``email``
package treats each as a line break; aiosmtpd 1.4.6 hands a bare LF inside a
header to the handler untouched; DKIM canonicalisation treats it otherwise),
and every such disagreement is a smuggling or header-injection primitive
(``Subject: hi\\nBcc: x``, ``\\n.\\r\\n`` end-of-data tricks).  So we refuse
them outright instead of choosing an interpretation.

The header helpers here split the header section exactly once, the same way
for every caller (From extraction, Authentication-Results stripping, hop
counting), so two parts of mailsms cannot see two different header lists.

All functions are pure (no I/O, no logging) and must not raise on any input:
they are the first code to touch attacker-controlled bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "HeaderField",
    "check_header_limits",
    "check_header_syntax",
    "find_bare_line_endings",
    "header_fields",
    "may_have_field",
    "received_hops",
]

# A bare CR (not followed by LF) or a bare LF (not preceded by CR).
_BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")
# Line terminators as the most permissive parser in play (Python's
# feedparser) sees them; used for counting so we never under-count.
_ANY_EOL = re.compile(rb"\r\n|\r|\n")
# RFC 5322 §2.2 field name: printable US-ASCII except ':', then ':'.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+(?=:)")


@dataclass(frozen=True)
class HeaderField:
    """One header field as it sits in the raw message.

    ``raw[start:end]`` is the complete field including folded continuation
    lines and the final line terminator, so a caller can drop or keep it
    without re-serialising anything else.
    """

    name: bytes  # as written (case preserved), without the colon
    start: int
    end: int

    def value(self, raw: bytes) -> bytes:
        """The field body after the colon, still folded."""
        return raw[self.start + len(self.name) + 1 : self.end]

    def is_named(self, name: bytes) -> bool:
        return self.name.lower() == name.lower()


def find_bare_line_endings(raw: bytes) -> str | None:
    """Return a reason if ``raw`` contains a bare CR or bare LF, else None."""
    pairs = raw.count(b"\r\n")
    if raw.count(b"\r") == pairs and raw.count(b"\n") == pairs:
        # Every CR and every LF belongs to a CRLF: nothing to locate (three
        # C-speed counts instead of the regex's walk over the message).
        return None
    match = _BARE_EOL.search(raw)
    if match is None:
        return None
    kind = "CR" if match.group() == b"\r" else "LF"
    return f"bare {kind} at byte {match.start()}: lines must end with CRLF"


def _lines(raw: bytes, limit: int) -> Iterator[tuple[int, int, int]]:
    """Yield (start, content_end, end) for lines in ``raw[:limit]``."""
    pos = 0
    for match in _ANY_EOL.finditer(raw, 0, limit):
        yield pos, match.start(), match.end()
        pos = match.end()
    if pos < limit:
        yield pos, limit, limit


def _header_lines(raw: bytes, limit: int) -> Iterator[tuple[int, int, int]]:
    """Lines of the header section (stops at the first empty line)."""
    for start, content_end, end in _lines(raw, limit):
        if start == content_end:
            return
        yield start, content_end, end


def header_fields(raw: bytes) -> list[HeaderField]:
    """The header fields of ``raw``, in order.

    Lines that are neither a ``name:`` field start nor a continuation are
    skipped here; :func:`check_header_syntax` reports them.
    """
    fields: list[HeaderField] = []
    current: tuple[bytes, int] | None = None
    last_end = 0
    for start, _content_end, end in _header_lines(raw, len(raw)):
        first = raw[start : start + 1]
        if first in (b" ", b"\t"):
            last_end = end  # continuation of the current field
            continue
        if current is not None:
            fields.append(HeaderField(current[0], current[1], last_end))
            current = None
        match = _FIELD_NAME.match(raw, start)
        if match is not None:
            current = (match.group(), start)
        last_end = end
    if current is not None:
        fields.append(HeaderField(current[0], current[1], last_end))
    return fields


def check_header_syntax(raw: bytes) -> str | None:
    """Reason if a header line is neither a valid field start nor a fold.

    Parsers disagree about such lines (dkimpy skips ``From `` lines, Python's
    parser may start the body early), which would let a From or Subject hide
    from one of them.
    """
    seen_field = False
    for number, (start, content_end, _end) in enumerate(_header_lines(raw, len(raw)), 1):
        first = raw[start : start + 1]
        if first in (b" ", b"\t"):
            if not seen_field:
                return f"header line {number} is a continuation with no field before it"
            continue
        if _FIELD_NAME.match(raw, start, content_end) is None:
            return f"header line {number} is not a valid header field"
        seen_field = True
    return None


def check_header_limits(raw: bytes, max_headers: int, max_header_bytes: int) -> str | None:
    """Reason if the header section has more than ``max_headers`` fields or
    more than ``max_header_bytes`` bytes, else None.

    Only the first ``max_header_bytes`` (+ terminator) bytes are scanned, so
    the cost is bounded by the limit, not by the message size.
    """
    count = 0
    scan_limit = min(len(raw), max(max_header_bytes, 0) + 4)
    section_end: int | None = None
    for start, content_end, end in _lines(raw, scan_limit):
        if start == content_end:
            section_end = start  # the empty line that ends the header section
            break
        if content_end == scan_limit and end == scan_limit and scan_limit < len(raw):
            break  # line continues past what we scanned
        if raw[start : start + 1] not in (b" ", b"\t"):
            count += 1
            if count > max_headers:
                return f"too many header fields (more than {max_headers})"
    else:
        if scan_limit == len(raw):
            section_end = len(raw)  # no body at all: everything is header
    if section_end is None or section_end > max_header_bytes:
        return f"header section larger than {max_header_bytes} bytes"
    return None


def received_hops(raw: bytes) -> int:
    """Number of ``Received`` header fields (RFC 5321 §6.3 loop detection)."""
    if not may_have_field(raw, b"Received"):
        return 0
    return sum(1 for field in header_fields(raw) if field.is_named(b"Received"))


def may_have_field(raw: bytes, name: bytes) -> bool:
    """False only when ``raw`` can have no header field called ``name``: a
    cheap test before :func:`header_fields` splits the whole section.

    A field starts with its name and a colon, all inside the header
    section, and that section ends at or before the first CRLF CRLF
    (wherever ``_lines`` splits, an empty line begins there at the latest),
    so searching up to there misses nothing.
    """
    end = raw.find(b"\r\n\r\n")
    section = raw if end < 0 else raw[: end + 2]
    return name.lower() + b":" in section.lower()
