"""Policy decisions: who may send, and which mail must never become an SMS.

Pure core, no I/O: the store hands in the registered entries, this module
decides.  Keeping every sender decision here lets proof of the sender
(DKIM/SPF/DMARC, SMTP AUTH, trusted relays) grow in one place.

Registered entries are either an exact address (``alice@corp.example``) or a
whole domain written ``@corp.example``.  Address comparison follows
RFC 5321 section 2.4 in spirit: the domain is case-insensitive; the local
part is compared case-insensitively too because every real mailbox provider
treats it so and a forged case variant must not slip past the allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from email_validator import EmailNotValidError, validate_email

from mailsms.trust.dmarc import organizational_domain

# RFC 3834 section 5: any Auto-Submitted value other than "no" marks mail
# that was generated automatically.  Precedence is the older convention
# (RFC 2076) that mailing lists and vacation programs still set.
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list"})


# Free-mail providers: anyone can open an account there, so registering the
# whole domain (``@gmail.com``) would let the whole world text through us.
# Exact registrable domains, and brands registered under many TLDs
# (``gmx.de``, ``yandex.com.tr``, ``yahoo.co.uk``) matched by their first label.
FREEMAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com",
        "msn.com", "passport.com", "yahoo.com", "ymail.com", "rocketmail.com",
        "icloud.com", "me.com", "mac.com", "aol.com", "aim.com", "web.de",
        "freenet.de", "t-online.de", "mail.ru", "inbox.ru", "list.ru", "bk.ru",
        "rambler.ru", "ya.ru", "proton.me", "protonmail.com", "protonmail.ch",
        "pm.me", "zoho.com", "zohomail.com", "mail.com", "email.com", "gmx.com",
        "tutanota.com", "tutanota.de", "tuta.io", "tuta.com", "fastmail.com",
        "fastmail.fm", "hushmail.com", "qq.com", "163.com", "126.com", "yeah.net",
        "sina.com", "naver.com", "daum.net", "hanmail.net", "rediffmail.com",
        "libero.it", "virgilio.it", "orange.fr", "wanadoo.fr", "laposte.net",
        "free.fr", "sfr.fr", "seznam.cz", "wp.pl", "o2.pl", "interia.pl",
        "onet.pl", "abv.bg", "mailbox.org", "posteo.de", "posteo.net",
        "disroot.org", "cock.li", "guerrillamail.com", "mailinator.com",
        "yopmail.com", "10minutemail.com", "temp-mail.org",
    }
)  # fmt: skip
FREEMAIL_BRANDS = frozenset({"gmx", "yahoo", "yandex", "hotmail", "outlook", "live"})


def freemail_reason(domain: str) -> str | None:
    """Why ``domain`` must not be registered as a whole domain, or None."""
    registrable = organizational_domain(domain)
    brand = registrable.split(".", 1)[0]
    if registrable in FREEMAIL_DOMAINS or brand in FREEMAIL_BRANDS:
        return (
            f"@{domain} is a free-mail domain ({registrable}): anyone can get an address "
            "there, so it cannot be registered as a whole domain; register the exact "
            "addresses instead"
        )
    return None


class SenderError(ValueError):
    """An address cannot be registered; ``reason`` is shown to the admin."""


def normalise_sender_entry(entry: str, *, refuse_freemail: bool = True) -> str:
    """Validate and normalise an allow-list entry (address or ``@domain``).

    Uses email-validator for the syntax (and IDNA for the domain) without a
    DNS lookup: registering a sender must work offline.
    """
    entry = entry.strip()
    if entry.startswith("@"):
        try:
            checked = validate_email(f"postmaster{entry}", check_deliverability=False)
        except EmailNotValidError as exc:
            raise SenderError(f"{entry!r} is not a valid domain: {exc}") from None
        domain = checked.ascii_domain.lower()
        # Removing an old entry must stay possible, hence the switch.
        reason = freemail_reason(domain) if refuse_freemail else None
        if reason is not None:
            raise SenderError(reason)
        return "@" + domain
    try:
        checked = validate_email(entry, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SenderError(f"{entry!r} is not a valid email address: {exc}") from None
    local = checked.ascii_local_part or checked.local_part
    return f"{local.lower()}@{checked.ascii_domain.lower()}"


def address_key(address: str) -> str:
    """The comparison form of a mailbox: lower-cased, no angle brackets."""
    return address.strip().strip("<>").lower().rstrip(".")


def is_registered(address: str, entries: Collection[str]) -> bool:
    """True when ``address`` or its whole domain is in ``entries``."""
    key = address_key(address)
    _, at, domain = key.rpartition("@")
    if not at or not domain:
        return False
    return key in entries or f"@{domain}" in entries


def registered_entry(address: str, entries: Collection[str]) -> str | None:
    """The entry that admits ``address``: the exact one before the domain."""
    key = address_key(address)
    _, _, domain = key.rpartition("@")
    if key in entries:
        return key
    if f"@{domain}" in entries:
        return f"@{domain}"
    return None


# The plain shapes of a From field that most mail uses, in which no parser
# can see anything but one address: ``addr``, ``<addr>`` or ``Words <addr>``,
# with dot-atom local part and domain (RFC 5322 section 3.4.1), display-name
# words of atext, ASCII, no comments, quoted strings, folding or encoded
# words.  Anything else takes the full RFC 5322 parse.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
PLAIN_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
"""An addr-spec of two dot-atoms: no quoting, no literal, nothing to decode."""
_DISPLAY_NAME = rf"{_ATEXT}(?:[ \t]+{_ATEXT})*"
_PLAIN_FROM = re.compile(
    rf"[ \t]*(?:(?P<bare>{PLAIN_ADDR_SPEC})"
    rf"|(?:{_DISPLAY_NAME}[ \t]*)?<(?P<angle>{PLAIN_ADDR_SPEC})>)[ \t]*"
)


def plain_from_address(value: str) -> str | None:
    """The address of a From field value of one of the plain shapes above,
    else None (the caller then parses the field in full).  Agrees with
    ``email.policy.default`` wherever it answers (tests/trust)."""
    if "=?" in value:
        return None  # an encoded word in the display name: decode it properly
    match = _PLAIN_FROM.fullmatch(value)
    if match is None:
        return None
    return match.group("bare") or match.group("angle")


def header_from_address(msg: Message) -> tuple[str | None, str | None]:
    """The single author address of ``From:``; (None, reason) otherwise.

    RFC 5322 allows several authors, but a message that claims several (or
    none, or an unparsable one) cannot be attributed to one registered
    sender, so it is refused.
    """
    raw = [value for name, value in msg.raw_items() if name.lower() == "from"]
    if len(raw) == 1 and isinstance(raw[0], str):
        plain = plain_from_address(raw[0])
        if plain is not None:
            # The common case, without the header registry's full parse.
            return plain, None
    try:
        values = msg.get_all("From") or []
        if len(values) != 1:
            return None, "the message must have exactly one From header"
        structured = getattr(values[0], "addresses", None)
        if structured is not None:
            # policy.default parsed the header with the RFC 5322 grammar.
            addresses = [a.addr_spec for a in structured if a.addr_spec and a.addr_spec != "<>"]
        else:
            addresses = [addr for _, addr in getaddresses([str(values[0])]) if addr]
    except Exception:
        # The standard library's address parser can still raise on hostile
        # input (IndexError for "0@" in CPython 3.11): the sender's fault.
        return None, "the From header is malformed"
    if any(defect for defect in getattr(values[0], "defects", ())):
        return None, "the From header is malformed"
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None, "the From header must name exactly one address"
    return addresses[0], None


@dataclass(frozen=True, slots=True)
class SenderDecision:
    allowed: bool
    reason: str
    entry: str | None = None


def check_envelope_sender(mail_from: str, entries: Collection[str]) -> SenderDecision:
    """MAIL FROM must be a registered sender (the null path is handled by
    the caller: bounces are accepted and never texted)."""
    if is_registered(mail_from, entries):
        return SenderDecision(True, "registered", registered_entry(mail_from, entries))
    return SenderDecision(False, f"sender <{address_key(mail_from)}> is not registered to send SMS")


def check_author(from_address: str, entries: Collection[str]) -> SenderDecision:
    """The From header's address must be registered too: the envelope alone
    is trivially forged and is not what the recipient of a reply sees."""
    if is_registered(from_address, entries):
        return SenderDecision(True, "registered", registered_entry(from_address, entries))
    return SenderDecision(
        False, f"From address <{address_key(from_address)}> is not registered to send SMS"
    )


def auto_reply_reason(msg: Message) -> str | None:
    """Why this message was generated automatically, or None.

    Such mail (vacation replies, list traffic, bounces) must never reach a
    phone: it would text strangers and can loop between two gateways.
    """
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(msg.get("Precedence", "")).strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    return None
