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

from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from email_validator import EmailNotValidError, validate_email

# RFC 3834 section 5: any Auto-Submitted value other than "no" marks mail
# that was generated automatically.  Precedence is the older convention
# (RFC 2076) that mailing lists and vacation programs still set.
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list"})


class SenderError(ValueError):
    """An address cannot be registered; ``reason`` is shown to the admin."""


def normalise_sender_entry(entry: str) -> str:
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
        return "@" + checked.ascii_domain.lower()
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


def header_from_address(msg: Message) -> tuple[str | None, str | None]:
    """The single author address of ``From:``; (None, reason) otherwise.

    RFC 5322 allows several authors, but a message that claims several (or
    none, or an unparsable one) cannot be attributed to one registered
    sender, so it is refused.
    """
    values = msg.get_all("From") or []
    if len(values) != 1:
        return None, "the message must have exactly one From header"
    structured = getattr(values[0], "addresses", None)
    if structured is not None:
        # policy.default parsed the header with the RFC 5322 grammar.
        addresses = [a.addr_spec for a in structured if a.addr_spec and a.addr_spec != "<>"]
    else:
        addresses = [addr for _, addr in getaddresses([str(values[0])]) if addr]
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
