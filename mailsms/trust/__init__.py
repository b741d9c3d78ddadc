"""Sender trust: prove the From domain of inbound mail before it becomes SMS.

An email-to-SMS gateway that believed ``MAIL FROM`` would relay SMS spam for
anyone.  This package decides, at DATA time, whether the RFC5322.From domain
is proven by DKIM (RFC 6376) or SPF (RFC 7208) aligned per DMARC (RFC 7489),
records the evidence as an RFC 8601 Authentication-Results header, and
offers the raw-input and password checks the SMTP layer needs around it.

Public API (everything else is an implementation detail):

* :func:`prove_sender` -> :class:`SenderProof` (``verdict``: pass/fail/temperror)
* :class:`ResolverConfig`, :func:`make_resolver`
* :func:`strip_forged_authentication_results`
* :mod:`rawcheck <mailsms.trust.rawcheck>`: :func:`find_bare_line_endings`,
  :func:`check_header_limits`, :func:`check_header_syntax`, :func:`received_hops`
* :func:`hash_password`, :func:`verify_password`, :func:`needs_rehash`
"""

from mailsms.trust.authresults import strip_forged_authentication_results
from mailsms.trust.dkim import DkimResult
from mailsms.trust.dmarc import DmarcResult
from mailsms.trust.dns import DnsTemporaryError, ResolverConfig, make_resolver
from mailsms.trust.passwords import hash_password, needs_rehash, verify_password
from mailsms.trust.rawcheck import (
    check_header_limits,
    check_header_syntax,
    find_bare_line_endings,
    received_hops,
)
from mailsms.trust.spf import SpfResult
from mailsms.trust.verdict import SenderProof, prove_sender

__all__ = [
    "DkimResult",
    "DmarcResult",
    "DnsTemporaryError",
    "ResolverConfig",
    "SenderProof",
    "SpfResult",
    "check_header_limits",
    "check_header_syntax",
    "find_bare_line_endings",
    "hash_password",
    "make_resolver",
    "needs_rehash",
    "prove_sender",
    "received_hops",
    "strip_forged_authentication_results",
    "verify_password",
]
