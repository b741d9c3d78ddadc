"""Tests for mailsms.trust, plus the helpers they share.

The helpers build RFC 5322 messages, generate DKIM keys with
``cryptography`` (a dkimpy dependency), sign with ``dkim.sign`` and publish
key/SPF/DMARC records in the fake DNS server.
"""

from __future__ import annotations

import base64
import functools

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailsms.trust import ResolverConfig, SenderProof, prove_sender
from tests.fakes.dns import FakeDnsServer

CRLF = b"\r\n"
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


@functools.cache
def rsa_key(name: str) -> tuple[bytes, str]:
    """(PKCS#1 PEM private key, base64 DER public key) cached per name."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode("ascii")


def make_message(
    from_header: str = "Alice <alice@corp.example>",
    body: bytes = b"Server room temperature is 41C\r\n",
    extra_headers: tuple[str, ...] = (),
    subject: str = "Alert",
) -> bytes:
    headers = [
        *extra_headers,
        f"From: {from_header}",
        "To: +15555550100@sms.example.com",
        f"Subject: {subject}",
        "Date: Mon, 03 Jun 2024 10:00:00 +0000",
        "Message-ID: <alert-1@corp.example>",
    ]
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + body


def sign(
    message: bytes,
    *,
    domain: str = "corp.example",
    selector: str = "s1",
    key: str = "corp",
    length: bool = False,
) -> bytes:
    """``message`` with a DKIM-Signature by ``domain`` prepended."""
    private_pem, _ = rsa_key(key)
    signature: bytes = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        private_pem,
        include_headers=SIGNED_HEADERS,
        length=length,
    )
    return signature + message


def publish_key(
    server: FakeDnsServer, *, domain: str = "corp.example", selector: str = "s1", key: str = "corp"
) -> None:
    _, public_b64 = rsa_key(key)
    server.add_txt(f"{selector}._domainkey.{domain}", f"v=DKIM1; k=rsa; p={public_b64}")


def publish_domain(
    server: FakeDnsServer,
    domain: str = "corp.example",
    *,
    spf: str | None = "v=spf1 ip4:127.0.0.1 -all",
    dmarc: str | None = "v=DMARC1; p=reject",
    key: str | None = "corp",
) -> None:
    """Key ``s1``, SPF and DMARC records for ``domain`` (None = omit)."""
    if key is not None:
        publish_key(server, domain=domain, key=key)
    if spf is not None:
        server.add_txt(domain, spf)
    if dmarc is not None:
        server.add_txt(f"_dmarc.{domain}", dmarc)


def config(server: FakeDnsServer, timeout: float = 2.0) -> ResolverConfig:
    return ResolverConfig(nameservers=(server.nameserver,), timeout=timeout, total_timeout=5.0)


async def prove(
    server: FakeDnsServer,
    raw: bytes,
    *,
    mail_from: str = "bounce@corp.example",
    client_ip: str = "192.0.2.10",  # not in any SPF record unless a test says so
    helo: str = "mail.corp.example",
    timeout: float = 2.0,
    require_dmarc_record: bool = False,
) -> SenderProof:
    return await prove_sender(
        raw,
        mail_from=mail_from,
        client_ip=client_ip,
        helo=helo,
        resolver_config=config(server, timeout),
        require_dmarc_record=require_dmarc_record,
    )
