"""Compose the email that carries a phone's SMS answer back to the sender.

Pure functions, no I/O: the clock and the unique part of the Message-ID are
passed in, so the same inputs always give the same message.

The reply is an ordinary person-to-person message (RFC 5322): it comes From
``<E.164 digits>@<our domain>`` so that pressing Reply in the user's client
sends the next SMS, and it is threaded under the original email with
``In-Reply-To`` / ``References`` (RFC 5322 §3.6.4).  It deliberately carries
no ``Auto-Submitted`` header (RFC 3834): a human wrote it and the user must
be able to answer it.  Loop defence instead uses our own
:data:`ORIGIN_HEADER`, which the SMTP side looks for on inbound mail.

Everything that comes from outside (SMS text, the original subject, the
original Message-ID and References) is sanitised before it reaches a
header: control characters, CR/LF and Unicode line/paragraph separators
never get there, so a hostile SMS cannot inject headers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import phonenumbers

__all__ = [
    "MAX_REFERENCES",
    "ORIGIN_HEADER",
    "build_references",
    "compose_reply",
    "make_msgid",
    "message_to_bytes",
    "normalize_domain",
    "normalize_msgid",
    "parse_mailbox",
    "phone_address",
    "phone_display",
    "phone_local_part",
    "reply_body",
    "reply_subject",
    "sanitize_header_text",
    "set_text_body",
    "set_text_header",
]

ORIGIN_HEADER = "X-Mailsms-Origin"
"""Header stamped on every message mailsms generates, valued with our domain.

