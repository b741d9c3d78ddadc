"""DMARC (RFC 7489): author domain, policy discovery and identifier alignment.

* :func:`author_domain` extracts the RFC5322.From domain.  Exactly one From
  header with exactly one address is required (RFC 7489 §6.6.1 lets a
  receiver reject anything else, and an SMS gateway has no use for the
  ambiguity); a From that Python's parser can only read with an "invalid
  header" defect is refused, because other parsers may read it differently.
* :func:`discover_policy` queries ``_dmarc.<from-domain>`` and falls back to
  ``_dmarc.<organizational domain>`` (§6.6.3), the organizational domain
  coming from the Public Suffix List shipped offline in ``publicsuffixlist``.
* :func:`evaluate_dmarc` computes alignment (§3.1, relaxed or strict per
  ``adkim``/``aspf``) and the DMARC result.

**mailsms rule:** a sender is proven only by an *aligned* pass, i.e. a DKIM
signature that verifies with a ``d=`` aligned with the From domain, or an SPF
pass for a MAIL FROM (HELO when null) domain aligned with it.  The published
policy (``p=``, ``sp=``) is recorded but never relaxes this: ``p=none`` still
needs an aligned pass.  Without a DMARC record the RFC default (relaxed
alignment) applies and the DMARC result is ``none``; when the record lookup
fails temporarily only strict alignment (exact domain match) is trusted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import NonASCIILocalPartDefect, ObsoleteHeaderDefect
from email.headerregistry import AddressHeader, HeaderRegistry
from typing import Literal

import dns.asyncresolver
from publicsuffixlist import PublicSuffixList

from mailsms.trust.dkim import DkimResult
from mailsms.trust.dns import DnsTemporaryError, ascii_domain, query_txt
from mailsms.trust.rawcheck import header_fields
from mailsms.trust.spf import SpfResult

__all__ = [
    "DmarcRecord",
    "DmarcResult",
    "PolicyDiscovery",
    "aligned",
    "author_domain",
    "discover_policy",
    "evaluate_dmarc",
    "organizational_domain",
    "parse_dmarc_record",
]

Policy = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]
DmarcOutcome = Literal["pass", "fail", "none", "temperror"]

_POLICIES: dict[str, Policy] = {"none": "none", "quarantine": "quarantine", "reject": "reject"}
_VERSION = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
# Defects that only flag obsolete-but-unambiguous syntax (e.g. source
# routes) or an internationalised local part; anything else is ambiguous.
_HARMLESS_DEFECTS = (ObsoleteHeaderDefect, NonASCIILocalPartDefect)


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    # Parsing the bundled list takes ~0.1 s; load it once, on first use.
    # The object is never modified afterwards.
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: public suffix plus one label (the domain itself if it
    is a public suffix or unknown to the list)."""
    domain = domain.rstrip(".").lower()
    return _public_suffix_list().privatesuffix(domain) or domain


def aligned(identifier: str, from_domain: str, mode: Alignment) -> bool:
    """Whether ``identifier`` (DKIM d= or SPF domain) aligns with From."""
    left = identifier.rstrip(".").lower()
    right = from_domain.rstrip(".").lower()
    if mode == "s":
        return left == right
    return organizational_domain(left) == organizational_domain(right)


def _unfold(value: bytes) -> str:
    # RFC 5322 §2.2.3: unfolding removes the CRLF before folding whitespace.
    text = re.sub(rb"\r\n|\r|\n", b"", value)
    return text.decode("utf-8", errors="replace")


def author_domain(raw: bytes) -> tuple[str | None, str]:
    """``(domain, "")`` for the single From address, else ``(None, reason)``."""
    fields = [field for field in header_fields(raw) if field.is_named(b"From")]
    if not fields:
        return None, "message has no From header"
    if len(fields) > 1:
        return None, f"message has {len(fields)} From headers, exactly one is required"
    try:
        header = HeaderRegistry()("From", _unfold(fields[0].value(raw)))
    except Exception:  # the stdlib parser on hostile input: refuse, do not crash
        return None, "From header cannot be parsed"
    if not isinstance(header, AddressHeader):
        return None, "From header cannot be parsed"
    if any(not isinstance(defect, _HARMLESS_DEFECTS) for defect in header.defects):
        return None, "From header is malformed"
    addresses = header.addresses
    if len(addresses) != 1:
        return None, f"From header must hold exactly one address, found {len(addresses)}"
    domain = ascii_domain(addresses[0].domain)
    if domain is None:
        return None, "From address has no valid domain"
    return domain, ""


@dataclass(frozen=True)
class DmarcRecord:
    """A parsed DMARC policy record (RFC 7489 §6.3)."""

    domain: str  # where the record was found (From or organizational domain)
    policy: Policy  # p=
    subdomain_policy: Policy | None  # sp=
    adkim: Alignment
    aspf: Alignment


