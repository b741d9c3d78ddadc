"""Sender proof: the one verdict the SMTP handler acts on (RFC 7489 applied).

:func:`prove_sender` runs DKIM (RFC 6376), SPF (RFC 7208) and DMARC policy
discovery (RFC 7489) concurrently and combines them into a
:class:`SenderProof`:

* ``pass`` — the From domain is proven: a DKIM signature that verifies with
  a ``d=`` aligned with the From domain, or an SPF pass for an aligned MAIL
  FROM/HELO domain.  The published DMARC policy never lowers this bar
  (``p=none`` still needs an aligned pass); see :mod:`mailsms.trust.dmarc`.
* ``temperror`` — not proven, but a DNS lookup that could have proven it got
  no answer (timeout, SERVFAIL).  The caller answers ``451 4.7.5``.
* ``fail`` — everything else, including no/multiple From addresses and raw
  input that parsers could disagree about.

:meth:`SenderProof.authentication_results` renders the RFC 8601 header value
for the caller to prepend after :func:`strip_forged_authentication_results`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

import authres
import authres.dmarc

from mailsms.trust.authresults import AUTHSERV_ID
from mailsms.trust.dkim import DkimResult, verify_dkim
from mailsms.trust.dmarc import (
    DmarcResult,
    aligned,
    author_domain,
    discover_policy,
    evaluate_dmarc,
)
from mailsms.trust.dns import ResolverConfig, make_resolver
from mailsms.trust.rawcheck import check_header_syntax, find_bare_line_endings
from mailsms.trust.spf import SpfResult, check_spf

__all__ = ["SenderProof", "prove_sender"]

Verdict = Literal["pass", "fail", "temperror"]

# An SMTP reply line is at most 512 octets (RFC 5321 §4.5.3.1.5); leave room
# for the code, the enhanced status and the caller's own words.
_MAX_REASON = 300
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.?", re.IGNORECASE)
_SELECTOR = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def _clip(text: str) -> str:
    text = re.sub(r"[^\x20-\x7e]+", " ", text).strip()
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@dataclass(frozen=True)
class SenderProof:
    """Whether the message's From domain is proven, and the evidence."""

    verdict: Verdict
    reason: str  # human-readable, printable ASCII, fits in an SMTP reply
    from_domain: str | None
    dkim: tuple[DkimResult, ...]
    spf: SpfResult
    dmarc: DmarcResult

    def authentication_results(self, authserv_id: str) -> str:
        """RFC 8601 ``Authentication-Results`` header *value* (no field name,
        unfolded), e.g. ``sms.example.com; dkim=pass header.d=corp.example
        header.s=s1; spf=pass smtp.mailfrom=corp.example; dmarc=pass
        header.from=corp.example``."""
        if not AUTHSERV_ID.fullmatch(authserv_id):
            raise ValueError("authserv_id must be a host name (dot-atom)")
        results: list[authres.AuthenticationResult] = []
        for sig in self.dkim:
            results.append(
                authres.DKIMAuthenticationResult(
                    result=sig.result,
                    reason=None if sig.result == "pass" else sig.reason,
                    header_d=_safe(sig.domain, _DOMAIN),
                    header_s=_safe(sig.selector, _SELECTOR),
                    header_a=_safe(sig.algorithm, _SELECTOR),
                )
            )
        if not self.dkim:
            results.append(authres.DKIMAuthenticationResult(result="none"))
        spf_domain = _safe(self.spf.domain, _DOMAIN)
        results.append(
            authres.SPFAuthenticationResult(
                result=self.spf.result,
                smtp_mailfrom=spf_domain if self.spf.scope == "mailfrom" else None,
                smtp_helo=spf_domain if self.spf.scope == "helo" else None,
            )
        )
        comment = None
        if self.dmarc.policy is not None:
            comment = f"p={self.dmarc.policy}"
            if self.dmarc.subdomain_policy is not None:
                comment += f" sp={self.dmarc.subdomain_policy}"
        results.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=self.dmarc.result,
                result_comment=comment,
                header_from=_safe(self.from_domain, _DOMAIN),
            )
        )
        header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
        value: str = header.header_value()
        return value


def _safe(value: str | None, pattern: re.Pattern[str]) -> str | None:
    """Only well-formed identifiers go into the header; others are omitted."""
    return value if value is not None and pattern.fullmatch(value) else None


def _refused(reason: str, from_domain: str | None = None) -> SenderProof:
    """A fail decided before any DNS traffic."""
    return SenderProof(
        verdict="fail",
        reason=_clip(reason),
        from_domain=from_domain,
        dkim=(),
        spf=SpfResult("none", "mailfrom", None, "not evaluated"),
        dmarc=DmarcResult.not_evaluated("not evaluated", from_domain),
    )


