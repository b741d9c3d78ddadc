"""Stripping forged Authentication-Results (RFC 8601 §5) on raw bytes."""

from __future__ import annotations

import dkim
import pytest

from mailsms.trust.authresults import authserv_id_of, strip_forged_authentication_results
from tests.fakes import dns as fake_dns
from tests.fakes.dns import FakeDnsServer
from tests.trust import make_message, prove, publish_domain, rsa_key, sign

OURS = "sms.example.com"
FORGED = [
    b"Authentication-Results: sms.example.com; dkim=pass header.d=bank.example\r\n",
    b"authentication-results:SMS.Example.COM.; spf=pass\r\n",
    b"Authentication-Results: (sneaky comment) sms.example.com 1;\r\n\tdmarc=pass\r\n",
    b'Authentication-Results: "sms.example.com"; dkim=pass\r\n',
]
FOREIGN = [
    b"Authentication-Results: mx.google.example; dkim=pass header.d=corp.example\r\n",
    b"Authentication-Results: sms.example.com.evil.example; dkim=pass\r\n",
    b"X-Authentication-Results: sms.example.com; dkim=pass\r\n",
]

# The fixture (the top-level conftest may also provide it; same function).
dns_server = fake_dns.dns_server


def _with_headers(headers: list[bytes], message: bytes) -> bytes:
    return b"".join(headers) + message


@pytest.mark.parametrize(
    ("value", "ident"),
    [
        (b" sms.example.com; none", "sms.example.com"),
        (b" (c (nested)) SMS.example.com. 1; none", "sms.example.com"),
        (b' "sms.example.com"; none', "sms.example.com"),
        (b"\r\n\tsms.example.com;dkim=pass", "sms.example.com"),
        (b"", None),
        (b" ;", None),
    ],
)
def test_authserv_id_of(value: bytes, ident: str | None) -> None:
    assert authserv_id_of(value) == ident


def test_only_our_authserv_id_is_removed() -> None:
    message = make_message()
    raw = _with_headers([FORGED[0], FOREIGN[0], *FORGED[1:], *FOREIGN[1:]], message)
    stripped = strip_forged_authentication_results(raw, OURS)
    assert stripped == b"".join(FOREIGN) + message


def test_message_without_ours_is_returned_unchanged() -> None:
    raw = _with_headers(FOREIGN, make_message())
    assert strip_forged_authentication_results(raw, OURS) is raw


def test_body_lookalike_is_untouched() -> None:
    body = b"Authentication-Results: sms.example.com; dkim=pass\r\n"
    raw = make_message(body=body)
    assert strip_forged_authentication_results(raw, OURS) == raw


def test_dkim_still_verifies_after_stripping() -> None:
    signed = sign(make_message())
    raw = _with_headers([FORGED[0], FOREIGN[0], FORGED[2]], signed)
    stripped = strip_forged_authentication_results(raw, OURS)
    assert stripped == FOREIGN[0] + signed
    _, public_b64 = rsa_key("corp")
    record = f"v=DKIM1; k=rsa; p={public_b64}".encode()

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == b"s1._domainkey.corp.example." else None

    assert dkim.verify(stripped, dnsfunc=lookup)


async def test_prove_sender_after_stripping(dns_server: FakeDnsServer) -> None:
    publish_domain(dns_server)
    raw = _with_headers(FORGED[:2], sign(make_message()))
    proof = await prove(dns_server, strip_forged_authentication_results(raw, OURS))
    assert proof.verdict == "pass"
