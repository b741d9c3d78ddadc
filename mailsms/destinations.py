"""Destination policy: which phones an SMS may go to (pure core).

An email-to-SMS gateway with a leaked sender credential is a toll-fraud
tool: premium-rate and shared-cost numbers earn the attacker money, and
foreign destinations cost many times a domestic one.  So the destination's
country must be allowed (``MAILSMS_ALLOWED_COUNTRIES``, the default region
only by default) and its number type (as libphonenumber classifies it) must
be one that can receive an SMS for a person:

- allowed: mobile, fixed-line-or-mobile (NANP numbers), toll-free, VoIP,
  personal numbers;
- refused: premium-rate, shared-cost, UAN, voicemail, pager, unknown;
- plain fixed-line: refused unless ``MAILSMS_ALLOW_FIXED_LINE`` (landline
  text-to-voice exists but is rarely wanted and often billed extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

ALL_COUNTRIES = "*"

_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed-line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed-line-or-mobile",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN (universal access)",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
_ALLOWED_TYPES = frozenset(
    {
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.VOIP,
        PhoneNumberType.PERSONAL_NUMBER,
    }
)


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    countries: frozenset[str] | None
    """ISO 3166 regions allowed; None allows every country."""
    allow_fixed_line: bool = False


def parse_countries(text: str | None, default_region: str) -> frozenset[str] | None:
    """``*`` (None: all), a comma-separated list of ISO codes, or empty for
    the default region only.  ValueError names an unknown code."""
    if text is None or not text.strip():
        return frozenset({default_region.upper()})
    if text.strip() == ALL_COUNTRIES:
        return None
    codes: set[str] = set()
    for item in text.split(","):
        code = item.strip().upper()
        if not code:
            continue
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{code!r} is not an ISO 3166 region phonenumbers knows")
        codes.add(code)
    if not codes:
        raise ValueError("no country given (use * for all)")
    return frozenset(codes)


def check_destination(e164: str, policy: DestinationPolicy) -> str | None:
    """Why an SMS may not go to ``e164``, or None when it may."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return f"{e164} is not a phone number"
    region = phonenumbers.region_code_for_number(number)
    if policy.countries is not None and region not in policy.countries:
        allowed = ", ".join(sorted(policy.countries))
        return (
            f"SMS to {region or 'that country'} ({e164}) is not allowed here; "
            f"allowed countries: {allowed}"
        )
    kind = phonenumbers.number_type(number)
    if kind in _ALLOWED_TYPES:
        return None
    if kind == PhoneNumberType.FIXED_LINE and policy.allow_fixed_line:
        return None
    name = _TYPE_NAMES.get(kind, "unknown")
    return f"{e164} is a {name} number; SMS to {name} numbers is not allowed"
