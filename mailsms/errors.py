"""The failure taxonomy every boundary translates its errors into.

A failure is either *temporary* (retry with backoff until a deadline: a
timeout, a refused connection, HTTP 429/5xx, a locked database) or
*permanent* (stop, record the reason, tell the sender: an invalid number,
HTTP 4xx, a rejected credential).  Edges (carriers, mail transports, the
store) raise only these two, so the dispatcher and the SMTP handler never
need to know which library failed.
"""

from __future__ import annotations


class DeliveryFailure(Exception):
    """Base class: a side effect toward the outside did not happen.

    ``code`` is the remote party's own error code when it gave one (a
    carrier error number, an SMTP reply code), kept for the status history
    and for bounces.  The message never contains credentials.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


class TemporaryFailure(DeliveryFailure):
    """Worth retrying later; ``retry_after`` (seconds) when the peer said so."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentFailure(DeliveryFailure):
    """Retrying cannot help; the item ends as failed with this reason."""
