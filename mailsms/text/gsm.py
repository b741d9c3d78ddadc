"""GSM 7-bit alphabet, encoding choice and segmentation (pure functions).

The alphabet is the default alphabet and its extension table of
3GPP TS 23.038 section 6.2.1 (no national language shift tables: most
carriers and handsets do not support them for outbound messages).  A text
is sent as GSM-7 only when every character is in one of the two tables;
otherwise the whole message is sent as UCS-2 (TS 23.038 section 6.2.3),
which in practice carriers transmit as UTF-16, so a character outside the
Basic Multilingual Plane (emoji) takes two code units.

Segmentation follows TS 23.040 section 9.2.3.24.1: a message that fits in
one PDU carries 160 septets or 70 UCS-2 code units; a concatenated message
loses 6 octets per part to the user data header, leaving 153 septets or 67
code units.  Handsets and SMSCs never split an escape sequence (extension
character) or a UTF-16 surrogate pair across two parts, so a part may end
one unit short.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# TS 23.038 6.2.1, the 128 positions of the default alphabet in code order
# (0x1B is the escape to the extension table and is not a character).
_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM_BASIC: Final[frozenset[str]] = frozenset(_BASIC_TABLE) - {"\x1b"}

# TS 23.038 6.2.1.1, extension table: each costs ESC + the character = 2 septets.
GSM_EXTENSION: Final[frozenset[str]] = frozenset("\f^{}\\[~]|€")

_GSM_ALL: Final[frozenset[str]] = GSM_BASIC | GSM_EXTENSION
# ASCII text (most mail) is checked without a regex scan: deleting the
# alphabet's ASCII characters from its bytes leaves nothing exactly when it
# is all GSM-7, and only the extension characters among them are wide.
_GSM_ASCII: Final = bytes(sorted(ord(ch) for ch in _GSM_ALL if ch.isascii()))
_EXTENSION_ASCII: Final = "".join(sorted(ch for ch in GSM_EXTENSION if ch.isascii()))
# Characters that force UCS-2; characters that take two units in each encoding.
_NON_GSM: Final = re.compile("[^" + "".join(map(re.escape, sorted(_GSM_ALL))) + "]")
_WIDE: Final[Mapping[Encoding, re.Pattern[str]]] = MappingProxyType({
    "GSM-7": re.compile("[" + "".join(map(re.escape, sorted(GSM_EXTENSION))) + "]"),
    "UCS-2": re.compile("[\U00010000-\U0010ffff]"),
})  # fmt: skip

SINGLE_GSM: Final = 160
MULTI_GSM: Final = 153
SINGLE_UCS2: Final = 70
MULTI_UCS2: Final = 67


def is_gsm_char(ch: str) -> bool:
    return ch in GSM_BASIC or ch in GSM_EXTENSION


def is_gsm(text: str) -> bool:
    """True when the whole text can be sent in the GSM 7-bit default alphabet."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _GSM_ASCII)
    return _NON_GSM.search(text) is None


def encoding_of(text: str) -> Encoding:
    return "GSM-7" if is_gsm(text) else "UCS-2"


def non_gsm_chars(text: str) -> tuple[str, ...]:
    """Distinct characters that force UCS-2, in order of first appearance."""
    if is_gsm(text):  # the common case, without a regex scan
        return ()
    return tuple(dict.fromkeys(_NON_GSM.findall(text)))


