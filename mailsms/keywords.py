"""Opt-out and help keywords in inbound SMS.  Pure.

The keyword sets follow the US carriers' and CTIA's messaging principles
(the same words Twilio's Advanced Opt-Out recognises): the whole message,
ignoring case and surrounding whitespace and punctuation, must be the
keyword; "stop by at 5" is a message, not an opt-out.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType


class Keyword(Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"


_WORDS = MappingProxyType(
    {
        **dict.fromkeys(
            ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
            Keyword.STOP,
        ),
        **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.START),
        **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
    }
)
KEYWORDS = frozenset(_WORDS)


def classify(text: str) -> tuple[Keyword, str] | None:
    """(kind, the word as matched) when ``text`` is a keyword, else None."""
    word = text.strip().strip(".!?,;:'\"").strip().upper()
    kind = _WORDS.get(word)
    return (kind, word) if kind is not None else None
