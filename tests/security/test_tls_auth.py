"""STARTTLS (RFC 3207), implicit TLS (RFC 8314) and SMTP AUTH (RFC 4954)
against the real listeners, with certificates made by trustme."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from mailsms.app import Gateway, StartupError
from mailsms.config import SettingsError
from tests.conftest import DOMAIN, SENDER, make_settings, prepare_store, wait_outbox
from tests.core.test_smtp_gateway import simple_message, smtp_reply
from tests.security.conftest import RawSmtp, Tls

PASSWORD = "correct horse battery staple"


def tls_settings(tls: Tls, **more: Any) -> dict[str, Any]:
    return {"tls_cert_file": tls.cert_file, "tls_key_file": tls.key_file, **more}


def plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


async def test_auth_after_starttls_sends(
    start_gateway: Any, tls_files: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with start_gateway(
        policies={SENDER: "smtp-auth"}, passwords={SENDER: PASSWORD}, **tls_settings(tls_files)
    ) as (gw, settings, store):
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=gw.smtp_port,
            start_tls=True,
            tls_context=tls_files.client_context(),
        )
        async with client:
            response = await client.login(SENDER, PASSWORD)
            assert (response.code, response.message[:6]) == (235, "2.7.0 ")
            await client.send_message(simple_message("sent over TLS"))
        sms = await wait_outbox(settings.console_outbox, 1)
        assert sms[0]["text"] == "sent over TLS"
        email = store.list_emails()[0]
    assert email.auth_results == f"sms.localhost; auth=pass smtp.auth={SENDER}"
    # Neither the password nor its base64 form is ever logged.
    assert PASSWORD not in caplog.text
    assert plain(SENDER, PASSWORD) not in caplog.text
    assert base64.b64encode(PASSWORD.encode()).decode() not in caplog.text


async def test_auth_login_mechanism_works_too(start_gateway: Any, tls_files: Tls) -> None:
    async with start_gateway(
        policies={SENDER: "smtp-auth"}, passwords={SENDER: PASSWORD}, **tls_settings(tls_files)
    ) as (gw, _settings, _store), aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=gw.smtp_port,
        start_tls=True,
        tls_context=tls_files.client_context(),
    ) as client:
        await client.ehlo()
        response = await client.auth_login(SENDER, PASSWORD)
        assert response.code == 235


async def test_auth_without_tls_is_refused_with_538(start_gateway: Any, tls_files: Tls) -> None:
    async with start_gateway(
        passwords={SENDER: PASSWORD}, **tls_settings(tls_files)
    ) as (gw, _settings, _store):
        client = await RawSmtp.connect(gw.smtp_port)
        code, text = await client.command("EHLO client.example")
        assert code == 250
        assert "STARTTLS" in text
        assert "AUTH" not in text  # never offered in clear text
        code, text = await client.command(f"AUTH PLAIN {plain(SENDER, PASSWORD)}")
        assert (code, text[:7]) == (538, "5.7.11 "), text
        await client.close()


async def test_bad_password_gets_535_and_the_third_failure_closes(
    start_gateway: Any, tls_files: Tls
) -> None:
    async with start_gateway(
        passwords={SENDER: PASSWORD}, **tls_settings(tls_files)
    ) as (gw, _settings, _store):
        client = await RawSmtp.connect(gw.smtp_port)
        await client.command("EHLO client.example")
        assert (await client.command("STARTTLS"))[0] == 220
        await client.writer.start_tls(tls_files.client_context(), server_hostname="127.0.0.1")
        code, text = await client.command("EHLO client.example")
        assert "AUTH LOGIN PLAIN" in text
        for login in (SENDER, "nobody@corp.example"):
            code, text = await client.command(f"AUTH PLAIN {plain(login, 'wrong password')}")
            assert (code, text[:6]) == (535, "5.7.8 "), text
        code, text = await client.command(f"AUTH PLAIN {plain(SENDER, 'wrong again')}")
        assert (code, text[:6]) == (421, "4.7.0 "), text
        assert await client.reader.read() == b""  # the server hung up
        client.writer.close()


async def test_authenticated_user_cannot_send_as_someone_else(
    start_gateway: Any, tls_files: Tls
) -> None:
    async with start_gateway(
        senders=(SENDER, "bob@corp.example"),
        passwords={SENDER: PASSWORD},
        **tls_settings(tls_files),
    ) as (gw, _settings, store):
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=gw.smtp_port,
            start_tls=True,
            tls_context=tls_files.client_context(),
        ) as client:
            await client.login(SENDER, PASSWORD)
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as at_mail:
                await client.send_message(
                    simple_message(sender="bob@corp.example"), sender="bob@corp.example"
                )
            assert smtp_reply(at_mail.value)[0] == 550
            with pytest.raises(aiosmtplib.SMTPDataError) as at_data:
                await client.send_message(simple_message(sender="bob@corp.example"), sender=SENDER)
            code, text = smtp_reply(at_data.value)
            assert (code, text[:6]) == (550, "5.7.1 ")
            assert f"authenticated as {SENDER}" in text
        assert store.list_emails() == []


async def test_domain_identity_may_send_for_its_domain(start_gateway: Any, tls_files: Tls) -> None:
    async with start_gateway(
        senders=("@corp.example",),
        policies={"@corp.example": "smtp-auth"},
        passwords={"@corp.example": PASSWORD},
        **tls_settings(tls_files),
    ) as (gw, settings, _store):
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=gw.smtp_port,
            start_tls=True,
            tls_context=tls_files.client_context(),
        ) as client:
            await client.login("@corp.example", PASSWORD)
            await client.send_message(simple_message("via the domain login"))
        await wait_outbox(settings.console_outbox, 1)


async def test_implicit_tls_port(start_gateway: Any, tls_files: Tls) -> None:
    async with start_gateway(
        policies={SENDER: "smtp-auth"},
        passwords={SENDER: PASSWORD},
        submissions_port=0,
        **tls_settings(tls_files),
    ) as (gw, settings, _store):
        assert gw.submissions_server is not None
        port = gw.submissions_server.sockets[0].getsockname()[1]
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, use_tls=True, tls_context=tls_files.client_context()
        ) as client:
            ehlo = await client.ehlo()
            assert "AUTH" in ehlo.message and "STARTTLS" not in ehlo.message
            await client.login(SENDER, PASSWORD)
            await client.send_message(simple_message("implicit TLS"))
        sms = await wait_outbox(settings.console_outbox, 1)
        assert sms[0]["text"] == "implicit TLS"


async def test_require_starttls_refuses_mail_before_tls(
    start_gateway: Any, tls_files: Tls
) -> None:
    async with start_gateway(require_starttls=True, **tls_settings(tls_files)) as (gw, _s, _st):
        client = await RawSmtp.connect(gw.smtp_port)
        await client.command("EHLO client.example")
        code, text = await client.command(f"MAIL FROM:<{SENDER}>")
        assert (code, text[:6]) == (530, "5.7.0 "), text
        await client.close()


@pytest.mark.parametrize(
    ("overrides", "expected", "words"),
    [
        ({"tls_cert_file": "CERT"}, SettingsError, "MAILSMS_TLS_KEY_FILE"),
        ({"submissions_port": 0}, SettingsError, "MAILSMS_SUBMISSIONS_PORT"),
        ({"tls_cert_file": "GARBAGE", "tls_key_file": "GARBAGE"}, StartupError, "TLS"),
        ({"tls_cert_file": "MISSING", "tls_key_file": "MISSING"}, StartupError, "TLS"),
    ],
)
async def test_invalid_tls_settings_stop_start_up_with_one_line(
    tmp_path: Path,
    tls_files: Tls,
    overrides: dict[str, Any],
    expected: type[Exception],
    words: str,
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    paths = {
        "CERT": tls_files.cert_file,
        "GARBAGE": garbage,
        "MISSING": tmp_path / "missing.pem",
    }
    values = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    settings = make_settings(tmp_path, **values)
    prepare_store(settings)
    gateway = Gateway(settings)
    with pytest.raises(expected) as info:
        await gateway.start()
    message = str(info.value)
    assert words in message
    assert "\n" not in message
    assert "not a certificate" not in message
    assert DOMAIN  # the domain constant is imported for symmetry with core tests
