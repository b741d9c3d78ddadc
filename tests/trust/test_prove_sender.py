"""End-to-end sender proof against a local fake DNS server."""

from __future__ import annotations

import asyncio
import time

import authres
import authres.dmarc

from tests.fakes import dns as fake_dns
from tests.fakes.dns import FakeDnsServer
from tests.trust import make_message, prove, publish_domain, publish_key, sign

AUTHSERV = "sms.example.com"

# The fixture (the top-level conftest may also provide it; same function).
dns_server = fake_dns.dns_server


async def test_aligned_dkim_signature_passes(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    proof = await prove(dns_server, sign(make_message()))
    assert proof.verdict == "pass"
    assert proof.from_domain == "corp.example"
    assert [(r.result, r.domain, r.selector) for r in proof.dkim] == [
        ("pass", "corp.example", "s1")
    ]
    # SPF does not list 192.0.2.10: the pass comes from DKIM alone.
    assert proof.spf.result == "fail"
    assert proof.dmarc.result == "pass"
    assert proof.dmarc.aligned_dkim == "corp.example"
    assert proof.dmarc.policy == "reject"
    assert "DKIM" in proof.reason


async def test_unsigned_mail_from_unlisted_ip_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    proof = await prove(dns_server, make_message())
    assert proof.verdict == "fail"
    assert proof.dkim == ()
    assert proof.spf.result == "fail"
    assert proof.dmarc.result == "fail"
    assert "no DKIM signature" in proof.reason
    assert "SPF fail" in proof.reason


async def test_signature_with_other_key_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)  # publishes the "corp" key
    proof = await prove(dns_server, sign(make_message(), key="attacker"))
    assert proof.verdict == "fail"
    assert proof.dkim[0].result == "fail"
    assert "did not verify" in proof.reason


async def test_misaligned_signature_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    publish_key(dns_server, domain="other.example", key="other")
    raw = sign(make_message(), domain="other.example", key="other")
    proof = await prove(dns_server, raw)
    assert proof.dkim[0].result == "pass"  # a valid signature ...
    assert proof.verdict == "fail"  # ... by the wrong domain proves nothing
    assert proof.dmarc.aligned_dkim is None
    assert "other.example is valid but not aligned with corp.example" in proof.reason


async def test_replay_with_altered_body_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    raw = sign(make_message()).replace(b"41C", b"99C")
    proof = await prove(dns_server, raw)
    assert proof.verdict == "fail"
    assert proof.dkim[0].result == "fail"
    assert proof.dkim[0].reason == "body hash mismatch"
    assert "body hash mismatch" in proof.reason


async def test_appended_text_beyond_l_tag_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    signed = sign(make_message(), length=True)
    assert (await prove(dns_server, signed)).verdict == "pass"
    proof = await prove(dns_server, signed + b"Wire $500 to the account below\r\n")
    assert proof.verdict == "fail"
    assert "l=" in proof.dkim[0].reason