The SMTP side drops inbound mail carrying it with our own domain, which
breaks mail loops (e.g. a user forwarding a reply back to an SMS address)
without relying on ``Auto-Submitted``, which a person's reply must not carry.
"""

MAX_REFERENCES = 20
"""Cap on msg-ids in ``References``.  Long threads would otherwise grow the
header without bound; like common MUAs (and RFC 5537 §3.4.4 for netnews) we
keep the first (thread root) and the most recent ones."""

# Characters that must never reach a header: C0/C1 controls (incl. CR, LF,
# TAB, NUL), line/paragraph separators (``str.splitlines`` and some folding
# code treat them as line breaks), and bidi overrides/isolates that could
# visually disguise a subject or display name.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE_RUN = re.compile(r"\s+")
_ENCODED_WORD_BREAK = "=\u2060?"

# Reply prefixes used by common clients in various languages, optionally
# numbered ("Re[2]:", "Re(2):", "Re^2:"), possibly repeated ("Re: AW: Re:").
_REPLY_PREFIX = re.compile(
    r"^(?:\s*(?:re|aw|sv|vs|antw|atb|ref|rif|res|odp|ynt|vá|回复|回覆|答复|απ|отв)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*)+",
    re.IGNORECASE,
)

# dot-atom-text (RFC 5322 §3.2.3) for the unique left part of our Message-IDs.
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# What a msg-id from outside may contain once brackets are removed: visible
# ASCII except the bracket and whitespace characters that delimit msg-ids.
_MSGID_BODY = re.compile(r"^[!-;=?-~]+$")
_MAX_MSGID_LEN = 250


def _is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Zl", "Zp", "Cs"} or char in _BIDI_CONTROLS


def sanitize_header_text(value: str) -> str:
    """Make untrusted text safe for an unstructured header.

    Unsafe characters become spaces, whitespace runs collapse to one space
    and the ends are trimmed, so the result is a single line; encoded-word
    openers are defused so the text stays literal.
    """
    cleaned = "".join(" " if _is_unsafe(c) else c for c in value)
    cleaned = _WHITESPACE_RUN.sub(" ", cleaned).strip()
    # The header parser decodes RFC 2047 encoded-words ("=?utf-8?q?=0D?=")
    # on assignment, which would turn literal text back into controls; a
    # word joiner keeps the text literal and looks the same.
    return cleaned.replace("=?", _ENCODED_WORD_BREAK)


def set_text_header(message: EmailMessage, name: str, text: str) -> None:
    """Set an unstructured header (Subject) to already-sanitised ``text``.

    Non-ASCII text is RFC 2047-encoded here rather than by the policy: the
    stdlib folder drops the space between adjacent encoded-words when it
    wraps a long line (e.g. a long Cyrillic subject), so the recipient would
    see words run together.  The legacy encoder keeps spaces inside the
    encoded-words and the result is stored as is.
    """
    if text.isascii():
        message[name] = text
        return
    encoded = Header(text, charset="utf-8", header_name=name, maxlinelen=76).encode(linesep="\n")
    message.set_raw(name, encoded)


def _clean_body_text(value: str) -> str:
    # Lone surrogates (a JSON webhook can carry "\ud83d") cannot be encoded
    # to UTF-8; pair what pairs and turn the rest into U+FFFD.
    value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    # Keep line structure and tabs, drop other controls (NUL, ESC, ...).
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        c
        if c in "\n\t" or not (unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS)
        else "\ufffd"
        for c in value
    )


def normalize_domain(domain: str) -> str:
    """Return ``domain`` as a lower-case ASCII hostname (IDNA for Unicode).

    Raises ValueError when it is not a hostname: our domain is configuration,
    and a bad value must fail loudly rather than produce broken headers.
    """
    candidate = domain.strip().rstrip(".")
    try:
        ascii_domain = candidate.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"not a valid domain: {domain!r}") from exc
    if not _HOSTNAME.match(ascii_domain):
        raise ValueError(f"not a valid domain: {domain!r}")
    return ascii_domain


def _parse_phone(phone: str) -> phonenumbers.PhoneNumber:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not an E.164 phone number: {phone!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"not an E.164 phone number: {phone!r}")
    return number


def phone_display(phone: str) -> str:
    """``+14155551212`` -> ``+1 415-555-1212`` (phonenumbers INTERNATIONAL)."""
    international = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return str(phonenumbers.format_number(_parse_phone(phone), international))


def phone_local_part(phone: str) -> str:
    """``+14155551212`` -> ``14155551212``: E.164 digits, the address local part."""
    e164 = phonenumbers.format_number(_parse_phone(phone), phonenumbers.PhoneNumberFormat.E164)
    return str(e164).lstrip("+")


def phone_address(phone: str, domain: str) -> Address:
    """The mailbox a phone has on our domain, with its display name."""
    return Address(
        display_name=phone_display(phone),
        username=phone_local_part(phone),
        domain=normalize_domain(domain),
    )


def parse_mailbox(address: str) -> Address:
    """Parse a bare ``local@domain`` address from outside (the recipient).

    Raises ValueError on anything that is not a single plain addr-spec, so a
    crafted address can never add a header or a second recipient.
    """
    if any(_is_unsafe(c) for c in address) or not address.strip():
        raise ValueError(f"not a valid email address: {address!r}")
    try:
        parsed = Address(addr_spec=address.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a valid email address: {address!r}") from exc
    if not parsed.username or not parsed.domain or not parsed.username.isascii():
        # A non-ASCII local part needs SMTPUTF8 end to end (RFC 6531), which
        # we do not offer; an IDN domain is fine once in its ASCII form.
        raise ValueError(f"not a valid email address: {address!r}")
    return Address(username=parsed.username, domain=normalize_domain(parsed.domain))


def make_msgid(unique: str, domain: str) -> str:
    """``<unique@domain>``; ``unique`` comes from the caller (no randomness here)."""
    if not _DOT_ATOM.match(unique):
        raise ValueError(f"Message-ID token must be dot-atom text: {unique!r}")
    return f"<{unique}@{normalize_domain(domain)}>"


def normalize_msgid(value: str) -> str | None:
    """Return ``value`` as one ``<id>`` msg-id, or None if nothing usable is left.

    Accepts ids with or without angle brackets; drops whitespace, controls
    and anything outside visible ASCII, so an id taken from a hostile email
    can be placed in ``In-Reply-To`` / ``References`` safely.
    """
    core = "".join(c for c in value if "!" <= c <= "~" and c not in "<>")
    # Over-long ids are dropped: they would have to be folded mid-token.
    # "=?" would be decoded as an RFC 2047 encoded-word in these
    # unstructured headers: no real msg-id needs it.
    if not core or len(core) > _MAX_MSGID_LEN or "=?" in core or not _MSGID_BODY.match(core):
        return None
    return f"<{core}>"


def _split_msgids(values: Iterable[str]) -> list[str]:
    # Callers may hand over a raw References header as one item; msg-ids are
    # whitespace-separated, so split before normalising each.
    ids: list[str] = []
    for value in values:
        for token in re.split(r"[\s]+|(?<=>)(?=<)", value):
            normal = normalize_msgid(token)
            if normal is not None:
                ids.append(normal)
    return ids


def build_references(references: Sequence[str], original_message_id: str | None) -> list[str]:
    """The thread so far plus the original, deduplicated, order kept, capped."""
    ordered: list[str] = []
    seen: set[str] = set()
    extra = [original_message_id] if original_message_id else []
    for msgid in _split_msgids([*references, *extra]):
        if msgid not in seen:
            seen.add(msgid)
            ordered.append(msgid)
    if len(ordered) > MAX_REFERENCES:
        ordered = [ordered[0], *ordered[-(MAX_REFERENCES - 1) :]]
    return ordered


def reply_subject(original_subject: str | None, phone: str) -> str:
    """``Re: <subject>`` without stacking prefixes; a default when there is none."""
    subject = sanitize_header_text(original_subject or "")
    subject = _REPLY_PREFIX.sub("", subject).strip()
    if not subject:
        return f"SMS from {phone_display(phone)}"
    return f"Re: {subject}"


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time would be formatted as "-0000" (unknown zone); the
        # caller knows the zone, we must not guess it.
        raise ValueError(f"{name} must be timezone-aware")


def set_text_body(message: EmailMessage, text: str) -> None:
    """Set a UTF-8 text/plain body that survives any relay unchanged.

    Non-ASCII or long-lined text is sent quoted-printable rather than 8bit:
    a relay that downgrades 8bit for a non-8BITMIME hop would rewrite the
    body and break the DKIM signature (RFC 6376 §5.3).
    """
    if not text.endswith("\n"):
        text += "\n"
    plain = text.isascii() and all(len(line) <= 78 for line in text.splitlines())
    message.set_content(
        text, subtype="plain", charset="utf-8", cte="7bit" if plain else "quoted-printable"
    )


def reply_body(text: str, media_urls: Sequence[str]) -> str:
    """The SMS text, then the media links one per line."""
    body = _clean_body_text(text).rstrip("\n")
    urls = [u for u in (sanitize_header_text(_clean_body_text(url)) for url in media_urls) if u]
    if urls:
        listing = "\n".join(f"  {url}" for url in urls)
        body = f"{body}\n\nMedia:\n{listing}" if body else f"Media:\n{listing}"
    return body + "\n"


def compose_reply(
    *,
    phone: str,
    domain: str,
    to: str,
    original_subject: str | None,
    original_message_id: str | None,
    references: Sequence[str],
    text: str,
    media_urls: Sequence[str] = (),
    received_at: datetime,
    unique: str,
) -> EmailMessage:
    """Build the email carrying a phone's SMS answer to the original sender.

    :param phone: the phone that answered, E.164 (``+14155551212``).
    :param domain: our SMS domain (``sms.example.com``).
    :param to: the original sender's address (a bare addr-spec).
    :param original_subject: the original email's subject, or None.
    :param original_message_id: the original email's Message-ID (with or
        without angle brackets), or None if it had none.
    :param references: the thread's References so far (msg-ids; a raw
        header value as one item is accepted too).
    :param text: the SMS text.  :param media_urls: MMS media links.
    :param received_at: when the SMS arrived (aware); becomes ``Date``.
    :param unique: unique token for our ``Message-ID`` (dot-atom text).

    Raises ValueError for an invalid phone, domain, recipient or token.
    The message has no ``Auto-Submitted`` header (see module docstring).
    Serialise it with :func:`message_to_bytes` before signing/sending.
    """
    _require_aware(received_at, "received_at")
    ascii_domain = normalize_domain(domain)
    msg = EmailMessage(policy=policy.default)
    sender = phone_address(phone, ascii_domain)
    # Quoted display name, as users see it in the issue and in every client:
    # the phrase holds only digits, "+", "-" and spaces, so quoting is safe.
    msg["From"] = f'"{sender.display_name}" <{sender.addr_spec}>'
    msg["To"] = parse_mailbox(to)
    set_text_header(msg, "Subject", reply_subject(original_subject, phone))
    msg["Date"] = format_datetime(received_at)
    msg["Message-ID"] = make_msgid(unique, ascii_domain)
    parent = normalize_msgid(original_message_id) if original_message_id else None
    if parent is not None:
        msg["In-Reply-To"] = parent
    thread = build_references(references, parent)
    if thread:
        msg["References"] = " ".join(thread)
    msg[ORIGIN_HEADER] = ascii_domain
    set_text_body(msg, reply_body(text, media_urls))
    return msg


def message_to_bytes(message: EmailMessage) -> bytes:
    """Serialise for SMTP/DKIM: CRLF line ends, 7-bit-safe headers (RFC 5321 §2.3.8)."""
    return message.as_bytes(policy=policy.SMTP)
