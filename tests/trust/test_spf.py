"""SPF through pyspf steered to our resolver (no module globals touched)."""

from __future__ import annotations

import spf

from mailsms.trust.spf import check_spf
from tests.fakes import dns as fake_dns
from tests.fakes.dns import FakeDnsServer
from tests.trust import config

# The fixture (the top-level conftest may also provide it; same function).
dns_server = fake_dns.dns_server


async def _check(
    server: FakeDnsServer, ip: str, mail_from: str = "a@corp.example", helo: str = "mx.example"
) -> tuple[str, str | None]:
    result = await check_spf(
        client_ip=ip, mail_from=mail_from, helo=helo, resolver_config=config(server, 1.0)
    )
    return result.result, result.domain


async def test_ip4_pass_and_fail(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("corp.example", "v=spf1 ip4:127.0.0.1 -all")
    assert await _check(dns_server, "127.0.0.1") == ("pass", "corp.example")
    assert await _check(dns_server, "192.0.2.1") == ("fail", "corp.example")


async def test_softfail_neutral_none(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("soft.example", "v=spf1 ~all")
    dns_server.add_txt("neutral.example", "v=spf1 ?all")
    dns_server.add_txt("nospf.example", "google-site-verification=abc")
    assert (await _check(dns_server, "192.0.2.1", "a@soft.example"))[0] == "softfail"
    assert (await _check(dns_server, "192.0.2.1", "a@neutral.example"))[0] == "neutral"
    assert (await _check(dns_server, "192.0.2.1", "a@nospf.example"))[0] == "none"
    assert (await _check(dns_server, "192.0.2.1", "a@nxdomain.example"))[0] == "none"


async def test_include_a_mx_and_ip6(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt(
        "corp.example", "v=spf1 include:_spf.corp.example mx a:relay.corp.example -all"
    )
    dns_server.add_txt("_spf.corp.example", "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all")
    dns_server.add_mx("corp.example", 10, "mx1.corp.example")
    dns_server.add_a("mx1.corp.example", "203.0.113.5")
    dns_server.add_a("relay.corp.example", "203.0.113.9")
    assert (await _check(dns_server, "198.51.100.77"))[0] == "pass"
    assert (await _check(dns_server, "2001:db8::25"))[0] == "pass"
    assert (await _check(dns_server, "203.0.113.5"))[0] == "pass"
    assert (await _check(dns_server, "203.0.113.9"))[0] == "pass"
    assert (await _check(dns_server, "203.0.113.10"))[0] == "fail"
    # Lookups went to our server (pyspf's own resolver would not know these names).
    assert ("mx1.corp.example", "A") in dns_server.queries


async def test_helo_is_checked_for_null_mail_from(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("mx.corp.example", "v=spf1 ip4:127.0.0.1 -all")
    result = await check_spf(
        client_ip="127.0.0.1",
        mail_from="",
        helo="mx.corp.example",
        resolver_config=config(dns_server),
    )
    assert (result.result, result.scope, result.domain) == ("pass", "helo", "mx.corp.example")
    literal = await check_spf(
        client_ip="127.0.0.1",
        mail_from="<>",
        helo="[127.0.0.1]",
        resolver_config=config(dns_server),
    )
    assert (literal.result, literal.domain) == ("none", None)


async def test_permerror_cases(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("typo.example", "v=spf1 ip4:127.0.0.1 bogus -all")
    dns_server.add_txt("two.example", "v=spf1 -all")
    dns_server.add_txt("two.example", "v=spf1 +all")
    dns_server.add_txt("void.example", "v=spf1 a:n1.example a:n2.example a:n3.example -all")
    for domain in ("typo.example", "two.example", "void.example"):
        assert (await _check(dns_server, "127.0.0.1", f"a@{domain}"))[0] == "permerror"


async def test_dns_failures_are_temperror(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("corp.example", "v=spf1 include:broken.example -all")
    dns_server.add_servfail("broken.example")
    assert (await _check(dns_server, "127.0.0.1"))[0] == "temperror"
    dns_server.silent = True
    result = await check_spf(
        client_ip="127.0.0.1",
        mail_from="a@other.example",
        helo="mx.example",
        resolver_config=config(dns_server, 0.3),
    )
    assert result.result == "temperror"
    assert "timed out" in result.reason


async def test_exp_text_is_not_echoed(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("corp.example", "v=spf1 -all exp=explain.corp.example")
    dns_server.add_txt("explain.corp.example", "Call +1 555 0100 to buy pills")
    result = await check_spf(
        client_ip="192.0.2.1",
        mail_from="a@corp.example",
        helo="x.example",
        resolver_config=config(dns_server),
    )
    assert result.result == "fail"
    assert "pills" not in result.reason


def test_pyspf_module_globals_untouched() -> None:
    assert spf.DNSLookup is spf.DNSLookup_dnspython
