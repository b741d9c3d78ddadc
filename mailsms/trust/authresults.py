"""Authentication-Results hygiene (RFC 8601 §5).

A message may arrive already carrying an ``Authentication-Results`` header
that claims to come from *us*; anything downstream that trusts our
authserv-id would then believe a forgery.  :func:`strip_forged_authentication_results`
removes exactly those fields, keeps everyone else's, and works on the raw
bytes: every other byte of the message is left untouched so DKIM signatures
still verify, and the caller prepends our own header afterwards.
"""

from __future__ import annotations

import re

from mailsms.trust.rawcheck import header_fields, may_have_field

__all__ = ["AUTHSERV_ID", "authserv_id_of", "strip_forged_authentication_results"]

#: What we accept as our own authserv-id: a dot-atom (RFC 8601 §2.5 allows a
#: quoted string too, but a host name is what anyone configures).
AUTHSERV_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_WSP = " \t"


def _skip_cfws(text: str, pos: int) -> int:
    """Skip whitespace and (nested) comments starting at ``pos``."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if depth:
            if char == "\\":
                pos += 1  # quoted-pair inside a comment
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == "(":
            depth = 1
        elif char not in _WSP:
            break
        pos += 1
    return pos


def authserv_id_of(value: bytes) -> str | None:
    """The authserv-id of an Authentication-Results field body, lower-cased
    and without a trailing dot; None if there is none to read."""
    # latin-1 maps bytes 1:1, so odd bytes cannot make decoding fail.
    text = re.sub(r"\r\n|\r|\n", "", value.decode("latin-1"))
    pos = _skip_cfws(text, 0)
    if pos < len(text) and text[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(text) and text[pos] != '"':
            if text[pos] == "\\" and pos + 1 < len(text):
                pos += 1
            chars.append(text[pos])
            pos += 1
        ident = "".join(chars)
    else:
        match = re.match(r"[^\s;()\"]+", text[pos:])
        ident = match.group() if match else ""
    ident = ident.strip().rstrip(".").lower()
    return ident or None


def strip_forged_authentication_results(raw: bytes, authserv_id: str) -> bytes:
    """Remove every ``Authentication-Results`` field whose authserv-id is
    ``authserv_id`` (case-insensitive); keep all other bytes as they are."""
    ours = authserv_id.strip().rstrip(".").lower()
    if not ours:
        raise ValueError("authserv_id must not be empty")
    if not may_have_field(raw, b"Authentication-Results"):
        return raw
    pieces: list[bytes] = []
    position = 0
    for field in header_fields(raw):
        if field.is_named(b"Authentication-Results") and authserv_id_of(field.value(raw)) == ours:
            pieces.append(raw[position : field.start])
            position = field.end
    if not pieces:
        return raw
    pieces.append(raw[position:])
    return b"".join(pieces)
