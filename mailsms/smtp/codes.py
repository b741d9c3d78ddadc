"""SMTP reply codes (RFC 5321 section 4.2) with enhanced status codes
(RFC 3463, announced with ENHANCEDSTATUSCODES per RFC 2034).

Every reply the gateway writes is built from a named constant here, so the
wire vocabulary is reviewable in one place.  Sources of the less common ones:

- RFC 4954 (SMTP AUTH) section 6: ``530 5.7.0`` authentication required,
  ``535 5.7.8`` bad credentials, ``538 5.7.11`` encryption required for the
  mechanism, ``454 4.7.0`` temporary authentication failure.
- RFC 3207 (STARTTLS) section 4: ``530 5.7.0`` must issue STARTTLS first.
- RFC 7372 section 3.2: ``550 5.7.26`` multiple authentication checks failed
  (our DMARC-aligned proof of the From domain, RFC 7489).
- RFC 3463: ``4.7.5`` (temporary failure of the cryptographic check: its DNS
  lookups got no answer), ``4.7.1``/``5.7.1`` delivery not authorized
  (rate, quota, destination), ``5.6.0`` content refused, ``5.4.6`` routing
  loop detected (RFC 5321 section 6.3: too many Received hops).
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
DNS_TEMPORARY = Status(451, "4.7.5")  # the sender's DNS did not answer: retry
RATE_LIMITED = Status(451, "4.7.1")  # per-minute rate or per-phone throttle
AUTH_TEMPORARY = Status(454, "4.7.0")  # too many AUTH failures in one session

# 5xx: permanent
NOT_AUTHORIZED = Status(550, "5.7.1")  # relaying denied, sender not allowed
BAD_MAILBOX = Status(550, "5.1.1")  # the local part is not a phone number
CONTENT_REFUSED = Status(550, "5.6.0")  # nothing to text, unparsable content
MESSAGE_TOO_BIG = Status(552, "5.3.4")  # SIZE exceeded (RFC 1870)
TEXT_TOO_LONG = Status(550, "5.3.4")  # more SMS segments than allowed (length policy "refuse")
LINE_TOO_LONG = Status(500, "5.5.2")
BAD_SYNTAX = Status(500, "5.5.2")
NOT_PROVEN = Status(550, "5.7.26")  # From domain not proven (DMARC, RFC 7489)
AUTH_REQUIRED = Status(530, "5.7.0")  # RFC 4954: this sender must use AUTH
BAD_CREDENTIALS = Status(535, "5.7.8")
ENCRYPTION_REQUIRED = Status(538, "5.7.11")  # AUTH offered only under TLS
QUOTA_EXHAUSTED = Status(550, "5.7.1")  # daily quota: permanent for this message
DESTINATION_REFUSED = Status(550, "5.7.1")  # country or number type not allowed
ROUTING_LOOP = Status(554, "5.4.6")  # more Received hops than MAILSMS_MAX_HOPS

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
    (
        "530 Must issue a STARTTLS command first",
        AUTH_REQUIRED.reply("Must issue a STARTTLS command first (RFC 3207)"),
    ),
    ("503 Already authenticated", "503 5.5.1 Already authenticated"),
    ("501 Not enough value", "501 5.5.4 AUTH needs a mechanism"),
    ("501 Too many values", "501 5.5.4 Too many AUTH arguments"),
)
