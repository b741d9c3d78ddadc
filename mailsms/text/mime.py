"""Email to text: MIME walk, transfer and charset decoding, part selection.

* RFC 2045/2046: multipart/alternative prefers text/plain over text/html
  (an empty plain part falls back to the next best alternative);
  multipart/mixed contributes its inline text parts in order;
  multipart/related contributes its root (first or ``start``) part;
  multipart/signed its first part.  Everything else (attachments, inline
  images, calendars, nested messages) is listed, never decoded further and
  never decompressed.
* Content-Transfer-Encoding quoted-printable and base64 are undone by the
  stdlib; a declared charset is honoured with replacement of bad bytes; an
  unknown or missing charset falls back to UTF-8, then windows-1252 (what
  mislabelled "iso-8859-1" and "us-ascii" mail really is, as in the WHATWG
  Encoding Standard).  Decoding never raises.
* RFC 3676 format=flowed text is unwrapped.
* RFC 2047 encoded subjects and filenames are decoded by email.policy.default;
  a malformed header falls back to its raw value.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.headerregistry import (
    BaseHeader,
    ContentDispositionHeader,
    ContentTransferEncodingHeader,
    ContentTypeHeader,
    HeaderRegistry,
    UniqueUnstructuredHeader,
)
from email.message import EmailMessage, Message, MIMEPart
from email.policy import EmailPolicy, Policy
from types import MappingProxyType
from typing import Any, Final, TypeVar, overload

from mailsms.text.html import html_to_text

_MAX_DEPTH: Final = 20
_MAX_BODY_CHARS: Final = 100_000

# Labels that decode better as a superset, or that Python spells differently.
_CHARSET_ALIASES: Final[Mapping[str, str]] = MappingProxyType({
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "unicode-1-1-utf-7": "utf-7",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
})  # fmt: skip
_SKIP_TYPES: Final = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature",
     "application/x-pkcs7-signature", "application/pgp-keys"}
)  # fmt: skip


_T = TypeVar("_T")
_MISSING: Final = object()

# Plain values of the fields read for every part: RFC 2045 tokens, and
# name=value parameters whose values are tokens or quoted strings without
# spaces or escapes; no comments, RFC 2231 ("*") or encoded words.
_MIME_ATOM: Final = r"[A-Za-z0-9!#$&+.^_`{|}~-]+"  # an RFC 2045 token
_PLAIN_PARAMETER: Final = re.compile(
    rf'[ \t]*(?P<name>{_MIME_ATOM})=(?:(?P<atom>{_MIME_ATOM})|"(?P<quoted>[!#-\[\]-~]*)")'
)
_PLAIN_TYPE: Final = re.compile(rf"{_MIME_ATOM}/{_MIME_ATOM}")
_PLAIN_DISPOSITION: Final = re.compile(_MIME_ATOM)
_PLAIN_CTE: Final = re.compile(rf"[ \t]*{_MIME_ATOM}[ \t]*")


def _plain_parameterized(text: str, head: re.Pattern[str]) -> str | None:
    """The registry's text of a plain Content-Type or -Disposition, or None.

    The registry renders the parameters anew (MimeParameters.__str__ in
    email._header_value_parser): ``head; name="value"; name2="value2"``.
    """
    first, semicolon, rest = text.partition(";")
    if not head.fullmatch(first):
        return None
    if not semicolon:
        return text
    parameters: dict[str, str] = {}
    for parameter in rest.split(";"):
        match = _PLAIN_PARAMETER.fullmatch(parameter)
        if match is None or match["name"].lower() in parameters:
            return None  # not plain, or a repeated name (which the registry drops)
        name, value = match["name"], match["atom"] or match["quoted"]
        parameters[name.lower()] = f'{name}="{value}"' if value else name
    return f"{first}; " + "; ".join(parameters.values())


# The fields with a shortcut: the class email.policy.default reads each
# with, and the registry's text of a plain value (None when not plain).
_PLAIN_FIELDS: Final[Mapping[str, tuple[type, Callable[[str], str | None]]]] = MappingProxyType({
    "content-type": (ContentTypeHeader, lambda text: _plain_parameterized(text, _PLAIN_TYPE)),
    "content-disposition": (
        ContentDispositionHeader, lambda text: _plain_parameterized(text, _PLAIN_DISPOSITION)
    ),
    "content-transfer-encoding": (
        ContentTransferEncodingHeader, lambda text: text if _PLAIN_CTE.fullmatch(text) else None
    ),
    "subject": (UniqueUnstructuredHeader, lambda text: text),  # unstructured: any ASCII text
})  # fmt: skip


def _plain_field(policy: Policy, name: str, raw: object) -> str | None:
    """What ``str(policy.header_fetch_parse(name, raw))`` gives, if that needs no parse.

    The header registry parses a Content-Type in some 90 us (a Subject in
    10), only for its text to be read back.  For a plain ASCII value (no
    encoded word; see above for Content-*) that text is known without the
    parse (tests/text/test_text_mime_fast_paths.py checks it against the
    registry).  None for anything else, or under a policy that reads fields
    otherwise than email.policy.default.
    """
    plain = _PLAIN_FIELDS.get(name)
    if plain is None or type(raw) is not str or not raw.isascii() or "=?" in raw:
        return None
    kind, render = plain
    factory = getattr(policy, "header_factory", None)
    if not (
        type(policy).header_fetch_parse is EmailPolicy.header_fetch_parse
        and isinstance(factory, HeaderRegistry)
        and factory.base_class is BaseHeader
        and factory.registry.get(name) is kind
    ):
        return None
    # header_fetch_parse drops CR and LF (unfolding) before the parse.
    return render(raw.replace("\r", "").replace("\n", ""))


def field_value(part: Message, name: str, failobj: object = None) -> Any:
    """``part.get(name, failobj)`` (Message's own), with the plain-value fast path."""
    key = name.lower()
    for field_name, raw in part.raw_items():
        if field_name.lower() == key:
            plain = _plain_field(part.policy, key, raw)
            return plain if plain is not None else part.policy.header_fetch_parse(field_name, raw)
    return failobj


class _FieldsOnce(Message):
    """One part, read through ``Message``'s own methods, each field parsed once.

    Under email.policy.default every ``get`` parses the field again, and the
    stdlib's helpers read Content-Type once each for the type, the charset,
    the parameters and the filename.  They only ever use the value's text
    (``str(value)``), so memoising ``get`` per part (and reading plain values
    without a parse, see _plain_field) changes nothing but the cost.  This
    stand-in shares the part's state (headers, payload, policy, defects)
    and lives for one extraction.
    """

    def __init__(self, part: Message) -> None:
        # No Message.__init__: the state is the part's own, not a copy.
        self.__dict__.update(vars(part))
        self._fields_read: dict[str, Any] = {}

    @overload
    def get(self, name: str, failobj: None = None) -> Any: ...
    @overload
    def get(self, name: str, failobj: _T) -> Any | _T: ...
    def get(self, name: str, failobj: object = None) -> Any:
        key = name.lower()
        if key not in self._fields_read:
            self._fields_read[key] = field_value(self, key, _MISSING)
        value = self._fields_read[key]
        return failobj if value is _MISSING else value


# Part classes whose field-reading methods are all Message's own (MIMEPart
# and EmailMessage only add content-manager and body-finding methods).
_STDLIB_PARTS: Final = (Message, MIMEPart, EmailMessage)


def _read_once(part: Message) -> Message:
    return _FieldsOnce(part) if type(part) in _STDLIB_PARTS else part


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    attachments: tuple[str, ...]
    truncated: bool  # the body exceeded the processing cap


def _codec(label: str | None) -> codecs.CodecInfo | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        return codecs.lookup(_CHARSET_ALIASES.get(label, label))
    except LookupError:
        return None


def decode_bytes(payload: bytes, charset: str | None) -> str:
    """Bytes to text: declared charset, else UTF-8, else windows-1252; never raises."""
    info = _codec(charset)
    if info is not None:
        with contextlib.suppress(Exception):  # some codecs (utf-7) raise despite "replace"
            return payload.decode(info.name, errors="replace")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (quoted lines left alone)."""
    out: list[str] = []
    buffer = ""
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if line.startswith(" "):
            line = line[1:]  # space-stuffing (RFC 3676 section 4.4)
        flowed = line.endswith(" ") and line != "-- " and not line.startswith(">")
        if flowed:
            buffer += line[:-1] if delsp else line
        else:
            out.append(buffer + line)
            buffer = ""
    if buffer:
        out.append(buffer)
    return "\n".join(out)


def _part_text(part: Message, ctype: str) -> str:
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        raw = None
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = decode_bytes(raw, charset)
    if ctype == "text/plain":
        params = {k.lower(): str(v).lower() for k, v in part.get_params(failobj=[]) or []}
        if params.get("format") == "flowed":
            text = _unflow(text.replace("\r\n", "\n"), params.get("delsp") == "yes")
    if ctype == "text/html":
        text = html_to_text(text)
    return text


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        param = part.get_param("filename", header="content-disposition")
        name = param if isinstance(param, str) else None
    if name is None and part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = header_text(inner[0], "subject")
            return f"forwarded message “{subject}”" if subject else "forwarded message"
    return " ".join(str(name).split()) if name else None


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


@dataclass(slots=True)
class _Walk:
    """Accumulator for one extraction call (local, never shared).

    With email.policy.default every header access re-parses the header, and
    the walk asks each part for its type, disposition, filename and text
    several times; the answers are kept here by part for this one call.
    """

    texts: list[str]
    attachments: list[str]
    _fields: dict[int, Message] = field(default_factory=dict)
    _types: dict[int, str] = field(default_factory=dict)
    _leaves: dict[int, bool] = field(default_factory=dict)
    _filenames: dict[int, str | None] = field(default_factory=dict)
    _decoded: dict[int, str] = field(default_factory=dict)

    def fields(self, part: Message) -> Message:
        """The part with its header fields parsed at most once (see _FieldsOnce)."""
        key = id(part)
        if key not in self._fields:
            self._fields[key] = _read_once(part)
        return self._fields[key]

    def ctype(self, part: Message) -> str:
        key = id(part)
        if key not in self._types:
            self._types[key] = self.fields(part).get_content_type()
        return self._types[key]

    def maintype(self, part: Message) -> str:
        return self.ctype(part).split("/")[0]

    def filename(self, part: Message) -> str | None:
        key = id(part)
        if key not in self._filenames:
            self._filenames[key] = _filename(self.fields(part))
        return self._filenames[key]

    def is_body_leaf(self, part: Message) -> bool:
        # Body text parts carry no filename; a named text part is an attachment.
        key = id(part)
        if key not in self._leaves:
            self._leaves[key] = (
                self.ctype(part) in ("text/plain", "text/html")
                and _disposition(self.fields(part)) != "attachment"
                and not self.filename(part)
            )
        return self._leaves[key]

    def text(self, part: Message) -> str:
        key = id(part)
        if key not in self._decoded:
            self._decoded[key] = _part_text(self.fields(part), self.ctype(part))
        return self._decoded[key]

    def attach(self, part: Message) -> None:
        ctype = self.ctype(part)
        if ctype not in _SKIP_TYPES:
            self.attachments.append(f"{self.filename(part) or 'unnamed'} ({ctype})")

    def list_all(self, part: Message, depth: int) -> None:
        """List the leaves of a part that is not used as body."""
        if part.is_multipart() and depth < _MAX_DEPTH and self.ctype(part) != ("message/rfc822"):
            for child in _children(part):
                self.list_all(child, depth + 1)
        elif not self.is_body_leaf(part):  # a text alternative we did not pick is no attachment
            self.attach(part)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _has_text(part: Message, walk: _Walk, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if walk.maintype(part) == "multipart":
        return any(_has_text(child, walk, depth + 1) for child in _children(part))
    return walk.is_body_leaf(part) and bool(walk.text(part).strip())


def _walk(part: Message, walk: _Walk, depth: int) -> None:
    ctype = walk.ctype(part)
    if depth > _MAX_DEPTH:
        walk.attach(part)
        return
    if walk.maintype(part) != "multipart":
        if walk.is_body_leaf(part):
            walk.texts.append(walk.text(part))
        else:
            walk.attach(part)
        return
    children = _children(part)
    if not children:
        return
    if ctype == "multipart/alternative":
        # Best first: plain, then html, then anything else that has text.
        def rank(child: Message) -> int:
            order = {"text/plain": 0, "text/html": 1}
            return order.get(walk.ctype(child), 2)

        chosen = next(
            (c for c in sorted(children, key=rank) if _has_text(c, walk, depth + 1)), children[0]
        )
        _walk(chosen, walk, depth + 1)
        for child in children:
            if child is not chosen:
                walk.list_all(child, depth + 1)
    elif ctype == "multipart/related":
        start = walk.fields(part).get_param("start")
        root = children[0]
        if isinstance(start, str):
            for child in children:
                if child.get("content-id", "").strip() == start.strip():
                    root = child
        _walk(root, walk, depth + 1)
        for child in children:
            if child is not root:
                walk.list_all(child, depth + 1)
    elif ctype in ("multipart/signed", "multipart/encrypted"):
        _walk(children[0], walk, depth + 1)
        for child in children[1:]:
            walk.list_all(child, depth + 1)
    else:  # mixed, digest, report, unknown: all inline text in order
        for child in children:
            _walk(child, walk, depth + 1)


def header_text(msg: Message, name: str) -> str:
    """A decoded header as one line ('' when absent); never raises."""
    with contextlib.suppress(Exception):  # malformed RFC 2047 word or bad charset
        value = field_value(msg, name) if type(msg) in _STDLIB_PARTS else msg.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    for key, raw in msg.raw_items():
        if key.lower() == name.lower():
            try:
                decoded = str(make_header(decode_header(str(raw))))
            except Exception:
                decoded = str(raw)
            return " ".join(decoded.split())
    return ""


def extract_body(msg: EmailMessage | Message) -> Body:
    """The readable text of a message and the list of what was not read."""
    walk = _Walk([], [])
    _walk(msg, walk, 0)
    text = "\n\n".join(t.strip("\n") for t in walk.texts if t.strip())
    truncated = len(text) > _MAX_BODY_CHARS
    # Only the top of a huge body can end up in an SMS; cap the work.
    return Body(text[:_MAX_BODY_CHARS], tuple(walk.attachments), truncated)


_FORWARD_SUBJECT: Final = re.compile(
    r"^\s*(?:fwd?|fw|wg|tr|rv|enc|i|doorst|trs)\s*:", re.IGNORECASE
)
_REPLY_PREFIX: Final = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|ref|rif|res|r|fwd?|fw|wg|tr|rv|enc|i|doorst)"
    r"(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
    re.IGNORECASE,
)


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD_SUBJECT.match(subject))


def clean_subject(subject: str) -> str:
    """Subject without Re:/Fwd:/AW:/WG:... prefixes, on one line."""
    return _REPLY_PREFIX.sub("", " ".join(subject.split())).strip()
