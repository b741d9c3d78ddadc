"""DMARC pieces: record parsing, organizational domain, alignment, author domain."""

from __future__ import annotations

import pytest

from mailsms.trust.dmarc import (
    aligned,
    author_domain,
    discover_policy,
    organizational_domain,
    parse_dmarc_record,
)
from mailsms.trust.dns import make_resolver
from tests.fakes import dns as fake_dns
from tests.fakes.dns import FakeDnsServer
from tests.trust import make_message

# The fixture (the top-level conftest may also provide it; same function).
dns_server = fake_dns.dns_server


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("corp.example", "corp.example"),
        ("a.b.corp.example", "corp.example"),
        ("mail.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
        ("Alerts.Corp.Example.", "corp.example"),
        ("tenant.github.io", "tenant.github.io"),  # private-section suffix
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_alignment_modes() -> None:
    assert aligned("corp.example", "alerts.corp.example", "r")
    assert not aligned("corp.example", "alerts.corp.example", "s")
    assert aligned("CORP.example", "corp.example", "s")
    assert not aligned("a.github.io", "b.github.io", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")


def test_parse_record() -> None:
    record = parse_dmarc_record("corp.example", "v=DMARC1; p=Reject; sp=none; adkim=s; aspf=r")
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.adkim, record.aspf) == (
        "reject",
        "none",
        "s",
        "r",
    )
    defaults = parse_dmarc_record("corp.example", "v=DMARC1;p=quarantine")
    assert defaults is not None
    assert (defaults.subdomain_policy, defaults.adkim, defaults.aspf) == (None, "r", "r")


def test_parse_record_invalid() -> None:
    assert parse_dmarc_record("x.example", "v=spf1 -all") is None
    assert parse_dmarc_record("x.example", "p=reject; v=DMARC1") is None  # v must be first
    assert parse_dmarc_record("x.example", "v=DMARC1; p=bogus") is None
    # Invalid p= but a rua: act as p=none (RFC 7489 §6.6.3 step 6).
    lenient = parse_dmarc_record("x.example", "v=DMARC1; p=bogus; rua=mailto:d@x.example")
    assert lenient is not None and lenient.policy == "none"


async def test_discovery(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("_dmarc.corp.example", "v=DMARC1; p=reject")
    dns_server.add_txt("_dmarc.dup.example", "v=DMARC1; p=reject")
    dns_server.add_txt("_dmarc.dup.example", "v=DMARC1; p=none")
    dns_server.add_txt("_dmarc.noise.example", "some other text")
    resolver = make_resolver([dns_server.nameserver], 2.0)

    found = await discover_policy(resolver, "a.b.corp.example")
    assert found.record is not None and found.record.domain == "corp.example"
    dup = await discover_policy(resolver, "dup.example")
    assert dup.record is None and "several" in dup.note
    noise = await discover_policy(resolver, "noise.example")
    assert noise.record is None and noise.temperror is None
    dns_server.add_servfail("_dmarc.broken.example")
    broken = await discover_policy(resolver, "broken.example")
    assert broken.temperror is not None


def test_author_domain() -> None:
    assert author_domain(make_message()) == ("corp.example", "")
    assert author_domain(make_message(from_header="<ALICE@Corp.Example>")) == (
        "corp.example",
        "",
    )
    assert author_domain(make_message(from_header="a@bücher.example"))[0] == (
        "xn--bcher-kva.example"
    )
    for bad in ("a@[192.0.2.1]", "nobody", "a@localhost", "a@corp.example (x) b@evil.example"):
        domain, reason = author_domain(make_message(from_header=bad))
        assert domain is None, bad
        assert reason
