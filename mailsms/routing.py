"""Routing decisions: which of our numbers an SMS is sent from.  Pure.

Order: the number assigned to the sender's entry; else a number from the
shared pool; else ``MAILSMS_DEFAULT_FROM``; else none (carriers that need a
From then fail the SMS permanently with a clear error).

The pool pick is stable per destination phone (a hash of the number, not a
random choice), so one phone keeps seeing the same sender number from one
gateway as long as the pool does not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def choose_from_number(
    own: str | None, pool: Sequence[str], default_from: str | None, to_number: str
) -> str | None:
    if own is not None:
        return own
    if pool:
        digest = hashlib.sha256(to_number.encode("ascii", "replace")).digest()
        return pool[int.from_bytes(digest[:4], "big") % len(pool)]
    return default_from
