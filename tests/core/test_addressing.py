"""number@domain -> E.164, for every spelling people use."""

from __future__ import annotations

import pytest

from mailsms.addressing import (
    ForeignDomain,
    InvalidNumber,
    display_number,
    normalise_number,
    number_address,
    parse_recipient,
)

DOMAIN = "sms.example.com"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("+14155551212", "+14155551212"),
        ("14155551212", "+14155551212"),
        ("4155551212", "+14155551212"),
        ("415-555-1212", "+14155551212"),
        ("(415)555-1212", "+14155551212"),
        ("415.555.1212", "+14155551212"),
        ("+447911123456", "+447911123456"),
        ("447911123456", "+447911123456"),
        ("00447911123456", "+447911123456"),
        ("011447911123456", "+447911123456"),
        ("0033612345678", "+33612345678"),
        ("+33612345678", "+33612345678"),
    ],
)
def test_spellings_normalise_to_e164(local: str, expected: str) -> None:
    recipient = parse_recipient(f"{local}@{DOMAIN}", DOMAIN, "US")
    assert recipient.e164 == expected


def test_domain_is_case_insensitive_and_trailing_dot_ok() -> None:
    assert parse_recipient("4155551212@SMS.Example.COM.", DOMAIN, "US").e164 == "+14155551212"


def test_011_is_only_international_where_the_region_dials_it() -> None:
    # From the UK, "011..." is not an international prefix (it is "00").
    with pytest.raises(InvalidNumber):
        parse_recipient(f"011447911123456@{DOMAIN}", DOMAIN, "GB")
    # National UK spelling with the GB default region.
    assert parse_recipient(f"07911123456@{DOMAIN}", DOMAIN, "GB").e164 == "+447911123456"


@pytest.mark.parametrize("local", ["hello", "12", "+1", "415-555-121", "+999123456", ""])
def test_invalid_numbers_have_a_reason(local: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_recipient(f"{local}@{DOMAIN}", DOMAIN, "US")
    assert info.value.reason


def test_foreign_domain_is_refused() -> None:
    with pytest.raises(ForeignDomain) as info:
        parse_recipient("4155551212@gmail.com", DOMAIN, "US")
    assert "gmail.com" in info.value.reason


def test_round_trip_and_display() -> None:
    assert number_address("+14155551212", DOMAIN) == "14155551212@sms.example.com"
    assert display_number("+14155551212") == "+1 415-555-1212"
    assert normalise_number("(415) 555 1212", "US") == "+14155551212"
