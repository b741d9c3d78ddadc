"""Resolver construction and TXT lookup semantics against the fake server."""

from __future__ import annotations

import time

import dns.asyncresolver
import pytest

from mailsms.trust.dns import (
    DnsTemporaryError,
    ResolverConfig,
    make_resolver,
    make_sync_resolver,
    parse_nameserver,
    query_txt,
)
from tests.fakes import dns as fake_dns
from tests.fakes.dns import FakeDnsServer, split_txt

# The fixture (the top-level conftest may also provide it; same function).
dns_server = fake_dns.dns_server


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        (" 2001:db8::53 ", ("2001:db8::53", 53)),
    ],
)
def test_parse_nameserver(entry: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(entry) == expected


@pytest.mark.parametrize(
    "entry", ["dns.example", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "[::1]x", "1.2.3.4:ab", ""]
)
def test_parse_nameserver_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(entry)


def test_resolver_config_validates() -> None:
    with pytest.raises(ValueError):
        ResolverConfig(nameservers=("not-an-ip",))
    with pytest.raises(ValueError):
        ResolverConfig(timeout=0)
    config = ResolverConfig(nameservers=["127.0.0.1:5353"])  # type: ignore[arg-type]
    assert config.nameservers == ("127.0.0.1:5353",)


def test_make_resolver_uses_given_servers_and_timeout() -> None:
    resolver = make_resolver(["127.0.0.1:5353", "[::1]:5300"], 1.5)
    assert isinstance(resolver, dns.asyncresolver.Resolver)
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [  # type: ignore[union-attr]
        ("127.0.0.1", 5353),
        ("::1", 5300),
    ]
    assert resolver.lifetime == 1.5
    assert resolver.timeout == 1.5
    sync = make_sync_resolver(["127.0.0.1"], 2.0)
    assert sync.lifetime == 2.0


def test_split_txt_chunks_at_255_bytes() -> None:
    assert split_txt("") == [b""]
    chunks = split_txt("a" * 600)
    assert [len(c) for c in chunks] == [255, 255, 90]


async def test_txt_found_none_and_long(dns_server: FakeDnsServer) -> None:
    dns_server.add_txt("corp.example", "v=spf1 -all")
    dns_server.add_txt("long.example", "k" * 700)  # > 512 bytes: truncated UDP, TCP retry
    resolver = make_resolver([dns_server.nameserver], 2.0)
    assert await query_txt(resolver, "corp.example") == [b"v=spf1 -all"]
    assert await query_txt(resolver, "long.example") == [b"k" * 700]
    assert await query_txt(resolver, "missing.example") == []  # NXDOMAIN
    dns_server.add_a("host.corp.example", "127.0.0.2")
    assert await query_txt(resolver, "host.corp.example") == []  # NOERROR, no TXT
    assert await query_txt(resolver, "x" * 64 + ".example") == []  # cannot exist


async def test_servfail_is_temporary(dns_server: FakeDnsServer) -> None:
    dns_server.add_servfail("broken.example")
    resolver = make_resolver([dns_server.nameserver], 2.0)
    with pytest.raises(DnsTemporaryError, match="SERVFAIL"):
        await query_txt(resolver, "broken.example")


async def test_timeout_is_temporary(dns_server: FakeDnsServer) -> None:
    dns_server.silent = True
    resolver = make_resolver([dns_server.nameserver], 0.5)
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="timed out"):
        await query_txt(resolver, "corp.example")
    assert time.monotonic() - started < 2.0
