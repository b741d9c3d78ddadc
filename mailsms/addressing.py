"""Addressing: ``<number>@<domain>`` mailboxes to E.164 numbers and back.

Pure core, no I/O.  The local part of a recipient (RFC 5321 section 4.1.2)
is a phone number written the way people write them: ``+14155551212``,
``14155551212``, ``4155551212``, ``415-555-1212``, ``(415)555-1212``,
``+44...``, or with an international call prefix (``00`` almost everywhere,
``011`` from the North American plan).  ``phonenumbers`` does the parsing;
this module only decides which spellings to try and reports a reason when
none works.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

# Characters people put in numbers that are not digits: kept out of the
# number before the international-prefix check, ignored by phonenumbers.
_SEPARATORS = str.maketrans("", "", " -.()/_")


class AddressError(ValueError):
    """The address is not one of ours or not a phone number; ``reason`` is
    written for the person who sent the mail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ForeignDomain(AddressError):
    """The recipient's domain is not ours: we never relay."""


class InvalidNumber(AddressError):
    """The local part is not a valid phone number."""


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    """The address as given, for replies and logs."""
    e164: str
    region: str | None
    """ISO 3166 region of the number, when phonenumbers knows it."""


def split_address(address: str) -> tuple[str, str]:
    """Split ``local@domain`` at the last ``@``; the domain is lower-cased."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        raise InvalidNumber(f"{address!r} is not an address of the form number@domain")
    return local, domain.lower().rstrip(".")


def parse_number(text: str, default_region: str) -> phonenumbers.PhoneNumber:
    """Parse a phone number written by a person into a valid number.

    ``default_region`` applies to national spellings; ``00`` and, for
    regions whose international prefix is ``011``, ``011`` mean "an
    international number follows".
    """
    compact = text.strip().translate(_SEPARATORS)
    if not compact:
        raise InvalidNumber("the address has no phone number before the @")
    candidates: list[tuple[str, str | None]] = []
    if compact.startswith("+"):
        candidates.append((compact, None))
    else:
        if not compact.isdigit():
            raise InvalidNumber(f"{text!r} is not a phone number: only digits, +, -, . ( ) allowed")
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(default_region)
        idd = metadata.international_prefix if metadata is not None else None
        for prefix in ("00", "011"):
            # "011" is only an international prefix where the region uses it.
            usable = prefix == "00" or (idd is not None and idd == prefix)
            if usable and compact.startswith(prefix) and len(compact) > len(prefix) + 6:
                candidates.append(("+" + compact[len(prefix) :], None))
        candidates.append((compact, default_region))
        # A full international number typed without "+" (14155551212,
        # 447911123456) is the most common spelling in email addresses.
        candidates.append(("+" + compact, None))
    last_reason = f"{text!r} is not a valid phone number"
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except NumberParseException as exc:
            last_reason = f"{text!r} is not a phone number ({exc._msg})"
            continue
        if phonenumbers.is_valid_number(number):
            return number
    raise InvalidNumber(last_reason)


def to_e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def parse_recipient(address: str, our_domain: str, default_region: str) -> Recipient:
    """Turn ``415-555-1212@sms.example.com`` into a :class:`Recipient`.

    Raises :class:`ForeignDomain` when the domain is not ``our_domain`` and
    :class:`InvalidNumber` when the local part is not a valid number.
    """
    local, domain = split_address(address)
    if domain != our_domain.lower():
        raise ForeignDomain(
            f"relaying to {domain} is not allowed; this gateway serves {our_domain}"
        )
    number = parse_number(local, default_region)
    return Recipient(
        address=address,
        e164=to_e164(number),
        region=phonenumbers.region_code_for_number(number),
    )


def normalise_number(text: str, default_region: str) -> str:
    """A number typed by an admin (CLI, API) as E.164, or InvalidNumber."""
    return to_e164(parse_number(text, default_region))


def number_address(e164: str, domain: str) -> str:
    """The mailbox for a number: ``+14155551212`` -> ``14155551212@domain``.

    Digits only, so the address survives every mail client's reply button.
    """
    return f"{e164.lstrip('+')}@{domain}"


def display_number(e164: str) -> str:
    """``+14155551212`` -> ``+1 415-555-1212`` for people."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
