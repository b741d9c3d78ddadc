"""Unit tests for MIME decoding, HTML conversion and quote/signature stripping."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.text import TextError, TextOptions, email_to_sms, format_preview, preview
from mailsms.text.html import html_to_text
from mailsms.text.mime import clean_subject, decode_bytes, extract_body
from mailsms.text.quotes import strip_reply


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# -- charsets and transfer encodings -------------------------------------------


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("Grüße".encode("iso-8859-1"), "iso-8859-1", "Grüße"),
        ("“quoted”".encode("cp1252"), "iso-8859-1", "“quoted”"),  # mislabelled 1252
        ("Grüße".encode(), None, "Grüße"),
        ("Grüße".encode(), "no-such-charset", "Grüße"),
        ("Grüße".encode("cp1252"), "no-such-charset", "Grüße"),
        (b"\xff\xfe\xfa", "utf-8", "\ufffd\ufffd\ufffd"),
        ("Привет".encode("koi8-r"), "KOI8-R", "Привет"),
        ("日本".encode("iso-2022-jp"), "iso-2022-jp", "日本"),
        ("中文".encode("gb18030"), "gb2312", "中文"),
        (b"+AKM-1", "utf-7", "£1"),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str) -> None:
    assert decode_bytes(data, charset) == expected


def test_broken_base64_and_missing_content_type() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"SGVsbG8gd29ybGQ=\r\n!!!garbage"
    )
    conversion = email_to_sms(_parse(raw), TextOptions())
    assert conversion.messages[0].text.startswith("Hello world")


def test_rfc2047_filename_and_bad_subject() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: =?x-bogus?Q?caf=E9?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee attachment.\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf\r\n\r\n"
        b"xxx\r\n--b--\r\n"
    )
    report = preview(raw, TextOptions(subject_policy="prepend"))
    assert report["attachments"] == ["Rechnung März.pdf (application/octet-stream)"]
    texts = report["texts"]
    assert isinstance(texts, list)
    assert texts[0].endswith("See attachment.")


def test_format_flowed_unwrapped() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n"
        b"This is a long para \r\ngraph that wraps.\r\nNew line.\r\n"
    )
    assert extract_body(_parse(raw)).text == "This is a long paragraph that wraps.\nNew line."


def test_depth_bomb_does_not_recurse_forever() -> None:
    depth = 60
    head = b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = b""
    for level in range(depth):
        boundary = f"b{level}"
        parts += f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode()
        parts += f"--{boundary}\r\n".encode()
    parts += b"Content-Type: text/plain\r\n\r\ndeep text\r\n"
    for level in reversed(range(depth)):
        parts += f"--b{level}--\r\n".encode()
    with pytest.raises(TextError):
        email_to_sms(_parse(head + parts), TextOptions())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2000))
def test_preview_never_crashes_on_garbage(payload: bytes) -> None:
    raw = (
        b"From: a@example.com\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="z"\r\n\r\n--z\r\n'
        b"Content-Type: text/html; charset=windows-1252\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + payload + b"\r\n--z--\r\n"
    )
    report = preview(raw, TextOptions())
    assert "error" in report or report["segments"]
    assert isinstance(format_preview(report), str)


# -- HTML -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a href="https://x.example/a">docs</a>', "docs (https://x.example/a)"),
        ('<a href="https://x.example/">https://x.example/</a>', "https://x.example/"),
        ('<a href="https://x.example">https://x.example/</a>', "https://x.example"),
        ('<a href="mailto:bob@example.com">bob@example.com</a>', "bob@example.com"),
        ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
        ("<p>a &amp; b &lt;c&gt; &eacute; &#8364;</p>", "a & b <c> é €"),
        ("<div>line 1</div><div>line 2</div><div><br></div><div>para</div>",
         "line 1\nline 2\n\npara"),
        ("<h1>Title</h1><p>Body</p>", "Title\n\nBody"),
        ("<style>p{color:red}</style><script>alert(1)</script><p>Visible</p>", "Visible"),
        ("<p>1_000 * 2 = [x]</p>", "1_000 * 2 = [x]"),
        ('<img src="cid:x" alt="logo"><p>Text</p>', "Text"),
    ],
)  # fmt: skip
def test_html_to_text(html: str, expected: str) -> None:
    text = html_to_text(html).strip()
    collapsed = text
    while "\n\n\n" in collapsed:
        collapsed = collapsed.replace("\n\n\n", "\n\n")
    assert collapsed == expected
    assert "<" not in text.replace("<c>", "")


# -- quotes and signatures --------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "On Tue, Mar 12, 2024 at 10:15 AM Alice <alice@example.com> wrote:",
        "On 12 Mar 2024, at 10:15, Alice <alice@example.com> wrote:",
        "Am 12.03.2024 um 10:15 schrieb Alice <alice@example.com>:",
        "Le 12 mars 2024 à 10:15, Alice <alice@example.com> a écrit :",
        "El 12 mar 2024, a las 10:15, Alice <alice@example.com> escribió:",
        "Il giorno 12 mar 2024, alle ore 10:15, Alice ha scritto:",
        "Em 12 de mar. de 2024, à(s) 10:15, Alice <alice@example.com> escreveu:",
        "No dia 12/03/2024, às 10:15, Alice escreveu:",
        "Op 12 mrt. 2024 om 10:15 heeft Alice <alice@example.com> het volgende geschreven:",
        "Op di 12 mrt 2024 om 10:15 schreef Alice <alice@example.com>:",
        "Den 12. mar. 2024 kl. 10.15 skrev Alice <alice@example.com>:",  # mail-parser-reply
    ],
)
def test_attributions_cut_unquoted_original(header: str) -> None:
    text = f"My answer.\n\n{header}\n\nThe original, not quoted.\nSecond line."
    result = strip_reply(text)
    assert result.text == "My answer."
    assert result.removed == ("quote",)


@pytest.mark.parametrize(
    "block",
    [
        "From: A\nSent: Tuesday\nTo: B\nSubject: X",
        "Von: A\nGesendet: Dienstag\nAn: B\nBetreff: X",
        "De : A\nEnvoyé : mardi\nÀ : B\nObjet : X",
        "De: A\nEnviado: martes\nPara: B\nAsunto: X",
        "Da: A\nInviato: martedì\nA: B\nOggetto: X",
        "De: A\nEnviado: terça-feira\nPara: B\nAssunto: X",
        "Van: A\nVerzonden: dinsdag\nAan: B\nOnderwerp: X",
        "-----Original Message-----\nFrom: A",
        "-----Message d'origine-----\nDe : A",
        "-----Mensaje original-----\nDe: A",
        "-----Messaggio originale-----\nDa: A",
        "-----Mensagem original-----\nDe: A",
        "-----Oorspronkelijk bericht-----\nVan: A",
    ],
)
def test_outlook_blocks(block: str) -> None:
    result = strip_reply(f"Done.\n\n{block}\n\nOriginal text.")
    assert result.text == "Done."


@pytest.mark.parametrize(
    "signoff",
    [
        "Sent from my iPhone",
        "Sent from my Galaxy",
        "Get Outlook for iOS",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Inviato da iPhone",
        "Enviado do meu iPhone",
        "Verzonden vanaf mijn iPhone",
        "--",
    ],
)
def test_mobile_signoffs(signoff: str) -> None:
    result = strip_reply(f"On my way.\n\n{signoff}\nmore")
    assert result.text == "On my way."
    assert result.removed == ("signature",)


def test_lists_and_thanks_lines_are_content() -> None:
    text = "Thanks, I'll be there at 5.\n- bring the keys\n- lock the door"
    assert strip_reply(text).text == text


def test_valediction_alone_is_kept() -> None:
    assert strip_reply("Thanks!").text == "Thanks!"


def test_quoted_lines_removed_and_forward_subject_hint() -> None:
    text = "> old\nnew\n> old again"
    assert strip_reply(text) == type(strip_reply(text))("new", ("quote",))
    outlook_forward = "\nFrom: NOC\nSent: today\nTo: ops\nSubject: alert\n\nLink down."
    assert strip_reply(outlook_forward, forward_hint=True).text == "Link down."
    assert strip_reply(outlook_forward).text == ""


def test_subject_cleaning() -> None:
    assert clean_subject("Re: RE: Fwd:  Disk\n full") == "Disk full"
    assert clean_subject("AW: WG: TR: RV: I: Doorst: Hello") == "Hello"
    assert clean_subject("Reminder: meeting") == "Reminder: meeting"
