"""Password hashing for SMTP AUTH and web logins (scrypt, RFC 7914).

The stored form is self-describing, ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``,
so the cost parameters can be raised later and old hashes still verify
(:func:`needs_rehash` tells when to re-hash at the next successful login).

Nothing here logs, and no error message ever includes a password or hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "needs_rehash", "verify_password"]

_SCHEME = "scrypt"
_N = 2**14
_R = 8
_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Upper bounds accepted when *verifying*, so a tampered or corrupt stored
# hash cannot make one login attempt allocate gigabytes or spin for minutes.
_MAX_MEMORY = 64 * 1024 * 1024  # bytes scrypt may use (128 * r * n)
_MAX_P = 16
# scrypt first runs PBKDF2 over the password; an unbounded password would be
# a cheap way to burn CPU on the login path.
MAX_PASSWORD_BYTES = 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # OpenSSL refuses anything above its default 32 MiB maxmem; size the
    # limit from the parameters (scrypt needs 128 * r * (n + p) bytes).
    maxmem = 128 * r * (n + p) + 1024 * 1024
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh 16-byte salt; returns the encoded string."""
    secret = password.encode("utf-8")
    if len(secret) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, _N, _R, _P, _HASH_BYTES)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def _decode(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return None
    _, n_text, r_text, p_text, salt_text, hash_text = parts
    if not (n_text.isdigit() and r_text.isdigit() and p_text.isdigit()):
        return None
    n, r, p = int(n_text), int(r_text), int(p_text)
    # n must be a power of two > 1 for scrypt.
    if not (n > 1 and n & (n - 1) == 0 and r > 0 and 0 < p <= _MAX_P):
        return None
    if 128 * r * n > _MAX_MEMORY:
        return None
    try:
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(hash_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(expected) <= 64:
        return None
    return n, r, p, salt, expected


def verify_password(password: str, encoded: str) -> bool:
    """True iff ``password`` matches ``encoded``.

    A malformed or unsupported ``encoded`` string verifies as False rather
    than raising, so a corrupt row cannot turn into an authentication bypass
    or an error page that echoes it.
    """
    decoded = _decode(encoded)
    if decoded is None:
        return False
    n, r, p, salt, expected = decoded
    secret = password.encode("utf-8")
    if len(secret) > MAX_PASSWORD_BYTES:
        return False
    actual = _scrypt(secret, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    """True if ``encoded`` is not in the current scheme and parameters."""
    decoded = _decode(encoded)
    if decoded is None:
        return True
    n, r, p, salt, expected = decoded
    return (n, r, p, len(salt), len(expected)) != (_N, _R, _P, _SALT_BYTES, _HASH_BYTES)
