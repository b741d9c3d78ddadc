"""The MIME walk's header shortcuts agree with email.policy.default.

* ``mime._plain_field`` (the text of a plain Content-Type, -Disposition,
  -Transfer-Encoding or Subject without the header registry's parse) is the
  text the registry gives, wherever it answers;
* a part read through ``mime._FieldsOnce`` (each field parsed once) answers
  every question the walk asks exactly as the part itself does.
"""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy

from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from mailsms.text import mime
from mailsms.text.parsing import PARSE_POLICY

POLICIES = [policy.default, PARSE_POLICY, policy.SMTP]

# Values around the edges of the plain grammar: tokens, quoted strings with
# and without spaces or escapes, comments, RFC 2231, encoded words, folding.
_TOKENS = st.sampled_from(
    ["text", "plain", "html", "multipart", "mixed", "a", "x.y", "a+b", "UTF-8", "7bit", "base64",
     "quoted-printable", "`{|}~", "!#$&^_-", "inline", "attachment", "flowed", "yes", "Q"]
)  # fmt: skip
_QUOTED = st.lists(
    st.sampled_from(["a", " ", "\t", "b c", "/", ";", "=", "(", ")", "<>", "@", ",", ":", "[", "]",
                     "'", "*", "%", "?", "é", "\\", '"', "\x00", "----=_Part_1", ""]),
    max_size=4,
).map(lambda pieces: '"' + "".join(pieces) + '"')  # fmt: skip
_NAMES = st.one_of(_TOKENS, st.sampled_from(["charset", "charset", "Charset", "name", "filename"]))
_PLAIN_QUOTED = st.text(st.sampled_from("abc./=_-:,()<>@[]?'"), max_size=6).map(
    lambda text: f'"{text}"'
)


def _parameterized(first: str, second: str | None, parameters: list[str]) -> str:
    return first + (f"/{second}" if second else "") + "".join(parameters)


# Values the shortcut takes (varied in what the registry renders anew)...
_PLAIN = st.builds(
    _parameterized,
    _TOKENS,
    st.one_of(_TOKENS, st.none()),
    st.lists(
        st.builds(
            lambda separator, name, value: f"{separator}{name}={value}",
            st.sampled_from([";", "; ", ";\t", ";\r\n\t", ";  "]),
            _NAMES,
            st.one_of(_TOKENS, _PLAIN_QUOTED),
        ),
        max_size=4,
    ),
)
# ... and the usual deviations from them.
_STRUCTURED = st.builds(
    lambda lead, value, tail: lead + value + tail,
    st.sampled_from(["", "", "", " ", "\t"]),
    st.builds(
        _parameterized,
        _TOKENS,
        st.one_of(_TOKENS, st.none()),
        st.lists(
            st.builds(
                lambda separator, name, equals, value: f"{separator}{name}{equals}{value}",
                st.sampled_from([";", "; ", " ;", ";\r\n\t"]),
                st.one_of(_NAMES, st.sampled_from(["name*", "a*0", "a*1", "name*0*"])),
                st.sampled_from(["=", "=", " =", "= "]),
                st.one_of(_TOKENS, _PLAIN_QUOTED, _QUOTED, st.just("utf-8''a%41")),
            ),
            max_size=3,
        ),
    ),
    st.sampled_from(["", "", "", " ", ";", " (comment)", "=?utf-8?q?x?="]),
)
_PIECES = st.sampled_from(
    ["text", "/", ";", " ", "\t", "=", '"', "\\", "(c)", "(", ")", "charset", "utf-8", "name", "*",
     "'", "%41", "=?utf-8?q?x?=", "?=", "=?", "?", ",", ":", "é", "\x00", "\x7f", "\r\n ", "\n",
     "\r", "x.y", "<", ">", "@", "[", "]", "{", "}", "`", "~"]
)  # fmt: skip
VALUES = st.one_of(
    _PLAIN, _STRUCTURED, st.lists(_PIECES, max_size=12).map("".join), st.text(max_size=20)
)
FIELDS = st.sampled_from([*sorted(mime._PLAIN_FIELDS), "content-id", "to"])


@settings(max_examples=2000, deadline=None)
@given(VALUES, FIELDS, st.sampled_from(POLICIES))
def test_plain_field_is_the_registry_text(value: str, name: str, reader: Policy) -> None:
    plain = mime._plain_field(reader, name, value)
    if plain is not None:
        assert plain == str(reader.header_fetch_parse(name, value))


@settings(max_examples=1000, deadline=None)
@given(_PLAIN, st.sampled_from(POLICIES))
def test_plain_parameters_are_rendered_like_the_registry(value: str, reader: Policy) -> None:
    name = "content-type" if "/" in value.partition(";")[0] else "content-disposition"
    plain = mime._plain_field(reader, name, value)
    names = [p.partition("=")[0].strip().lower() for p in value.split(";")[1:]]
    # Taken unless a name repeats (the registry drops repeats) or an encoded word may start.
    if len(set(names)) == len(names) and "=?" not in value:
        assert plain is not None
    if plain is not None:
        assert plain == str(reader.header_fetch_parse(name, value))


