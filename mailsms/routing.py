"""Routing decisions: which of our numbers an SMS is sent from.  Pure.

Replies must reach exactly one person, so a (number, phone) pair belongs to
one sender at a time (a *conversation*).  For a sender S texting phone P:

1. the number S already uses with P (sticky: the phone sees one number);
2. else S's own assigned number;
3. else a pool number on which no other sender has a conversation with P;
4. else, when every pool number is taken for P, the pool number whose
   conversation with P has been idle longest: S takes it over, and from then
   on P's replies on that number go to S (the most recent writer wins; the
   previous sender's conversation on that number ends);
5. else ``MAILSMS_DEFAULT_FROM``; else none (carriers that need a From then
   fail the SMS permanently with a clear error).

Among several free pool numbers the choice is stable per phone (a hash, not
a random pick), so repeated tests and restarts allocate alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PairUse:
    """An existing conversation of phone P: on ``number``, with ``sender``."""

    number: str
    sender: str
    updated_at: datetime


def _stable_pick(candidates: Sequence[str], phone: str) -> str:
    digest = hashlib.sha256(phone.encode("ascii", "replace")).digest()
    return candidates[int.from_bytes(digest[:4], "big") % len(candidates)]


def allocate_number(
    *,
    sender: str,
    phone: str,
    own: str | None,
    pool: Sequence[str],
    default_from: str | None,
    conversations: Sequence[PairUse],
) -> str | None:
    """The number ``sender`` texts ``phone`` from (see the module docstring)."""
    usable = set(pool) | ({own} if own else set())
    mine = [c for c in conversations if c.sender == sender and c.number in usable]
    if mine:
        return max(mine, key=lambda c: c.updated_at).number
    if own is not None:
        return own
    if pool:
        taken = {c.number: c for c in conversations if c.sender != sender}
        free = [n for n in pool if n not in taken]
        if free:
            return _stable_pick(free, phone)
        return min((taken[n] for n in pool), key=lambda c: (c.updated_at, c.number)).number
    return default_from
