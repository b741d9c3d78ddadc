"""Transliteration of typographic characters into the GSM 7-bit alphabet.

A single curly apostrophe pasted from a word processor would otherwise
switch a whole message to UCS-2 (3GPP TS 23.038 section 6.2.3) and cut the
capacity of each segment from 160 to 70 characters.  We replace only
characters that have a faithful GSM-7 rendering: typographic punctuation
and spaces, and Latin letters whose diacritic is simply dropped.  Real
non-Latin text (Cyrillic, Arabic, CJK, lowercase Greek, emoji) is never
touched: if any such character is present the message must be UCS-2 anyway,
and UCS-2 carries the original characters faithfully, so nothing at all is
replaced in that case.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from mailsms.text.gsm import count_segments, is_gsm, is_gsm_char

_TABLE: Final[dict[str, str]] = {
    # Quotation marks and apostrophes.
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "‹": "'", "›": "'",
    "`": "'", "´": "'", "ʼ": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
    # Dashes, hyphens and minus.
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    # Ellipsis, bullets, misc punctuation.
    "…": "...", "•": "-", "‣": "-", "◦": "-", "∙": "-", "·": ".",
    "ˆ": "^", "˜": "~", "×": "x", "÷": "/", "⁄": "/",
    "™": "TM", "©": "(c)", "®": "(R)",
    # Spaces (no-break, thin, en/em, narrow no-break, ideographic) and tab.
    "\t": " ", "\u00a0": " ", "\u1680": " ", "\u2000": " ", "\u2001": " ", "\u2002": " ",
    "\u2003": " ", "\u2004": " ", "\u2005": " ", "\u2006": " ", "\u2007": " ",
    "\u2008": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u205f": " ",
    "\u3000": " ", "\u2028": "\n", "\u2029": "\n",
    # Latin letters NFD does not decompose.
    "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d",
    "Ð": "D", "þ": "th", "Þ": "Th", "ħ": "h", "Ħ": "H", "ı": "i", "ŀ": "l",
    "Ŀ": "L", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
    # Uppercase Greek letters that are glyph-identical to Latin capitals; the
    # others (Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ) are already in GSM-7.  This is how Greek
    # handsets send Greek in GSM-7.
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
TABLE: Final[Mapping[str, str]] = MappingProxyType(_TABLE)
del _TABLE


def replacement(ch: str) -> str | None:
    """The GSM-7 string that faithfully stands for ``ch``, or None."""
    if is_gsm_char(ch):
        return ch
    mapped = TABLE.get(ch)
    if mapped is not None:
        return mapped
    # Latin letter with diacritics: drop the combining marks (é is in GSM-7
    # already, ê becomes e, Š becomes S).  Only for letters from the Latin
    # blocks so that, e.g., Cyrillic й never becomes и.
    if ch.isalpha() and "LATIN" in unicodedata.name(ch, ""):
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base and is_gsm(base):
            return base
    return None


def transliterate(text: str) -> tuple[str, tuple[str, ...]]:
    """Return (text, replaced characters).

    The text is returned unchanged (and nothing reported) when it already is
    GSM-7, when any character has no faithful replacement, or when the
    replacement would not save segments (three dots for one ellipsis can cost
    more than UCS-2 in a message made mostly of ellipses).
    """
    if is_gsm(text):
        return text, ()
    out: list[str] = []
    replaced: dict[str, None] = {}
    for ch in text:
        rep = replacement(ch)
        if rep is None:
            return text, ()
        if rep != ch:
            replaced[ch] = None
        out.append(rep)
    result = "".join(out)
    if count_segments(result, "GSM-7") > count_segments(text, "UCS-2"):
        return text, ()
    return result, tuple(replaced)
