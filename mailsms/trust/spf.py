"""SPF evaluation (RFC 7208) of the client IP against MAIL FROM or HELO.

pyspf implements the record grammar, macros and processing limits.  Its DNS
access goes through one method, ``query.dns``, which calls a module-level
lookup function using the system resolver.  Instead of patching that global
(which would change SPF for any other code in the process), we subclass
``spf.query`` and override ``dns`` so that each evaluation asks *our*
resolver (configured nameservers, timeout) and is bounded by an overall time
budget.  pyspf is synchronous, so the evaluation runs in a worker thread with
a blocking resolver built from the same configuration.

The identity checked is the MAIL FROM domain, or the HELO name when MAIL FROM
is null (RFC 7208 §2.4, §2.3); that is also the domain DMARC aligns against.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import dns.exception
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SPF
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver
import spf

from mailsms.trust.dns import (
    ResolverConfig,
    ascii_domain,
    describe_dns_error,
    make_sync_resolver,
    to_dns_name,
)

__all__ = ["SpfResult", "check_spf", "spf_identity"]

SpfOutcome = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
_OUTCOMES: frozenset[str] = frozenset(
    ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
)
_MAX_REASON = 120


@dataclass(frozen=True)
class SpfResult:
    """Outcome of one SPF check."""

    result: SpfOutcome
    scope: Literal["mailfrom", "helo"]  # which identity was checked
    domain: str | None  # the checked domain (A-label, lower-case)
    reason: str  # human-readable, ASCII, no line breaks


def _clean(text: str) -> str:
    text = re.sub(r"[^\x20-\x7e]+", " ", text).strip()
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def spf_identity(mail_from: str, helo: str) -> tuple[Literal["mailfrom", "helo"], str, str | None]:
    """(scope, sender for pyspf, domain) for the SPF check (RFC 7208 §2.4)."""
    sender = mail_from.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    if sender:
        local, _, domain = sender.rpartition("@")
        checked = ascii_domain(domain)
        return "mailfrom", f"{local or 'postmaster'}@{checked or domain}", checked
    ascii_helo = ascii_domain(helo)
    return "helo", f"postmaster@{ascii_helo or helo}", ascii_helo


class _ResolverQuery(spf.query):  # type: ignore[misc]  # pyspf is untyped
    """``spf.query`` whose DNS goes to a given resolver within a deadline."""

    def __init__(
        self,
        *,
        client_ip: str,
        sender: str,
        helo: str,
        resolver: dns.resolver.Resolver,
        timeout: float,
        deadline: float,
    ) -> None:
        super().__init__(i=client_ip, s=sender, h=helo, timeout=timeout)
        self._resolver = resolver
        self._lookup_timeout = timeout
        self._deadline = deadline
        self._answers: dict[tuple[str, str], list[Any]] = {}

    def dns(
        self,
        name: Any,
        qtype: str,
        cnames: Any = None,
        ignore_void: bool = False,
    ) -> list[Any]:
        """Answer in pyspf's shapes: A/AAAA -> address text, MX ->
        (preference, exchange), PTR -> target text, TXT/SPF -> list of byte
        strings.  Raises ``spf.TempError`` when DNS gives no answer."""
        text = str(name).rstrip(".").lower()
        if not text or any(not 0 < len(label) < 64 for label in text.split(".")):
            return []  # cannot be a DNS name, so it has no records
        key = (text, qtype)
        if key not in self._answers:
            self._answers[key] = self._lookup(text, qtype)
        result = self._answers[key]
        if not result and not ignore_void:
            # RFC 7208 §4.6.4: more than two void lookups is a permerror.
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def _lookup(self, name: str, qtype: str) -> list[Any]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise spf.TempError("DNS time budget for the SPF check exhausted")
        qname = to_dns_name(name)
        if qname is None:
            return []
        try:
            answer = self._resolver.resolve(
                qname, qtype, search=False, lifetime=min(self._lookup_timeout, remaining)
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise spf.TempError(describe_dns_error(name, exc)) from exc
        values: list[Any] = []
        for rdata in answer:
            if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
                values.append(rdata.address)
            elif isinstance(rdata, dns.rdtypes.ANY.MX.MX):
                values.append((rdata.preference, rdata.exchange.to_text(omit_final_dot=True)))
            elif isinstance(rdata, dns.rdtypes.ANY.PTR.PTR):
                values.append(rdata.target.to_text(omit_final_dot=True))
            elif isinstance(rdata, dns.rdtypes.ANY.TXT.TXT | dns.rdtypes.ANY.SPF.SPF):
                values.append(list(rdata.strings))
        return values


def _evaluate(
    client_ip: str,
    scope: Literal["mailfrom", "helo"],
    sender: str,
    helo: str,
    domain: str,
    config: ResolverConfig,
) -> SpfResult:
    resolver = make_sync_resolver(config.nameservers, config.timeout)
    try:
        query = _ResolverQuery(
            client_ip=client_ip,
            sender=sender,
            helo=helo,
            resolver=resolver,
            timeout=config.timeout,
            deadline=time.monotonic() + config.total_timeout,
        )
        outcome, _code, explanation = query.check()
    except spf.TempError as exc:
        return SpfResult("temperror", scope, domain, _clean(f"SPF temporary error: {exc}"))
    except spf.PermError as exc:
        return SpfResult("permerror", scope, domain, _clean(f"SPF permanent error: {exc}"))
    except Exception as exc:  # pyspf on hostile records; never let it pass
        return SpfResult(
            "permerror", scope, domain, _clean(f"SPF evaluation error: {type(exc).__name__}")
        )
    if outcome not in _OUTCOMES:
        return SpfResult("permerror", scope, domain, _clean(f"SPF unexpected result {outcome}"))
    if outcome in ("temperror", "permerror"):
        reason = str(explanation)
    else:
        # Not pyspf's explanation: on fail that is the domain's exp= text,
        # which an attacker controls and which would end up in our reply.
        reason = f"SPF {outcome} for {domain}"
    return SpfResult(outcome, scope, domain, _clean(reason))


async def check_spf(
    *, client_ip: str, mail_from: str, helo: str, resolver_config: ResolverConfig
) -> SpfResult:
    """SPF result for ``client_ip`` sending as ``mail_from`` (HELO if null)."""
    scope, sender, domain = spf_identity(mail_from, helo)
    if domain is None:
        what = "MAIL FROM" if scope == "mailfrom" else "HELO"
        return SpfResult("none", scope, None, f"no usable {what} domain to check")
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        return SpfResult("permerror", scope, domain, "client IP address is not valid")
    return await asyncio.to_thread(
        _evaluate, client_ip, scope, sender, helo, domain, resolver_config
    )
