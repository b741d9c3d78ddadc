"""DKIM signing with generated keys, verified against the published record."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest

from mailsms.mail.compose import compose_reply, message_to_bytes
from mailsms.mail.dkim import DkimKeyError, DkimSigner, generate_key, load_signer
from mailsms.mail.dsn import compose_dsn

DOMAIN = "sms.example.com"


@pytest.fixture(scope="module")
def key_and_record(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    # RSA key generation is slow-ish; one key for the module.
    key_file = tmp_path_factory.mktemp("dkim") / "s1.pem"
    return key_file, generate_key("s1", DOMAIN, key_file)


def txt_value(record: str) -> bytes:
    """The TXT data a resolver would return: the quoted strings, joined."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode("ascii")


def dns_for(record: str) -> object:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return txt_value(record) if name == b"s1._domainkey.sms.example.com." else None

    return lookup


def sample_reply() -> bytes:
    msg = compose_reply(
        phone="+14155551212",
        domain=DOMAIN,
        to="alice@corp.example",
        original_subject="Café ☕ plans",
        original_message_id="<orig@corp.example>",
        references=["<root@corp.example>"],
        text="Sure 👍\nSee you",
        media_urls=["https://m.example/1.jpg"],
        received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        unique="r-1",
    )
    return message_to_bytes(msg)


def test_generated_key_file_mode_and_record_form(key_and_record: tuple[Path, str]) -> None:
    key_file, record = key_and_record
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert record.startswith('s1._domainkey.sms.example.com IN TXT "v=DKIM1; k=rsa; p=')
    strings = re.findall(r'"([^"]*)"', record)
    assert len(strings) >= 2  # a 2048-bit key does not fit in one string
    assert all(len(s.encode()) <= 255 for s in strings)
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+", "".join(strings))


def test_generate_refuses_to_overwrite(key_and_record: tuple[Path, str]) -> None:
    key_file, _ = key_and_record
    before = key_file.read_bytes()
    with pytest.raises(FileExistsError):
        generate_key("s1", DOMAIN, key_file)
    assert key_file.read_bytes() == before


def test_generate_overwrite_replaces_with_a_0600_file(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(b"old")
    key_file.chmod(0o644)
    record = generate_key("s2", DOMAIN, key_file, overwrite=True)
    assert record.startswith("s2._domainkey.sms.example.com IN TXT ")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]  # no temp file left


def test_generate_rejects_weak_keys_and_bad_selectors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2048"):
        generate_key("s1", DOMAIN, tmp_path / "weak.pem", bits=1024)
    with pytest.raises(ValueError, match="selector"):
        generate_key("bad selector", DOMAIN, tmp_path / "x.pem")
    assert list(tmp_path.iterdir()) == []


def test_sign_and_verify_a_reply(key_and_record: tuple[Path, str]) -> None:
    key_file, record = key_and_record
    signer = load_signer(DOMAIN, "s1", key_file)
    signed = signer.sign(sample_reply())
    assert signed.startswith(b"DKIM-Signature:")
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    assert "a=rsa-sha256" in header
    assert "c=relaxed/relaxed" in header
    assert "d=sms.example.com" in header
    assert "s=s1" in header
    signed_list = re.search(r"h=([^;]+)", header.replace("\r\n", "").replace(" ", ""))
    assert signed_list is not None
    names = {h.lower() for h in signed_list.group(1).split(":")}
    assert {"from", "to", "subject", "date", "message-id", "in-reply-to", "references"} <= names
    assert dkim.verify(signed, dnsfunc=dns_for(record))


def test_signature_breaks_when_the_body_changes(key_and_record: tuple[Path, str]) -> None:
    key_file, record = key_and_record
    signed = load_signer(DOMAIN, "s1", key_file).sign(sample_reply())
    assert not dkim.verify(signed.replace(b"See you", b"See yoU"), dnsfunc=dns_for(record))


def test_sign_and_verify_a_dsn(key_and_record: tuple[Path, str]) -> None:
    key_file, record = key_and_record
    bounce = compose_dsn(
        phone="+14155551212",
        domain=DOMAIN,
        to="alice@corp.example",
        original_subject="Lunch",
        original_message_id="<orig@corp.example>",
        sms_status="failed",
        error_code="30005",
        error_text="Unknown destination handset",
        arrival_date=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        now=datetime(2024, 5, 1, 12, 5, tzinfo=UTC),
        unique="d-1",
        original_headers=b"Subject: Lunch\r\n",
    )
    signed = load_signer(DOMAIN, "s1", key_file).sign(message_to_bytes(bounce))
    assert dkim.verify(signed, dnsfunc=dns_for(record))


def test_load_signer_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError, match="not found"):
        load_signer(DOMAIN, "s1", tmp_path / "missing.pem")
    with pytest.raises(DkimKeyError, match="directory"):
        load_signer(DOMAIN, "s1", tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DkimKeyError, match="not a PEM private key"):
        load_signer(DOMAIN, "s1", garbage)
    public_only = tmp_path / "public.pem"
    public_only.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(DkimKeyError):
        load_signer(DOMAIN, "s1", public_only)


def test_load_signer_refuses_non_rsa_keys(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file = tmp_path / "ed.pem"
    key_file.write_bytes(pem)
    with pytest.raises(DkimKeyError, match="not an RSA"):
        load_signer(DOMAIN, "s1", key_file)


def test_signer_repr_hides_the_key(key_and_record: tuple[Path, str]) -> None:
    key_file, _ = key_and_record
    signer = DkimSigner(DOMAIN, "s1", key_file.read_bytes())
    assert repr(signer) == "DkimSigner(domain='sms.example.com', selector='s1')"
