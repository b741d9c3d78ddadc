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

from collections.abc import Iterable
from dataclasses import dataclass
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

SINGLE_GSM: Final = 160
MULTI_GSM: Final = 153
SINGLE_UCS2: Final = 70
MULTI_UCS2: Final = 67


def is_gsm_char(ch: str) -> bool:
    return ch in GSM_BASIC or ch in GSM_EXTENSION


def is_gsm(text: str) -> bool:
    """True when the whole text can be sent in the GSM 7-bit default alphabet."""
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def encoding_of(text: str) -> Encoding:
    return "GSM-7" if is_gsm(text) else "UCS-2"


def non_gsm_chars(text: str) -> tuple[str, ...]:
    """Distinct characters that force UCS-2, in order of first appearance."""
    return tuple(dict.fromkeys(ch for ch in text if not is_gsm_char(ch)))


def char_cost(ch: str, encoding: Encoding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) one character takes."""
    if encoding == "GSM-7":
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def capacities(encoding: Encoding) -> tuple[int, int]:
    """(single-part, per-part-when-concatenated) capacity in units."""
    return (SINGLE_GSM, MULTI_GSM) if encoding == "GSM-7" else (SINGLE_UCS2, MULTI_UCS2)


def text_units(text: str, encoding: Encoding) -> int:
    return sum(char_cost(ch, encoding) for ch in text)


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


def count_segments(text: str, encoding: Encoding | None = None) -> int:
    """Number of SMS segments the text takes (0 for the empty text)."""
    packer = Packer(encoding or encoding_of(text))
    packer.add_all(text)
    return packer.segments


def split_segments(text: str) -> list[str]:
    """The segments a carrier sends for ``text``; their concatenation is ``text``.

    The empty text has no segment.
    """
    if not text:
        return []
    encoding = encoding_of(text)
    single, multi = capacities(encoding)
    if text_units(text, encoding) <= single:
        return [text]
    segments: list[str] = []
    start = 0
    fill = 0
    for index, ch in enumerate(text):
        cost = char_cost(ch, encoding)
        if fill + cost > multi:
            segments.append(text[start:index])
            start, fill = index, 0
        fill += cost
    segments.append(text[start:])
    return segments


def longest_fitting_prefix(
    text: str, encoding: Encoding, max_segments: int, suffix: str = ""
) -> int:
    """Length of the longest prefix p such that p + suffix fits in max_segments.

    Only prefixes entirely representable in ``encoding`` are considered (for
    GSM-7 the scan stops at the first character outside the alphabet).
    Returns -1 when not even the empty prefix plus the suffix fits.
    """
    packer = Packer(encoding)

    def fits(state: Packer) -> bool:
        trial = state.copy()
        trial.add_all(suffix)
        return trial.segments <= max_segments

    if not fits(packer):
        return -1
    best = 0
    for index, ch in enumerate(text):
        if encoding == "GSM-7" and not is_gsm_char(ch):
            break
        packer.add(ch)
        # Fitting is monotone in the prefix length, so stop at the first miss.
        if not fits(packer):
            break
        best = index + 1
    return best
