"""Value types and errors of the text engine (see ``mailsms.text``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from mailsms.text.gsm import Encoding

SubjectPolicy = Literal["ignore", "prepend", "fallback"]
LengthPolicy = Literal["truncate", "split", "refuse"]

__all__ = [
    "Conversion",
    "EmptyMessage",
    "Encoding",
    "LengthPolicy",
    "MessageTooLong",
    "SmsPart",
    "SubjectPolicy",
    "TextError",
    "TextOptions",
]


@dataclass(frozen=True, slots=True)
class TextOptions:
    """How an email or a text becomes SMS; validated on construction."""

    subject_policy: SubjectPolicy = "ignore"
    transliterate: bool = True
    max_segments: int = 6
    length_policy: LengthPolicy = "truncate"

    def __post_init__(self) -> None:
        if self.subject_policy not in get_args(SubjectPolicy):
            raise ValueError(f"unknown subject policy {self.subject_policy!r}")
        if self.length_policy not in get_args(LengthPolicy):
            raise ValueError(f"unknown length policy {self.length_policy!r}")
        if isinstance(self.max_segments, bool) or not isinstance(self.max_segments, int):
            raise TypeError("max_segments must be an int")
        if self.max_segments < 1:
            raise ValueError("max_segments must be at least 1")


@dataclass(frozen=True, slots=True)
class SmsPart:
    """One SMS to send (several only with length_policy="split")."""

    text: str
    encoding: Encoding
    segments: int


@dataclass(frozen=True, slots=True)
class Conversion:
    """The result of turning an email or a text into SMS."""

    messages: tuple[SmsPart, ...]  # at least one
    stripped: tuple[str, ...]  # what was removed: quote, signature, forward, forward-header
    attachments: tuple[str, ...]  # "name (type)" of every part not read
    ucs2_chars: tuple[str, ...]  # distinct characters forcing UCS-2, after transliteration
    transliterated: tuple[str, ...]  # distinct characters that were replaced
    truncated: bool


class TextError(Exception):
    """The message cannot be sent as SMS; ``reason`` is fit for an SMTP reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmptyMessage(TextError):
    """Nothing left to send."""


class MessageTooLong(TextError):
    """More segments than allowed under length_policy="refuse"."""

    def __init__(self, segments: int, limit: int) -> None:
        super().__init__(f"message needs {segments} SMS segments, the limit is {limit}")
        self.segments = segments
        self.limit = limit