def test_plain_field_answers_for_common_values() -> None:
    """The shortcut is taken for what mail clients actually write."""
    cases = {
        ("content-type", 'text/plain; charset="UTF-8"'): 'text/plain; charset="UTF-8"',
        ("content-type", "text/plain;\r\n\tcharset=us-ascii"): 'text/plain; charset="us-ascii"',
        ("content-type", 'multipart/alternative; boundary="000000000000e3c4a9061a"'): (
            'multipart/alternative; boundary="000000000000e3c4a9061a"'
        ),
        ("content-type", "text/plain; charset=utf-8; format=flowed; delsp=yes"): (
            'text/plain; charset="utf-8"; format="flowed"; delsp="yes"'
        ),
        ("content-disposition", 'attachment; filename="report.pdf"'): (
            'attachment; filename="report.pdf"'
        ),
        ("content-transfer-encoding", "quoted-printable"): "quoted-printable",
        ("subject", "Re: lunch\r\n tomorrow?"): "Re: lunch tomorrow?",
    }
    for (name, value), text in cases.items():
        for reader in POLICIES:
            assert mime._plain_field(reader, name, value) == text
            assert str(reader.header_fetch_parse(name, value)) == text


def test_plain_field_edge_values() -> None:
    """Duplicates (the registry keeps the first), empty values, odd spacing."""
    values = [
        "text/plain; charset=a; charset=b", "text/plain; charset=a; Charset=b",
        'text/plain; charset=""', 'text/plain; name="a  b "', "text/plain ; charset=a",
        "text/plain;charset=a", "text/plain;", "text/plain; charset = a", " text/plain",
        "text / plain", "text/plain; charset=a;", "inline; filename=a; filename=b",
        "text/plain; name*=UTF-8", "text/plain; a*0=x; a*1=y", "inline; filename*=a%41",
    ]  # fmt: skip
    for value in values:
        for name in ("content-type", "content-disposition"):
            plain = mime._plain_field(policy.default, name, value)
            assert plain is None or plain == str(policy.default.header_fetch_parse(name, value))


def test_plain_field_only_under_the_default_reading() -> None:
    assert mime._plain_field(policy.compat32, "subject", "hi") is None
    remapped = HeaderRegistry()
    remapped.map_to_type("content-type", UnstructuredHeader)
    other = policy.default.clone(header_factory=remapped)
    assert mime._plain_field(other, "content-type", "text/plain") is None
    assert mime._plain_field(policy.default, "content-type", "text/plain") == "text/plain"


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:
        return type(exc)


def _answers(part: Message) -> list[object]:
    """Every question the walk asks of a part."""
    return [
        _outcome(part.get_content_type),
        _outcome(part.get_content_disposition),
        _outcome(part.get_filename),
        _outcome(part.get_content_charset),
        _outcome(lambda: part.get_params(failobj=[])),
        _outcome(lambda: part.get_param("start")),
        _outcome(lambda: part.get_param("filename", header="content-disposition")),
        _outcome(lambda: part.get_payload(decode=True)),
        _outcome(part.get_payload),
    ]


def _message(reader: Policy, fields: list[tuple[str, str]], body: bytes) -> Message:
    head = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in fields)
    try:
        return BytesParser(_class=EmailMessage, policy=reader).parsebytes(head + b"\r\n" + body)
    except TypeError:
        # The standard library's own parser can fail to build the part at
        # all (compat32 on RFC 2231 parameters that mix a numbered and an
        # unnumbered continuation: decode_params sorts None against 0).
        # There is then no part to compare with.
        reject()


_HEADER_NAMES = st.sampled_from(
    ["Content-Type", "content-type", "Content-Disposition", "Content-Transfer-Encoding", "Subject"]
)
_BODIES = st.sampled_from([b"hello", b"aGVsbG8=\r\n", b"caf=C3=A9", b"\xc3\xa9t\xe9", b""])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_HEADER_NAMES, VALUES), max_size=5),
    _BODIES,
    st.sampled_from([*POLICIES, policy.compat32]),
)
@example(  # the stdlib parser itself raises here (see _message)
    [("Content-Type", "multipart/text;name*0*=utf-8''a%41;name*=utf-8''a%41")],
    b"hello",
    policy.compat32,
)
def test_fields_once_answers_like_the_part(
    fields: list[tuple[str, str]], body: bytes, reader: Policy
) -> None:
    part = _message(reader, fields, body)
    view = mime._read_once(part)
    assert isinstance(view, mime._FieldsOnce)
    assert _answers(view) == _answers(part)
    assert _answers(view) == _answers(part)  # and again, from the memo
    try:
        value = part.get("subject")
        subject = "" if value is None else " ".join(str(value).split())
    except Exception:
        return  # header_text's fallback for unreadable fields, the same code either way
    assert mime.header_text(part, "subject") == subject
