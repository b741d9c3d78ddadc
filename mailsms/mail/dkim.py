"""DKIM signing of the mail mailsms sends (RFC 6376), and key management.

Replies and bounces come From addresses on our SMS domain; receivers that
enforce DMARC need them signed by that domain.  Signing uses dkimpy with
``rsa-sha256`` and ``relaxed/relaxed`` canonicalisation (RFC 6376 §3.4), so
benign header refolding on the way does not break the signature.

Keys: :func:`generate_key` writes an RSA private key (PEM, mode 0600) and
returns the DNS TXT record to publish at ``<selector>._domainkey.<domain>``
(RFC 6376 §3.6.1); :func:`load_signer` loads it at startup and fails with
a clear :class:`DkimKeyError` if the file is missing, unreadable or not an
RSA private key.  Key material never appears in reprs, logs or errors.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from pathlib import Path

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailsms.errors import PermanentFailure
from mailsms.mail.compose import normalize_domain

__all__ = [
    "SIGNED_HEADERS",
    "DkimKeyError",
    "DkimSigner",
    "dns_record",
    "generate_key",
    "load_signer",
]

SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
)
"""Headers covered by the signature (``h=``).  From is mandatory (RFC 6376
§5.4); the rest are those a forwarder could abuse to change the meaning."""

_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*$")
_MIN_BITS = 1024  # RFC 8301 §3.2: verifiers must reject RSA keys below 1024 bits
_TXT_CHUNK = 255  # RFC 1035 §3.3.14: one <character-string> holds at most 255 octets


class DkimKeyError(ValueError):
    """The DKIM key file is missing, unreadable, or not an RSA private key."""


def _check_selector(selector: str) -> str:
    if not _SELECTOR.match(selector):
        raise ValueError(f"not a valid DKIM selector: {selector!r}")
    return selector


def _load_rsa_key(pem: bytes, source: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        # Raised for a password-protected key: we have no passphrase to give.
        raise DkimKeyError(f"{source}: encrypted private keys are not supported") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError(f"{source}: not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"{source}: not an RSA private key (rsa-sha256 needs RSA)")
    if key.key_size < _MIN_BITS:
        raise DkimKeyError(f"{source}: RSA key of {key.key_size} bits is too short")
    return key


def _public_key_b64(key: rsa.RSAPrivateKey) -> str:
    # p= is the base64 DER SubjectPublicKeyInfo (RFC 6376 §3.6.1).
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


class DkimSigner:
    """Signs outgoing messages for one domain and selector."""

    __slots__ = ("_domain", "_key_pem", "_selector")

    def __init__(self, domain: str, selector: str, private_key_pem: bytes) -> None:
        """:raises DkimKeyError: when ``private_key_pem`` is not an RSA key."""
        self._domain = normalize_domain(domain)
        self._selector = _check_selector(selector)
        key = _load_rsa_key(private_key_pem, "DKIM private key")
        # Re-encode as PKCS#1 with LF line ends: the form dkimpy parses
        # reliably whatever the file held (PKCS#8, CRLF line ends).
        self._key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def selector(self) -> str:
        return self._selector

    def __repr__(self) -> str:
        return f"DkimSigner(domain={self._domain!r}, selector={self._selector!r})"

    def sign(self, message: bytes) -> bytes:
        """Return ``message`` with a ``DKIM-Signature`` header prepended.

        ``message`` should have CRLF line ends (see
        :func:`mailsms.mail.compose.message_to_bytes`).  A message dkimpy
        cannot parse raises :class:`PermanentFailure`: signing it again
        later would fail the same way.
        """
        try:
            signature = dkim.sign(
                message,
                self._selector.encode("ascii"),
                self._domain.encode("ascii"),
                self._key_pem,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=b"rsa-sha256",
                include_headers=[h.encode("ascii") for h in SIGNED_HEADERS],
            )
        except dkim.DKIMException as exc:
            raise PermanentFailure(f"DKIM signing failed: {exc}") from None
        return bytes(signature) + message


def load_signer(domain: str, selector: str, key_file: Path) -> DkimSigner:
    """Load the private key at ``key_file`` and build a :class:`DkimSigner`.

    :raises DkimKeyError: the file is missing, unreadable, or not an RSA
        private key (the message names the file, never its content).
    """
    try:
        pem = Path(key_file).read_bytes()
    except FileNotFoundError:
        raise DkimKeyError(f"DKIM key file not found: {key_file}") from None
    except IsADirectoryError:
        raise DkimKeyError(f"DKIM key file is a directory: {key_file}") from None
    except PermissionError:
        raise DkimKeyError(f"DKIM key file is not readable (permissions): {key_file}") from None
    except OSError as exc:
        raise DkimKeyError(f"DKIM key file cannot be read: {key_file}: {exc.strerror}") from None
    _load_rsa_key(pem, f"DKIM key file {key_file}")  # error names the file
    return DkimSigner(domain, selector, pem)


def dns_record(selector: str, domain: str, public_key_b64: str) -> str:
    """The zone-file line to publish for a public key.

    The TXT value is split into quoted strings of at most 255 octets; DNS
    concatenates them (RFC 6376 §3.6.2.2), so a 2048-bit key fits.
    """
    value = f"v=DKIM1; k=rsa; p={public_key_b64}"
    chunks = [value[i : i + _TXT_CHUNK] for i in range(0, len(value), _TXT_CHUNK)]
    quoted = " ".join(f'"{chunk}"' for chunk in chunks)
    return f"{_check_selector(selector)}._domainkey.{normalize_domain(domain)} IN TXT {quoted}"


def generate_key(
    selector: str, domain: str, key_file: Path, bits: int = 2048, *, overwrite: bool = False
) -> str:
    """Write a new RSA private key to ``key_file`` and return its DNS record.

    The key is PEM (PKCS#8), mode 0600 from the moment the file exists.  An
    existing file is kept (FileExistsError) unless ``overwrite=True``, in
    which case the new key replaces it atomically: a DKIM key in use must
    not be lost by a mistyped command.
    """
    _check_selector(selector)
    normalize_domain(domain)
    if bits < 2048:
        # RFC 8301 §3.2 recommends at least 2048 bits for signers.
        raise ValueError("DKIM keys must have at least 2048 bits")
    key_file = Path(key_file)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if overwrite:
        fd, tmp_name = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name}.")
        try:
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, key_file)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    else:
        # O_EXCL: refuse to overwrite, with no window between check and create.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    return dns_record(selector, domain, _public_key_b64(key))
