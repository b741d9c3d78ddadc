"""SMTP reply codes (RFC 5321 section 4.2) with enhanced status codes
(RFC 3463, announced with ENHANCEDSTATUSCODES per RFC 2034).

Every reply the gateway writes is built from a named constant here, so the
wire vocabulary is reviewable in one place.
"""

from __future__ import annotations

from typing import NamedTuple


class Status(NamedTuple):
    code: int
    enhanced: str

    def reply(self, text: str) -> str:
        """``550 5.7.1 text`` on one line; CR/LF in ``text`` cannot split it."""
        clean = " ".join(text.split())
        return f"{self.code} {self.enhanced} {clean}"


# 2xx: accepted
SENDER_OK = Status(250, "2.1.0")
RECIPIENT_OK = Status(250, "2.1.5")
MESSAGE_ACCEPTED = Status(250, "2.0.0")

# 4xx: try again later
LOCAL_ERROR = Status(451, "4.3.0")  # an internal failure, nothing stored
TOO_MANY_RECIPIENTS = Status(452, "4.5.3")

# 5xx: permanent
NOT_AUTHORIZED = Status(550, "5.7.1")  # relaying denied, sender not allowed
BAD_MAILBOX = Status(550, "5.1.1")  # the local part is not a phone number
CONTENT_REFUSED = Status(550, "5.6.0")  # nothing to text, unparsable content
MESSAGE_TOO_BIG = Status(552, "5.3.4")  # SIZE exceeded; also too many segments
LINE_TOO_LONG = Status(500, "5.5.2")
BAD_SYNTAX = Status(500, "5.5.2")

# aiosmtpd writes a few replies itself, without enhanced codes.  These are
# rewritten on the way out (see smtp.server.GatewaySMTP.push) so clients
# always get one: reply prefix -> replacement.
LIBRARY_REPLIES: tuple[tuple[str, str], ...] = (
    ("552 Error: Too much mail data", MESSAGE_TOO_BIG.reply("Message too big for this gateway")),
    (
        "552 Error: message size exceeds fixed maximum message size",
        MESSAGE_TOO_BIG.reply("Message size exceeds the fixed maximum message size"),
    ),
    ("500 Line too long", LINE_TOO_LONG.reply("Line too long (RFC 5321 section 4.5.3.1.6)")),
    ("500 Command line too long", LINE_TOO_LONG.reply("Command line too long")),
)
