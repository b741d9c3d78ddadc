"""scrypt password hashing."""

from __future__ import annotations

from mailsms.trust.passwords import hash_password, needs_rehash, verify_password

PASSWORD = "correct horse battery staple"


def test_round_trip() -> None:
    encoded = hash_password(PASSWORD)
    assert verify_password(PASSWORD, encoded)


def test_wrong_password() -> None:
    encoded = hash_password(PASSWORD)
    assert not verify_password("correct horse battery stapler", encoded)
    assert not verify_password("", encoded)


def test_encoded_form_is_self_describing_and_secret_free() -> None:
    encoded = hash_password(PASSWORD)
    scheme, n, r, p, salt, _digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(salt) == 24  # 16 bytes base64
    assert PASSWORD not in encoded
    assert PASSWORD.encode().hex() not in encoded
    assert not needs_rehash(encoded)


def test_salt_is_random() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_unicode_password() -> None:
    encoded = hash_password("pässwörd-🔑")
    assert verify_password("pässwörd-🔑", encoded)
    assert not verify_password("passwort-🔑", encoded)


def test_malformed_encoded_strings_verify_false() -> None:
    good = hash_password(PASSWORD)
    parts = good.split("$")
    bad = [
        "",
        "plain",
        "bcrypt$16384$8$1$AAAA$BBBB",
        "$".join([*parts[:1], "15000", *parts[2:]]),  # n not a power of two
        "$".join([*parts[:1], str(2**24), "64", *parts[3:]]),  # would need 2 GiB
        "$".join([*parts[:4], "not base64!", parts[5]]),
        "$".join([*parts[:5], ""]),
    ]
    for encoded in bad:
        assert not verify_password(PASSWORD, encoded)
        assert needs_rehash(encoded)