async def prove_sender(
    raw: bytes,
    *,
    mail_from: str,
    client_ip: str,
    helo: str,
    resolver_config: ResolverConfig,
    require_dmarc_record: bool = False,
) -> SenderProof:
    """Prove (or not) that the From domain of ``raw`` sent it.

    ``raw``: the DATA bytes as received (CRLF line endings, dot-unstuffed).
    ``mail_from``: the envelope sender address, ``""`` for the null path.
    ``require_dmarc_record``: additionally insist that the From domain
    publishes a DMARC record (off by default: an aligned DKIM/SPF pass is
    proof in itself).  Never raises for anything in the message or DNS.
    """
    problem = find_bare_line_endings(raw) or check_header_syntax(raw)
    if problem is not None:
        return _refused(problem)
    from_domain, problem = author_domain(raw)
    if from_domain is None:
        return _refused(problem)

    resolver = make_resolver(resolver_config.nameservers, resolver_config.timeout)
    (dkim_results, dkim_problem), spf_result, discovery = await asyncio.gather(
        verify_dkim(raw, resolver),
        check_spf(
            client_ip=client_ip, mail_from=mail_from, helo=helo, resolver_config=resolver_config
        ),
        discover_policy(resolver, from_domain),
    )
    dmarc = evaluate_dmarc(from_domain, discovery, dkim_results, spf_result)
    verdict, reason = _decide(
        from_domain, dkim_results, dkim_problem, spf_result, dmarc, require_dmarc_record
    )
    return SenderProof(
        verdict=verdict,
        reason=_clip(reason),
        from_domain=from_domain,
        dkim=dkim_results,
        spf=spf_result,
        dmarc=dmarc,
    )


def _decide(
    from_domain: str,
    dkim_results: tuple[DkimResult, ...],
    dkim_problem: str | None,
    spf_result: SpfResult,
    dmarc: DmarcResult,
    require_dmarc_record: bool,
) -> tuple[Verdict, str]:
    def relaxed(domain: str | None) -> bool:
        return domain is not None and aligned(domain, from_domain, "r")

    proven = dmarc.aligned_dkim is not None or dmarc.aligned_spf
    if require_dmarc_record and dmarc.result != "pass":
        proven = False
    if proven:
        if dmarc.aligned_dkim is not None:
            how = f"DKIM signature of {dmarc.aligned_dkim}"
        else:
            how = f"SPF pass for {spf_result.domain}"
        return "pass", f"From domain {from_domain} proven by {how}"

    # Not proven.  It is only a *temporary* failure if a lookup that got no
    # answer could have changed that; otherwise retrying cannot help.
    temporary: list[str] = [
        f"DKIM key lookup for {r.domain} failed"
        for r in dkim_results
        if r.result == "temperror" and relaxed(r.domain)
    ]
    if spf_result.result == "temperror" and relaxed(spf_result.domain):
        temporary.append(f"SPF check for {spf_result.domain} failed")
    if dmarc.result == "temperror":
        relaxed_pass = any(r.result == "pass" and relaxed(r.domain) for r in dkim_results) or (
            spf_result.result == "pass" and relaxed(spf_result.domain)
        )
        if relaxed_pass or require_dmarc_record:
            temporary.append("DMARC policy lookup failed")
    if temporary:
        return "temperror", (
            f"cannot verify From domain {from_domain} now: "
            + "; ".join(temporary)
            + " (DNS timeout or SERVFAIL)"
        )

    details = _dkim_details(from_domain, dkim_results, dkim_problem)
    details.append(_spf_detail(from_domain, spf_result))
    if require_dmarc_record and dmarc.result == "none":
        details.append(f"{from_domain} publishes no DMARC record")
    return "fail", f"From domain {from_domain} not proven: " + " and ".join(details)


def _dkim_details(
    from_domain: str, results: tuple[DkimResult, ...], problem: str | None
) -> list[str]:
    if problem is not None:
        return [f"DKIM could not parse the message ({problem})"]
    if not results:
        return ["no DKIM signature"]
    details: list[str] = []
    for r in results[:3]:
        who = r.domain or "an unreadable domain"
        if r.result == "pass":
            details.append(f"DKIM signature for {who} is valid but not aligned with {from_domain}")
        elif r.result == "temperror":
            details.append(f"DKIM key lookup for {who} failed")
        else:
            details.append(f"DKIM signature for {who} did not verify ({r.reason})")
    if len(results) > 3:
        details.append(f"{len(results) - 3} more DKIM signatures")
    return details


def _spf_detail(from_domain: str, result: SpfResult) -> str:
    if result.domain is None:
        return f"SPF {result.result} ({result.reason})"
    if result.result == "pass":
        return f"SPF pass for {result.domain} is not aligned with {from_domain}"
    return f"SPF {result.result} for {result.domain}"