async def test_every_signature_is_checked(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    publish_key(dns_server, selector="s2", key="rotated")
    message = make_message()
    good = sign(message)
    # A signature for selector s2 made with a key that is not the published one.
    broken_header = sign(message, selector="s2", key="attacker")[: -len(message)]
    proof = await prove(dns_server, broken_header + good)
    assert [(r.selector, r.result) for r in proof.dkim] == [("s2", "fail"), ("s1", "pass")]
    assert proof.verdict == "pass"


async def test_spf_pass_with_aligned_mail_from_passes(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    proof = await prove(dns_server, make_message(), client_ip="127.0.0.1")
    assert proof.verdict == "pass"
    assert proof.spf.result == "pass"
    assert proof.dmarc.aligned_spf is True
    assert "SPF" in proof.reason


async def test_spf_pass_for_subdomain_mail_from_is_relaxed_aligned(
    dns_server: FakeDnsServer,
) -> None:
    publish_domain(dns_server)
    dns_server.add_txt("bounces.corp.example", "v=spf1 ip4:127.0.0.1 -all")
    proof = await prove(
        dns_server, make_message(), client_ip="127.0.0.1", mail_from="b@bounces.corp.example"
    )
    assert proof.verdict == "pass"


async def test_spf_strict_alignment_rejects_subdomain_mail_from(
    dns_server: FakeDnsServer,
) -> None:
    publish_domain(dns_server, dmarc="v=DMARC1; p=reject; aspf=s")
    dns_server.add_txt("bounces.corp.example", "v=spf1 ip4:127.0.0.1 -all")
    proof = await prove(
        dns_server, make_message(), client_ip="127.0.0.1", mail_from="b@bounces.corp.example"
    )
    assert proof.spf.result == "pass"
    assert proof.verdict == "fail"


async def test_spf_pass_with_misaligned_mail_from_fails(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    publish_domain(dns_server, "other.example", key=None)
    proof = await prove(
        dns_server, make_message(), client_ip="127.0.0.1", mail_from="x@other.example"
    )
    assert proof.spf.result == "pass"
    assert proof.spf.domain == "other.example"
    assert proof.verdict == "fail"
    assert "SPF pass for other.example is not aligned with corp.example" in proof.reason


async def test_p_none_still_needs_alignment(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server, dmarc="v=DMARC1; p=none")
    proof = await prove(dns_server, make_message())
    assert proof.dmarc.policy == "none"
    assert proof.verdict == "fail"


async def test_dns_timeout_is_temperror(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    dns_server.silent = True
    started = time.monotonic()
    proof = await asyncio.wait_for(
        prove(dns_server, sign(make_message()), client_ip="127.0.0.1", timeout=0.5), 10
    )
    elapsed = time.monotonic() - started
    assert proof.verdict == "temperror"
    assert proof.dkim[0].result == "temperror"
    assert proof.spf.result == "temperror"
    assert proof.dmarc.result == "temperror"
    assert "timed out" in proof.dkim[0].reason
    # DKIM, SPF and DMARC lookups run concurrently: about one timeout, not three.
    assert elapsed < 2.5


async def test_servfail_on_key_is_temperror(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server, key=None)
    dns_server.add_servfail("s1._domainkey.corp.example")
    proof = await prove(dns_server, sign(make_message()))
    assert proof.dkim[0].result == "temperror"
    assert proof.verdict == "temperror"
    assert "DKIM key lookup for corp.example failed" in proof.reason


async def test_temperror_for_unaligned_domain_is_a_plain_fail(dns_server: FakeDnsServer) -> None:
    # Even if other.example's key lookup had worked, it could not prove corp.example.
    publish_domain(dns_server)
    dns_server.add_servfail("s1._domainkey.other.example")
    proof = await prove(dns_server, sign(make_message(), domain="other.example", key="other"))
    assert proof.dkim[0].result == "temperror"
    assert proof.verdict == "fail"


async def test_missing_key_record_is_permerror(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server, key=None)
    proof = await prove(dns_server, sign(make_message()))
    assert proof.dkim[0].result == "permerror"
    assert "no key record at s1._domainkey.corp.example" in proof.dkim[0].reason
    assert proof.verdict == "fail"


async def test_subdomain_from_uses_organizational_dmarc_record(
    dns_server: FakeDnsServer,
) -> None:
    publish_domain(dns_server, dmarc="v=DMARC1; p=reject; sp=quarantine")
    raw = sign(make_message(from_header="Ops <ops@alerts.corp.example>"))
    proof = await prove(dns_server, raw)
    assert proof.from_domain == "alerts.corp.example"
    assert proof.dmarc.record_domain == "corp.example"
    assert proof.dmarc.policy == "reject"
    assert proof.dmarc.subdomain_policy == "quarantine"
    assert proof.dmarc.applied_policy == "quarantine"
    assert ("_dmarc.alerts.corp.example", "TXT") in dns_server.queries
    assert ("_dmarc.corp.example", "TXT") in dns_server.queries
    # d=corp.example is relaxed-aligned with alerts.corp.example.
    assert proof.verdict == "pass"


async def test_subdomain_from_with_strict_dkim_alignment_fails(
    dns_server: FakeDnsServer,
) -> None:
    publish_domain(dns_server, dmarc="v=DMARC1; p=reject; adkim=s")
    raw = sign(make_message(from_header="ops@alerts.corp.example"))
    proof = await prove(dns_server, raw)
    assert proof.dkim[0].result == "pass"
    assert proof.verdict == "fail"


async def test_no_dmarc_record_uses_relaxed_defaults(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server, dmarc=None)
    proof = await prove(dns_server, sign(make_message()))
    assert proof.dmarc.result == "none"
    assert proof.verdict == "pass"
    strict = await prove(dns_server, sign(make_message()), require_dmarc_record=True)
    assert strict.verdict == "fail"
    assert "publishes no DMARC record" in strict.reason


async def test_from_header_count_and_shape(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    no_from = b"To: x@sms.example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    two_from = make_message(extra_headers=("From: mallory@evil.example",))
    two_addresses = make_message(from_header="alice@corp.example, bob@corp.example")
    group = make_message(from_header="undisclosed:;")
    ambiguous = make_message(from_header="alice@evil.example)<bob@corp.example>")
    cases = {
        no_from: "no From header",
        two_from: "2 From headers",
        two_addresses: "exactly one address, found 2",
        group: "exactly one address, found 0",
        ambiguous: "malformed",
    }
    for raw, expected in cases.items():
        proof = await prove(dns_server, sign(raw) if b"From:" in raw else raw)
        assert proof.verdict == "fail"
        assert expected in proof.reason
        assert proof.from_domain is None
    # Refused before any DNS traffic.
    assert dns_server.queries == []


async def test_bare_lf_is_refused_before_dns(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    raw = sign(make_message()).replace(b"Subject: Alert\r\n", b"Subject: Alert\nBcc: x\r\n")
    proof = await prove(dns_server, raw, client_ip="127.0.0.1")
    assert proof.verdict == "fail"
    assert "bare LF" in proof.reason
    assert dns_server.queries == []


async def test_authentication_results_parse_back(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server, dmarc="v=DMARC1; p=reject; sp=none")
    message = make_message()
    broken = sign(message, selector="s9", key="attacker")[: -len(message)]
    proof = await prove(dns_server, broken + sign(message), client_ip="127.0.0.1")
    value = proof.authentication_results(AUTHSERV)
    assert value.startswith("sms.example.com; dkim=")
    assert "\r" not in value and "\n" not in value

    header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
    assert header.authserv_id == AUTHSERV
    by_method = [(r.method, r.result) for r in header.results]
    assert by_method == [
        ("dkim", "permerror"),
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert header.results[1].header_d == "corp.example"
    assert header.results[1].header_s == "s1"
    assert header.results[2].smtp_mailfrom == "corp.example"

    # With the DMARC feature context, header.from is a typed property.
    typed = authres.FeatureContext(authres.dmarc).parse_value(value)
    assert typed.results[3].header_from == "corp.example"


async def test_authentication_results_for_unsigned_failure(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    proof = await prove(dns_server, make_message(), mail_from="", helo="mail.corp.example")
    value = proof.authentication_results(AUTHSERV)
    header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
    assert [(r.method, r.result) for r in header.results] == [
        ("dkim", "none"),
        ("spf", "none"),
        ("dmarc", "fail"),
    ]
    assert header.results[1].smtp_helo == "mail.corp.example"