def parse_dmarc_record(domain: str, text: str) -> DmarcRecord | None:
    """Parse one TXT record; None if it is not a usable DMARC record."""
    if not _VERSION.match(text):
        return None
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            # First occurrence wins; the grammar does not allow repeats.
            tags.setdefault(key.strip().lower(), value.strip())
    policy = _POLICIES.get(tags.get("p", "").lower())
    if policy is None:
        # §6.6.3 step 6: with a valid rua, act as if p=none; else no policy.
        if not tags.get("rua"):
            return None
        policy = "none"
    sp_text = tags.get("sp")
    subdomain_policy = _POLICIES.get(sp_text.lower()) if sp_text is not None else None
    return DmarcRecord(
        domain=domain,
        policy=policy,
        subdomain_policy=subdomain_policy,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
    )


@dataclass(frozen=True)
class PolicyDiscovery:
    """What policy discovery found: a record, nothing, or a DNS problem."""

    record: DmarcRecord | None
    temperror: str | None  # set when a lookup got no answer
    note: str  # human-readable detail (e.g. "no DMARC record")


async def _records_at(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    texts: list[str] = []
    for raw in await query_txt(resolver, f"_dmarc.{domain}"):
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            continue
        if _VERSION.match(text):
            texts.append(text)
    return texts


async def discover_policy(
    resolver: dns.asyncresolver.Resolver, from_domain: str
) -> PolicyDiscovery:
    """RFC 7489 §6.6.3 policy discovery for ``from_domain``."""
    org = organizational_domain(from_domain)
    candidates = [from_domain] if org == from_domain else [from_domain, org]
    for domain in candidates:
        try:
            texts = await _records_at(resolver, domain)
        except DnsTemporaryError as exc:
            return PolicyDiscovery(None, str(exc), "DMARC policy lookup failed")
        if len(texts) > 1:
            # §6.6.3 step 5: several records means no DMARC processing.
            return PolicyDiscovery(None, None, f"several DMARC records at _dmarc.{domain}")
        if texts:
            record = parse_dmarc_record(domain, texts[0])
            if record is None:
                return PolicyDiscovery(None, None, f"invalid DMARC record at _dmarc.{domain}")
            return PolicyDiscovery(record, None, f"DMARC record at _dmarc.{domain}")
    return PolicyDiscovery(None, None, "no DMARC record")


@dataclass(frozen=True)
class DmarcResult:
    """DMARC evaluation for the From domain.

    ``aligned_dkim`` / ``aligned_spf`` use the record's alignment modes;
    with no record, relaxed; when the lookup failed, strict only.
    """

    result: DmarcOutcome
    from_domain: str | None
    record_domain: str | None  # where the policy record was found
    policy: Policy | None  # published p=
    subdomain_policy: Policy | None  # published sp=
    applied_policy: Policy | None  # the one that governs this From domain
    adkim: Alignment | None
    aspf: Alignment | None
    aligned_dkim: str | None  # d= of the first aligned passing signature
    aligned_spf: bool
    reason: str

    @classmethod
    def not_evaluated(cls, reason: str, from_domain: str | None = None) -> DmarcResult:
        return cls("none", from_domain, None, None, None, None, None, None, None, False, reason)


def evaluate_dmarc(
    from_domain: str,
    discovery: PolicyDiscovery,
    dkim_results: Sequence[DkimResult],
    spf_result: SpfResult,
) -> DmarcResult:
    """Alignment and DMARC result from the individual checks."""
    record = discovery.record
    if record is not None:
        adkim: Alignment = record.adkim
        aspf: Alignment = record.aspf
    elif discovery.temperror is not None:
        adkim = aspf = "s"  # unknown modes: trust only what strict allows
    else:
        adkim = aspf = "r"  # RFC 7489 §6.3 defaults

    aligned_dkim = next(
        (
            r.domain
            for r in dkim_results
            if r.result == "pass" and r.domain and aligned(r.domain, from_domain, adkim)
        ),
        None,
    )
    aligned_spf = (
        spf_result.result == "pass"
        and spf_result.domain is not None
        and aligned(spf_result.domain, from_domain, aspf)
    )

    applied: Policy | None = None
    if record is not None:
        is_subdomain = record.domain != from_domain
        applied = (
            record.subdomain_policy
            if is_subdomain and record.subdomain_policy is not None
            else record.policy
        )
        outcome: DmarcOutcome = "pass" if aligned_dkim or aligned_spf else "fail"
        reason = f"{discovery.note} (p={record.policy})"
    elif discovery.temperror is not None:
        outcome = "temperror"
        reason = discovery.temperror
    else:
        outcome = "none"
        reason = discovery.note

    return DmarcResult(
        result=outcome,
        from_domain=from_domain,
        record_domain=record.domain if record else None,
        policy=record.policy if record else None,
        subdomain_policy=record.subdomain_policy if record else None,
        applied_policy=applied,
        adkim=adkim if discovery.temperror is None else None,
        aspf=aspf if discovery.temperror is None else None,
        aligned_dkim=aligned_dkim,
        aligned_spf=aligned_spf,
        reason=reason,
    )
