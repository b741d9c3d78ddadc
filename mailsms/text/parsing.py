"""Raw RFC 5322 bytes -> ``EmailMessage``, with ``email.policy.default``'s
semantics (RFC 5322 header grammar, RFC 2047 decoding, RFC 2045-2049 MIME).

One cost is taken out.  For every header it reads, the standard library's
``HeaderRegistry`` builds a brand-new class (``type(...)`` of the header's
kind and ``BaseHeader``), and class creation is the most expensive step of
reading a short header: it showed up as a tenth of the gateway's accept CPU.
The classes it builds for one kind are interchangeable (no per-class state),
so :class:`_SharedClassRegistry` builds each kind once and reuses it.  The
parse, the values and the defects are the standard library's own.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser

__all__ = ["PARSE_POLICY", "parse_message"]


class _SharedClassRegistry(HeaderRegistry):
    """``HeaderRegistry`` that builds each header class once.

    The memo is keyed by the registry's class for the name (a handful of
    kinds: address, date, unstructured, ...), so it stays that small
    whatever header names a message invents.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        built = self._built.get(kind)
        if built is None:
            built = self._built[kind] = super().__getitem__(name)
        return built


# Policies are immutable; only the registry's memo of classes fills up (at
# most one entry per header kind), so one shared instance is safe.
PARSE_POLICY = policy.default.clone(header_factory=_SharedClassRegistry())


def parse_message(raw: bytes) -> EmailMessage:
    """Parse a whole message as ``email.policy.default`` would."""
    msg = BytesParser(_class=EmailMessage, policy=PARSE_POLICY).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg
