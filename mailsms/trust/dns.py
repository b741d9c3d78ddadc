"""DNS access for sender authentication (RFC 1035 lookups for RFC 6376/7208/7489).

Every lookup the trust package makes goes through a resolver built here from
an explicit :class:`ResolverConfig` (nameservers + timeout), never through a
process-wide default, so tests can point it at a local fake server and an
operator can pin a validating resolver.

Failure semantics matter more than anything else in this module: an answer
that *says* there is nothing (NXDOMAIN, NOERROR with no data) is a normal
"none", while *not getting* an answer (timeout, SERVFAIL, no reachable
nameserver) is a temporary error.  A temporary error must never be read as a
pass or as a permanent fail: the SMTP layer answers ``451 4.7.5`` so the
sending MTA retries later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdtypes.ANY.TXT
import dns.resolver

__all__ = [
    "DnsTemporaryError",
    "ResolverConfig",
    "ascii_domain",
    "make_resolver",
    "make_sync_resolver",
    "parse_nameserver",
    "query_txt",
]

DEFAULT_DNS_PORT = 53


class DnsTemporaryError(Exception):
    """A lookup got no usable answer (timeout, SERVFAIL, no nameserver).

    Callers map this to the ``temperror`` result of RFC 6376/7208/7489.
    """


@dataclass(frozen=True)
class ResolverConfig:
    """Where and how long to ask DNS.

    ``nameservers``: entries ``host`` or ``host:port`` (IPv6 as ``[::1]:5353``
    or bare ``::1``); hosts must be IP literals because resolving a
    nameserver's own name would need DNS already.  Empty means the system
    resolver configuration (``/etc/resolv.conf``).

    ``timeout``: seconds allowed for one lookup (all retries and servers).

    ``total_timeout``: seconds allowed for one whole SPF evaluation, which
    can chain up to ten DNS-querying terms (RFC 7208 §4.6.4 suggests at least
    20 s); DKIM and DMARC lookups run concurrently and are bounded by
    ``timeout`` each.
    """

    nameservers: tuple[str, ...] = ()
    timeout: float = 5.0
    total_timeout: float = 20.0

    def __post_init__(self) -> None:
        # Accept any sequence from callers but store an immutable tuple so the
        # frozen dataclass is hashable and cannot change under a running check.
        object.__setattr__(self, "nameservers", tuple(self.nameservers))
        for entry in self.nameservers:
            parse_nameserver(entry)
        if not self.timeout > 0:
            raise ValueError("DNS timeout must be positive")
        if not self.total_timeout > 0:
            raise ValueError("DNS total_timeout must be positive")


def parse_nameserver(entry: str) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or bare ``v6``.

    Raises ``ValueError`` for anything that is not an IP literal with an
    optional port in 1..65535.
    """
    text = entry.strip()
    port = DEFAULT_DNS_PORT
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"nameserver {entry!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"nameserver {entry!r}: junk after ']'")
            port = _parse_port(entry, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(entry, port_text)
    else:
        # No colon (IPv4 / name) or several (bare IPv6 without a port).
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {entry!r}: host must be an IP address") from None
    return str(address), port


def _parse_port(entry: str, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"nameserver {entry!r}: port is not a number")
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"nameserver {entry!r}: port out of range")
    return port


def _configure(
    resolver: dns.resolver.BaseResolver, nameservers: Sequence[str], timeout: float
) -> None:
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port)
            for host, port in map(parse_nameserver, nameservers)
        ]
    # ``timeout`` bounds one attempt at one server, ``lifetime`` the whole
    # lookup; using the same value keeps "one lookup takes at most timeout".
    resolver.timeout = timeout
    resolver.lifetime = timeout
    # Search lists would turn "foo.example" into "foo.example.corp.lan" on
    # NXDOMAIN and could make an attacker's record answer for a real domain.
    resolver.use_search_by_default = False
    resolver.search = []
    # SERVFAIL from every server must surface as an error, not be retried
    # until the lifetime expires.
    resolver.retry_servfail = False


def make_resolver(nameservers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    """Build an asyncio resolver; empty ``nameservers`` = system configuration."""
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    _configure(resolver, nameservers, timeout)
    return resolver


def make_sync_resolver(nameservers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """The blocking twin of :func:`make_resolver`, for libraries that are
    synchronous (pyspf) and therefore run in a worker thread."""
    resolver = dns.resolver.Resolver(configure=not nameservers)
    _configure(resolver, nameservers, timeout)
    return resolver


def to_dns_name(name: str) -> dns.name.Name | None:
    """Absolute DNS name for ``name``, or None if it cannot be a DNS name
    (empty or over-long label, over-long name): such a name has no records."""
    try:
        return dns.name.from_text(name.rstrip(".") + ".")
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


def ascii_domain(domain: str) -> str | None:
    """Lower-case A-label form of ``domain``, or None if it is not a usable
    domain name (empty, an address literal, a single label, bad IDNA)."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or domain.startswith("["):
        return None
    try:
        ascii_form = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if "." not in ascii_form or to_dns_name(ascii_form) is None:
        return None
    return ascii_form


def describe_dns_error(name: str, exc: BaseException) -> str:
    """A short reason for a failed lookup, safe for an SMTP reply."""
    if isinstance(exc, dns.exception.Timeout):
        return f"DNS lookup for {name} timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return f"DNS lookup for {name} failed (SERVFAIL or no usable nameserver)"
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return f"DNS lookup for {name} failed (no resolver configured)"
    return f"DNS lookup for {name} failed ({type(exc).__name__})"


async def query_txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[bytes]:
    """TXT records at ``name``, each record's strings concatenated.

    Returns ``[]`` for NXDOMAIN, no TXT data, or a name that cannot exist.
    Raises :class:`DnsTemporaryError` when no answer could be obtained.
    """
    qname = to_dns_name(name)
    if qname is None:
        return []
    try:
        answer = await resolver.resolve(qname, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        # Everything else (timeout, SERVFAIL, YXDOMAIN, malformed reply) means
        # we do not know: fail temporarily rather than guess.
        raise DnsTemporaryError(describe_dns_error(name, exc)) from exc
    return [
        b"".join(rdata.strings) for rdata in answer if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
    ]
