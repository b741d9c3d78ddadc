"""Outbound email: compose replies and bounces, sign them, deliver them.

* :mod:`~mailsms.mail.compose` -- the email carrying an SMS answer back to
  the sender, threaded under the original (RFC 5322); pure.
* :mod:`~mailsms.mail.dsn` -- the bounce for a failed SMS (RFC 3464, RFC
  3834); pure.
* :mod:`~mailsms.mail.dkim` -- DKIM signing and key generation (RFC 6376).
* :mod:`~mailsms.mail.transport` -- deliver once over SMTP (RFC 5321) or
  into a Maildir, classifying failures as temporary or permanent.

Typical use: ``compose_reply(...)`` -> ``message_to_bytes`` ->
``signer.sign`` -> ``await transport.deliver(envelope_from, [to], data)``,
with ``envelope_from=""`` (``DSN_ENVELOPE_FROM``) for a bounce.
"""

from mailsms.mail.compose import (
    ORIGIN_HEADER,
    compose_reply,
    message_to_bytes,
    phone_display,
    phone_local_part,
)
from mailsms.mail.dkim import DkimKeyError, DkimSigner, generate_key, load_signer
from mailsms.mail.dsn import DSN_ENVELOPE_FROM, DsnReason, compose_dsn, dsn_status
from mailsms.mail.transport import (
    TRANSPORTS,
    MaildirTransport,
    MailTransport,
    PartialDeliveryFailure,
    SmtpRelayTransport,
    TransportConfig,
    make_transport,
)

__all__ = [
    "DSN_ENVELOPE_FROM",
    "ORIGIN_HEADER",
    "TRANSPORTS",
    "DkimKeyError",
    "DkimSigner",
    "DsnReason",
    "MailTransport",
    "MaildirTransport",
    "PartialDeliveryFailure",
    "SmtpRelayTransport",
    "TransportConfig",
    "compose_dsn",
    "compose_reply",
    "dsn_status",
    "generate_key",
    "load_signer",
    "make_transport",
    "message_to_bytes",
    "phone_display",
    "phone_local_part",
]
