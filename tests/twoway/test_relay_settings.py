"""The relay that replies and bounces go out through, as an operator sets it
up: a smarthost whose certificate comes from a private CA
(``MAILSMS_RELAY_CA_FILE``), and relay settings the gateway cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsms.app import Gateway
from mailsms.config import SettingsError
from mailsms.store.models import MailStatus
from tests.conftest import prepare_store
from tests.fakes.smtp_sink import SmtpSinkFactory
from tests.fakes.twilio import FakeTwilio
from tests.twoway.conftest import TwoWay, eventually, two_way_settings

POOL = "+14155550100"


async def test_replies_reach_a_relay_with_a_private_ca_over_starttls(
    tmp_path: Path, fake_twilio: FakeTwilio, smtp_sink_factory: SmtpSinkFactory
) -> None:
    sink = await smtp_sink_factory(tls="starttls")
    settings, record = two_way_settings(
        tmp_path,
        fake_twilio,
        sink.port,
        relay_host="localhost",  # the name on the relay's certificate
        relay_security="starttls",
        relay_ca_file=sink.write_ca(tmp_path / "relay-ca.pem"),
        catch_all="ops@corp.example",
    )
    store = prepare_store(settings, senders=("alice@corp.example",))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        tw = TwoWay(gateway, settings, store, fake_twilio, sink, record)
        answer = await tw.phone_says("gate is open", "+14155558888", POOL, "SM" + "c" * 32)
        assert answer.status_code == 200
        [delivered] = await sink.wait_for(1, timeout=10)
        assert delivered.tls
        assert delivered.rcpt_tos == ("ops@corp.example",)
        assert b"gate is open" in delivered.content
        await eventually(lambda: store.list_mail(MailStatus.SENT))
    finally:
        await gateway.stop()


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"relay_ca_file": "MISSING"}, "cannot read the CA file"),
        ({"relay_ca_file": "GARBAGE"}, "holds no usable certificate"),
        ({"relay_username": "mailsms"}, "username and password must be given together"),
    ],
    ids=["ca-missing", "ca-garbage", "login-without-password"],
)
async def test_unusable_relay_settings_stop_start_up_with_one_line(
    tmp_path: Path, fake_twilio: FakeTwilio, overrides: dict[str, str], words: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    paths = {"MISSING": tmp_path / "missing.pem", "GARBAGE": garbage}
    values = {k: paths.get(v, v) for k, v in overrides.items()}
    settings, _ = two_way_settings(tmp_path, fake_twilio, 25, **values)
    prepare_store(settings)
    gateway = Gateway(settings)
    with pytest.raises(SettingsError) as info:
        await gateway.start()
    await gateway.stop()
    message = str(info.value)
    assert message.startswith("invalid relay settings (MAILSMS_RELAY_*): ")
    assert words in message and "\n" not in message
