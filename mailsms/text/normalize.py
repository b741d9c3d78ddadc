"""Whitespace and invisible-character normalisation of extracted text.

Every character in an SMS costs money, and a single invisible character
outside the GSM 7-bit alphabet (3GPP TS 23.038) forces the whole message to
UCS-2.  So: Unicode NFC (a decomposed é becomes the GSM-7 é), CR LF to LF,
invisible format characters dropped, trailing spaces removed, runs of blank
lines collapsed to one, single line breaks kept.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Soft hyphen, zero-width space, word joiner, BOM, combining grapheme joiner.
# ZWJ (U+200D) and variation selectors are kept: they are part of emoji.
_INVISIBLE: Final = re.compile("[\u00ad\u200b\u2060\ufeff\u034f]")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_BLANK_RUN: Final = re.compile(r"\n{3,}")
_SPACE_RUN: Final = re.compile(r"[ \t]{2,}")


def normalize_text(text: str) -> str:
    """Normalise line endings, invisible characters and blank lines."""
    # ASCII text (most mail) has no surrogates or invisible characters and
    # is NFC already: it skips those scans.
    ascii_only = text.isascii()
    if not ascii_only:
        text = _LONE_SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not ascii_only:
        text = _INVISIBLE.sub("", text)
        text = unicodedata.normalize("NFC", text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    if "\n\n\n" in text:  # the regex scan costs more than the rest
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip("\n").strip()


def collapse_spaces(line: str) -> str:
    """Collapse runs of spaces/tabs inside a line (used for HTML output)."""
    return _SPACE_RUN.sub(" ", line)
