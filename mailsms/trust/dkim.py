"""DKIM signature verification (RFC 6376) for every signature on a message.

dkimpy does the cryptography and canonicalisation; this module decides what
the outcome *means*:

* every ``DKIM-Signature`` is checked (up to :data:`MAX_SIGNATURES`), not just
  the first, because a forwarder or an attacker can put a broken signature on
  top of a good one (RFC 6376 §6.1);
* key records are fetched with *our* asyncio resolver before verification.
  dkimpy's own DNS hook cannot tell a timeout from a missing key (it logs and
  returns False), so we look keys up ourselves, classify failures, and hand
  dkimpy a lookup function that only reads the prefetched answers; the
  CPU-bound verification then runs in a worker thread;
* a signature with ``l=`` that does not cover the whole body fails: text
  appended after the signed length would otherwise reach the SMS unsigned
  (RFC 6376 §8.2).

Results per signature: ``pass``, ``fail`` (did not verify), ``temperror``
(key lookup got no answer: retry later) or ``permerror`` (malformed
signature or key record, no key published).
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dkim
import dkim.canonicalization
import dns.asyncresolver

from mailsms.trust.dns import DnsTemporaryError, query_txt

__all__ = ["MAX_SIGNATURES", "DkimResult", "verify_dkim"]

#: Signatures beyond this many are ignored (RFC 6376 §6.1 lets verifiers
#: limit the work an attacker can cause; each one costs a DNS lookup).
MAX_SIGNATURES = 8
# dkimpy rejects RSA keys shorter than this (RFC 8301 §3.2).
_MIN_KEY_BITS = 1024
_MAX_REASON = 120

DkimOutcome = Literal["pass", "fail", "temperror", "permerror"]


@dataclass(frozen=True)
class DkimResult:
    """Outcome for one DKIM-Signature header, in message order."""

    result: DkimOutcome
    domain: str | None  # d= (lower-cased), None if unreadable
    selector: str | None  # s=
    algorithm: str | None  # a=
    reason: str  # human-readable, ASCII, no line breaks


@dataclass(frozen=True)
class _Signature:
    index: int
    domain: str | None
    selector: str | None
    algorithm: str | None
    key_name: bytes | None  # exactly as dkimpy builds it, for the lookup table
    error: str | None  # set when the header cannot be checked at all


def _clean(text: str) -> str:
    """One short printable-ASCII line, safe for an SMTP reply."""
    text = re.sub(r"[^\x20-\x7e]+", " ", text).strip()
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def _describe_exception(exc: Exception) -> str:
    message = str(exc)
    # dkimpy appends both hashes in base64; the reader only needs the fact.
    if message.startswith("body hash mismatch"):
        return "body hash mismatch"
    return _clean(message) or type(exc).__name__


def _prepare(raw: bytes, limit: int) -> tuple[dkim.DKIM | None, list[_Signature], str | None]:
    """Parse the message once and read the tags of each signature."""
    try:
        verifier = dkim.DKIM(raw, minkey=_MIN_KEY_BITS)
    except dkim.DKIMException as exc:
        return None, [], _describe_exception(exc)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    signatures: list[_Signature] = []
    for index in range(min(count, limit)):
        try:
            prep = verifier.verify_headerprep(index)
        except dkim.DKIMException as exc:
            signatures.append(
                _Signature(
                    index,
                    None,
                    None,
                    None,
                    None,
                    f"malformed signature: {_describe_exception(exc)}",
                )
            )
            continue
        sig = prep[0]
        domain = _text(sig[b"d"])
        selector = _text(sig[b"s"])
        algorithm = _text(sig.get(b"a"))
        if domain is None or selector is None:
            signatures.append(
                _Signature(index, None, None, algorithm, None, "d= or s= is not ASCII")
            )
            continue
        key_name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
        signatures.append(_Signature(index, domain.lower(), selector, algorithm, key_name, None))
    return verifier, signatures, None


def _check_key(key_name: bytes, record: bytes) -> str | None:
    """Reason if the key record is unusable, else None."""
    try:
        dkim.evaluate_pk(key_name, record)
    except (dkim.DKIMException, binascii.Error, ValueError) as exc:
        return f"key record unusable: {_describe_exception(exc)}"
    return None


def _covers_whole_body(verifier: dkim.DKIM) -> bool:
    fields = verifier.signature_fields
    if b"l" not in fields:
        return True
    policy = dkim.canonicalization.CanonicalizationPolicy.from_c_value(
        fields.get(b"c", b"simple/simple")
    )
    return len(policy.canonicalize_body(verifier.body)) <= int(fields[b"l"])


def _verify_all(
    verifier: dkim.DKIM, signatures: list[_Signature], keys: dict[bytes, bytes]
) -> list[DkimResult]:
    """Verify each signature against prefetched keys (runs in a thread)."""

    def lookup(name: bytes, timeout: float = 0) -> bytes | None:
        # dkimpy's DNS hook: answers only from what we already fetched.
        return keys.get(name)

    dnsfunc: Callable[..., bytes | None] = lookup
    results: list[DkimResult] = []
    for sig in signatures:
        try:
            ok = bool(verifier.verify(idx=sig.index, dnsfunc=dnsfunc))
        except dkim.DKIMException as exc:
            outcome: DkimOutcome = "fail" if isinstance(exc, dkim.ValidationError) else "permerror"
            results.append(_result(sig, outcome, _describe_exception(exc)))
            continue
        if not ok:
            results.append(_result(sig, "fail", "signature did not verify"))
        elif not _covers_whole_body(verifier):
            results.append(_result(sig, "fail", "body has content after the signed length (l=)"))
        else:
            results.append(_result(sig, "pass", "signature verified"))
    return results


def _result(sig: _Signature, outcome: DkimOutcome, reason: str) -> DkimResult:
    return DkimResult(outcome, sig.domain, sig.selector, sig.algorithm, _clean(reason))


async def _fetch_key(
    resolver: dns.asyncresolver.Resolver, key_name: bytes
) -> bytes | DnsTemporaryError | None:
    name = key_name.decode("ascii").rstrip(".")
    try:
        records = await query_txt(resolver, name)
    except DnsTemporaryError as exc:
        return exc
    # RFC 6376 §3.6.2.2: with several TXT records the result is undefined;
    # like most verifiers we use the first one.
    return records[0] if records else None


async def verify_dkim(
    raw: bytes,
    resolver: dns.asyncresolver.Resolver,
    *,
    max_signatures: int = MAX_SIGNATURES,
) -> tuple[tuple[DkimResult, ...], str | None]:
    """Verify every DKIM signature of ``raw``.

    Returns ``(results, problem)``: one result per signature checked, in
    header order (empty when unsigned), and a reason when the message could
    not be parsed for DKIM at all.
    """
    verifier, signatures, problem = await asyncio.to_thread(_prepare, raw, max_signatures)
    if verifier is None:
        return (), problem

    names = sorted({s.key_name for s in signatures if s.key_name is not None and s.error is None})
    fetched = await asyncio.gather(*(_fetch_key(resolver, name) for name in names))
    answers = dict(zip(names, fetched, strict=True))

    keys: dict[bytes, bytes] = {}
    settled: dict[int, DkimResult] = {}
    to_verify: list[_Signature] = []
    for sig in signatures:
        if sig.error is not None or sig.key_name is None:
            settled[sig.index] = _result(sig, "permerror", sig.error or "unreadable signature")
            continue
        answer = answers[sig.key_name]
        label = f"{sig.selector}._domainkey.{sig.domain}"
        if isinstance(answer, DnsTemporaryError):
            settled[sig.index] = _result(sig, "temperror", str(answer))
        elif answer is None:
            settled[sig.index] = _result(sig, "permerror", f"no key record at {label}")
        elif (bad_key := _check_key(sig.key_name, answer)) is not None:
            settled[sig.index] = _result(sig, "permerror", bad_key)
        else:
            keys[sig.key_name] = answer
            to_verify.append(sig)

    if to_verify:
        verified = await asyncio.to_thread(_verify_all, verifier, to_verify, keys)
        for sig, result in zip(to_verify, verified, strict=True):
            settled[sig.index] = result
    return tuple(settled[s.index] for s in signatures), None
