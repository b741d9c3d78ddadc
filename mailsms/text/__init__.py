"""The text engine: turns any email into the cheapest correct SMS (pure, no I/O).

Modules by role:

* ``mime``      email -> text: MIME walk, charsets, transfer encodings (RFC 2045/2047/5322)
* ``html``      HTML body -> readable text
* ``quotes``    removal of quoted replies, forwarded originals and signatures
* ``normalize`` whitespace and invisible characters
* ``gsm``       GSM 7-bit alphabet, encoding, segments (3GPP TS 23.038, TS 23.040)
* ``translit``  typographic characters -> GSM-7
* ``convert``   the pipeline and the subject/length policies
* ``preview``   JSON-able dry-run report and its human rendering
"""

from mailsms.text.convert import analyse, email_to_sms, text_to_sms
from mailsms.text.gsm import split_segments
from mailsms.text.model import (
    Conversion,
    EmptyMessage,
    Encoding,
    LengthPolicy,
    MessageTooLong,
    SmsPart,
    SubjectPolicy,
    TextError,
    TextOptions,
)
from mailsms.text.preview import format_preview, preview

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
    "analyse",
    "email_to_sms",
    "format_preview",
    "preview",
    "split_segments",
    "text_to_sms",
]