def char_cost(ch: str, encoding: Encoding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) one character takes."""
    if encoding == "GSM-7":
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def capacities(encoding: Encoding) -> tuple[int, int]:
    """(single-part, per-part-when-concatenated) capacity in units."""
    return (SINGLE_GSM, MULTI_GSM) if encoding == "GSM-7" else (SINGLE_UCS2, MULTI_UCS2)


def text_units(text: str, encoding: Encoding) -> int:
    return len(text) + sum(1 for _ in _WIDE[encoding].finditer(text))


@dataclass(slots=True)
class Packer:
    """Incremental segment counter: feed characters, read the segment count.

    Packing is greedy like a handset's: a concatenated part is filled up to
    its capacity and a character that does not fit whole (an escape pair, a
    surrogate pair) starts the next part.  Mutable, but only ever local.
    """

    encoding: Encoding
    total: int = 0  # units in the whole text so far
    parts: int = 0  # parts if the text is sent concatenated
    fill: int = 0  # units in the last concatenated part

    def add(self, ch: str) -> None:
        cost = char_cost(ch, self.encoding)
        _, multi = capacities(self.encoding)
        self.total += cost
        if self.parts == 0 or self.fill + cost > multi:
            self.parts += 1
            self.fill = cost
        else:
            self.fill += cost

    def add_all(self, text: Iterable[str]) -> None:
        for ch in text:
            self.add(ch)

    def copy(self) -> Packer:
        return Packer(self.encoding, self.total, self.parts, self.fill)

    @property
    def segments(self) -> int:
        single, _ = capacities(self.encoding)
        if self.total == 0:
            return 0
        return 1 if self.total <= single else self.parts


def _may_be_wide(text: str, encoding: Encoding) -> bool:
    """False when no character of the text takes two units (without a regex scan)."""
    if not text.isascii():
        return True
    return encoding == "GSM-7" and any(ch in text for ch in _EXTENSION_ASCII)


# Everything below works on a text's "layout": its length and the sorted
# positions of its two-unit characters (extension characters for GSM-7,
# characters outside the BMP for UCS-2), which are rare.  Units up to a
# position and the position where a unit budget runs out are then a
# bisection each, so counting, splitting and truncating cost one regex scan
# (in C) plus O(segments * log n) in Python, instead of Python work per
# character.  ``Packer`` stays the executable definition; the tests check
# these functions against it and against an encoder-based reference.


@dataclass(frozen=True, slots=True)
class _Layout:
    """Unit arithmetic on ``text[:size]`` in one encoding (costs are 1 or 2)."""

    size: int  # characters considered
    wide: list[int]  # sorted positions of the two-unit characters
    wide_ends: list[int]  # units up to and including each of them

    @classmethod
    def of(cls, text: str, encoding: Encoding, size: int | None = None) -> _Layout:
        head = text if size is None else text[:size]
        wide: list[int] = []
        if _may_be_wide(head, encoding):
            wide = [m.start() for m in _WIDE[encoding].finditer(head)]
        # The k-th wide character at position w ends after w + 1 characters
        # of which k + 1 are wide: w + k + 2 units.
        return cls(len(head), wide, [w + k + 2 for k, w in enumerate(wide)])

    @property
    def total(self) -> int:
        return self.size + len(self.wide)

    def units(self, end: int) -> int:
        """Units of the first ``end`` characters."""
        return end + bisect_left(self.wide, end)

    def end_within(self, budget: int) -> int:
        """Largest end such that the first ``end`` characters take at most ``budget`` units."""
        # Characters before the j-th wide one (0-based) that fit: j wide ones
        # fit entirely, so ``budget - j`` characters, but never past wide[j].
        j = bisect_right(self.wide_ends, budget)
        end = budget - j
        if j < len(self.wide):
            end = min(end, self.wide[j])
        return max(0, min(end, self.size))

    def part_starts(self, multi: int, limit: int) -> list[int]:
        """Start of each concatenated part under greedy packing (at most ``limit``)."""
        starts: list[int] = []
        start = 0
        while start < self.size and len(starts) < limit:
            starts.append(start)
            start = self.end_within(self.units(start) + multi)
        return starts

    def segments(self, encoding: Encoding) -> int:
        single, multi = capacities(encoding)
        total = self.total
        if total == 0:
            return 0
        if total <= single:
            return 1
        if not self.wide:
            return -(-total // multi)
        return len(self.part_starts(multi, total))


def count_segments(text: str, encoding: Encoding | None = None) -> int:
    """Number of SMS segments the text takes (0 for the empty text)."""
    encoding = encoding or encoding_of(text)
    return _Layout.of(text, encoding).segments(encoding)


def split_segments(text: str) -> list[str]:
    """The segments a carrier sends for ``text``; their concatenation is ``text``.

    The empty text has no segment.
    """
    if not text:
        return []
    encoding = encoding_of(text)
    single, multi = capacities(encoding)
    layout = _Layout.of(text, encoding)
    if layout.total <= single:
        return [text]
    starts = layout.part_starts(multi, layout.total)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def longest_fitting_prefix(
    text: str, encoding: Encoding, max_segments: int, suffix: str = ""
) -> int:
    """Length of the longest prefix p such that p + suffix fits in max_segments.

    Only prefixes entirely representable in ``encoding`` are considered (for
    GSM-7 the scan stops at the first character outside the alphabet).
    Returns -1 when not even the empty prefix plus the suffix fits.
    """
    single, multi = capacities(encoding)
    # Every character takes at least one unit: nothing longer can fit.
    size = min(len(text), max(single, max_segments * multi))
    if encoding == "GSM-7" and not is_gsm(text[:size]):
        stop = _NON_GSM.search(text, 0, size)
        assert stop is not None
        size = stop.start()
    layout = _Layout.of(text, encoding, size)
    suffix_costs = [char_cost(ch, encoding) for ch in suffix]
    if not layout.wide and sum(suffix_costs) == len(suffix) and max_segments >= 1:
        # Every character, the suffix's too, takes one unit: p + suffix fits
        # while it has at most one segment's or max_segments full parts'
        # units (what the bisection below finds, without its ~10 probes).
        capacity = max(single, max_segments * multi)
        return min(size, capacity - len(suffix)) if len(suffix) <= capacity else -1
    return _last_fitting_end(layout, encoding, max_segments, suffix_costs)


def _last_fitting_end(
    layout: _Layout, encoding: Encoding, max_segments: int, suffix_costs: list[int]
) -> int:
    """Largest end such that text[:end] + a suffix of these costs fits, or -1."""
    single, multi = capacities(encoding)
    starts = layout.part_starts(multi, max_segments + 1)
    suffix_units = sum(suffix_costs)

    def fits(end: int) -> bool:
        """Packer(encoding) fed text[:end] + suffix has at most max_segments segments."""
        units = layout.units(end)
        total = units + suffix_units
        if total <= single:  # zero or one segment
            return min(total, 1) <= max_segments
        # Greedy packing of a prefix is the prefix of the greedy packing;
        # past the parts computed the answer is "too many" anyway.
        parts = bisect_left(starts, end)
        fill = units - layout.units(starts[parts - 1]) if parts else 0
        for cost in suffix_costs:
            if parts == 0 or fill + cost > multi:
                parts += 1
                fill = cost
            else:
                fill += cost
        return parts <= max_segments

    if not fits(0):
        return -1
    # Fitting is monotone in the prefix length: bisect for the last fit.
    low, high = 0, layout.size
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
