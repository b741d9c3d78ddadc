"""The Twilio adapter against a real HTTP server (tests.fakes.twilio), and the
webhook helpers against Twilio's published signature examples."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qsl

import httpx
import pytest

from mailsms.carriers.base import Carrier, OutboundSms
from mailsms.carriers.http import CarrierHttp
from mailsms.carriers.twilio import (
    IDEMPOTENCY_HEADER,
    TwilioCarrier,
    compute_signature,
    parse_inbound,
    parse_status,
    verify_signature,
)
from mailsms.errors import PermanentFailure, TemporaryFailure
from tests.fakes.twilio import FakeTwilio, ScriptedResponse


def make_sms(**overrides: object) -> OutboundSms:
    values: dict[str, object] = {
        "sms_id": "sms-0001",
        "to": "+14155551212",
        "from_": "+15005550006",
        "text": "Hello from mailsms",
        "encoding": "GSM-7",
        "segments": 1,
    }
    values.update(overrides)
    return OutboundSms(**values)  # type: ignore[arg-type]


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    # Same as tests.fakes.twilio.fake_twilio, defined here so this module runs
    # on its own (importing the fixture would trip ruff's F811 on every test).
    with FakeTwilio() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[CarrierHttp]:
    # The client the application gives its carriers (aiohttp underneath).
    async with CarrierHttp(5.0) as c:
        yield c


def carrier_for(
    server: FakeTwilio, client: CarrierHttp, *, auth_token: str | None = None
) -> TwilioCarrier:
    return TwilioCarrier(
        account_sid=server.account_sid,
        auth_token=server.auth_token if auth_token is None else auth_token,
        api_url=server.url,
        http=client,
    )


# --- send: success ------------------------------------------------------------


async def test_send_records_sid_and_fields(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    carrier: Carrier = carrier_for(fake_twilio, client)
    assert carrier.name == "twilio"

    result = await carrier.send(make_sms())

    [request] = fake_twilio.wait_for(1)
    assert result.carrier_id == request.sid
    assert result.carrier_id.startswith("SM") and len(result.carrier_id) == 34
    assert result.status == "sent"
    assert result.detail == "twilio status queued"
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert dict(request.fields) == {
        "To": "+14155551212",
        "From": "+15005550006",
        "Body": "Hello from mailsms",
    }
    assert request.header(IDEMPOTENCY_HEADER) == "sms-0001"


async def test_send_uses_basic_auth(fake_twilio: FakeTwilio, client: CarrierHttp) -> None:
    await carrier_for(fake_twilio, client).send(make_sms())

    [request] = fake_twilio.requests
    auth = request.header("authorization")
    assert auth is not None and auth.startswith("Basic ")
    decoded = base64.b64decode(auth.removeprefix("Basic ")).decode()
    assert decoded == f"{fake_twilio.account_sid}:{fake_twilio.auth_token}"


async def test_status_callback_only_when_given(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    carrier = carrier_for(fake_twilio, client)
    await carrier.send(make_sms(sms_id="a"))
    await carrier.send(make_sms(sms_id="b", status_callback="https://gw.example/twilio/status"))

    first, second = fake_twilio.wait_for(2)
    assert "StatusCallback" not in first.fields
    assert second.fields["StatusCallback"] == "https://gw.example/twilio/status"


async def test_unicode_body_is_form_encoded_as_utf8(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    text = "Grüße & ünïcödé = 100% 👍"
    await carrier_for(fake_twilio, client).send(make_sms(text=text, encoding="UCS-2"))

    [request] = fake_twilio.requests
    assert request.fields["Body"] == text
    assert dict(parse_qsl(request.body.decode("utf-8")))["Body"] == text


async def test_api_url_trailing_slash_is_tolerated(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    carrier = TwilioCarrier(
        account_sid=fake_twilio.account_sid,
        auth_token=fake_twilio.auth_token,
        api_url=fake_twilio.url + "/",
        http=client,
    )
    await carrier.send(make_sms())
    assert len(fake_twilio.requests) == 1


# --- send: failures -----------------------------------------------------------


async def test_missing_from_is_permanent_and_sends_nothing(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    with pytest.raises(PermanentFailure, match="no From number configured"):
        await carrier_for(fake_twilio, client).send(make_sms(from_=None))
    assert fake_twilio.attempts == 0


async def test_503_is_temporary(fake_twilio: FakeTwilio, client: CarrierHttp) -> None:
    fake_twilio.script(503)
    carrier = carrier_for(fake_twilio, client)

    with pytest.raises(TemporaryFailure) as info:
        await carrier.send(make_sms())
    assert "503" in str(info.value)
    assert info.value.retry_after is None

    # The script is used up: the next hand-over goes through.
    result = await carrier.send(make_sms())
    assert result.carrier_id == fake_twilio.requests[0].sid


async def test_500_without_json_is_temporary(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    fake_twilio.script(ScriptedResponse(502, body=b"<html>Bad Gateway</html>"))
    with pytest.raises(TemporaryFailure, match="502") as info:
        await carrier_for(fake_twilio, client).send(make_sms())
    assert info.value.code is None


async def test_429_honours_retry_after_seconds(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    fake_twilio.script(ScriptedResponse(429, headers={"Retry-After": "7"}))
    with pytest.raises(TemporaryFailure) as info:
        await carrier_for(fake_twilio, client).send(make_sms())
    assert info.value.retry_after == 7.0
    assert info.value.code == "20429"


async def test_429_honours_retry_after_http_date(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    fake_twilio.script(
        ScriptedResponse(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )
    with pytest.raises(TemporaryFailure) as info:
        await carrier_for(fake_twilio, client).send(make_sms())
    assert info.value.retry_after is not None
    assert 100 <= info.value.retry_after <= 121


async def test_invalid_to_is_permanent_with_twilio_code_and_message(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    # No script: the fake itself rejects a To that is not E.164, as Twilio does.
    with pytest.raises(PermanentFailure) as info:
        await carrier_for(fake_twilio, client).send(make_sms(to="0155512"))
    assert info.value.code == "21211"
    assert "The 'To' number 0155512 is not a valid phone number." in info.value.message
    assert str(info.value).endswith("(code 21211)")
    assert fake_twilio.requests == []


async def test_scripted_400_is_permanent(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    fake_twilio.script(
        ScriptedResponse(400, code=21610, message="Attempt to send to unsubscribed recipient")
    )
    with pytest.raises(PermanentFailure) as info:
        await carrier_for(fake_twilio, client).send(make_sms())
    assert info.value.code == "21610"
    assert "unsubscribed recipient" in info.value.message


async def test_wrong_token_is_permanent_and_never_shows_the_token(
    fake_twilio: FakeTwilio, client: CarrierHttp, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-secret-token-5f2a9c"
    carrier = carrier_for(fake_twilio, client, auth_token=secret)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(PermanentFailure) as info:
        await carrier.send(make_sms())

    failure = info.value
    assert failure.code == "20003"
    assert "refused the credentials" in str(failure)
    for text in (str(failure), repr(failure), failure.message, repr(carrier), caplog.text):
        assert secret not in text
    assert fake_twilio.requests == []


async def test_forbidden_is_permanent_credentials_failure(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    fake_twilio.script(ScriptedResponse(403, code=20403, message="Forbidden"))
    with pytest.raises(PermanentFailure, match="refused the credentials"):
        await carrier_for(fake_twilio, client).send(make_sms())


async def test_token_echoed_by_a_proxy_is_scrubbed(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    fake_twilio.script(
        ScriptedResponse(400, body=f"bad request for {fake_twilio.auth_token}".encode())
    )
    with pytest.raises(PermanentFailure) as info:
        await carrier_for(fake_twilio, client).send(make_sms())
    assert fake_twilio.auth_token not in str(info.value)
    assert "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"status": "queued"}', b'{"sid": ""}', b'{"sid": 42}'],
)
async def test_malformed_success_body_is_temporary(
    fake_twilio: FakeTwilio, client: CarrierHttp, body: bytes
) -> None:
    fake_twilio.script(ScriptedResponse(201, body=body))
    with pytest.raises(TemporaryFailure, match="without a message sid"):
        await carrier_for(fake_twilio, client).send(make_sms())


async def test_connection_refused_is_temporary(client: CarrierHttp) -> None:
    # Take a free port and release it, so nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    carrier = TwilioCarrier(
        account_sid="AC" + "0" * 32,
        auth_token="tok",
        api_url=f"http://127.0.0.1:{port}",
        http=client,
    )
    with pytest.raises(TemporaryFailure, match="could not reach Twilio"):
        await carrier.send(make_sms())


async def test_timeout_is_temporary(fake_twilio: FakeTwilio) -> None:
    fake_twilio.script(ScriptedResponse(201, delay=2.0))
    async with CarrierHttp(0.2) as short:
        with pytest.raises(TemporaryFailure, match="did not answer in time"):
            await carrier_for(fake_twilio, short).send(make_sms())


async def test_slow_server_within_timeout_succeeds(client: CarrierHttp) -> None:
    with FakeTwilio(delay=0.2) as server:
        result = await carrier_for(server, client).send(make_sms())
        assert result.carrier_id == (await server.wait_for_async(1))[0].sid


async def test_concurrent_sends_each_get_their_own_sid(
    fake_twilio: FakeTwilio, client: CarrierHttp
) -> None:
    carrier = carrier_for(fake_twilio, client)
    results = await asyncio.gather(
        *(carrier.send(make_sms(sms_id=f"sms-{i}", text=f"n{i}")) for i in range(20))
    )

    recorded = await fake_twilio.wait_for_async(20)
    assert len({r.carrier_id for r in results}) == 20
    by_sid = {r.sid: r for r in recorded}
    for i, result in enumerate(results):
        request = by_sid[result.carrier_id]
        assert request.fields["Body"] == f"n{i}"
        assert request.header(IDEMPOTENCY_HEADER) == f"sms-{i}"


def test_constructor_rejects_empty_credentials() -> None:
    client = CarrierHttp(1.0)
    with pytest.raises(ValueError, match="auth_token"):
        TwilioCarrier(account_sid="AC1", auth_token="", api_url="http://x", http=client)
    with pytest.raises(ValueError, match="account_sid"):
        TwilioCarrier(account_sid="", auth_token="t", api_url="http://x", http=client)


# --- the fake itself ------------------------------------------------------------


def test_fake_checks_requests_like_twilio() -> None:
    with FakeTwilio() as server:
        path = server.url + server.messages_path
        auth = (server.account_sid, server.auth_token)
        ok = {"To": "+14155551212", "From": "+15005550006", "Body": "x"}
        with httpx.Client() as c:
            assert c.post(path, data=ok, auth=auth).status_code == 201
            assert c.post(path, data=ok, auth=(server.account_sid, "nope")).status_code == 401
            assert c.post(path, data=ok).status_code == 401
            assert c.get(path, auth=auth).status_code == 405
            other = server.url + "/2010-04-01/Accounts/ACother/Messages.json"
            assert c.post(other, data=ok, auth=auth).status_code == 404
            missing = c.post(path, data={"From": "+15005550006", "Body": "x"}, auth=auth)
            assert (missing.status_code, missing.json()["code"]) == (400, 21604)
            no_from = c.post(path, data={"To": "+14155551212", "Body": "x"}, auth=auth)
            assert no_from.json()["code"] == 21603
            no_body = c.post(path, data={"To": "+14155551212", "From": "+1500"}, auth=auth)
            assert no_body.json()["code"] == 21602
            as_json = c.post(path, json=ok, auth=auth)
            assert (as_json.status_code, as_json.json()["code"]) == (400, 21604)
        assert len(server.requests) == 1
        assert server.attempts == 9
    with pytest.raises(TimeoutError, match="accepted 1 of 2"):
        server.wait_for(2, timeout=0.05)


# --- webhook signatures ---------------------------------------------------------

# Published examples: Twilio's request-validation docs (URL with a query
# string, auth token "12345") and twilio-ruby's validator spec.
DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_TOKEN = "12345"
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOCS_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

RUBY_URL = "http://twiliotests.heroku.com/validate/voice"
RUBY_TOKEN = "2bd9e9638872de601313dc77410d3b23"
RUBY_PARAMS = {
    "ToState": "California",
    "CalledState": "California",
    "Direction": "inbound",
    "FromState": "CA",
    "AccountSid": "ACba8bc05eacf94afdae398e642c9cc32d",
    "Caller": "+14153595711",
    "CallerZip": "94108",
    "CallerCountry": "US",
    "From": "+14153595711",
    "FromCity": "SAN FRANCISCO",
    "CallerCity": "SAN FRANCISCO",
    "To": "+14157669926",
    "FromZip": "94108",
    "FromCountry": "US",
    "ToCity": "",
    "CallStatus": "ringing",
    "CalledCity": "",
    "CallerState": "CA",
    "CalledZip": "",
    "ToZip": "",
    "ToCountry": "US",
    "CallSid": "CA136d09cd59a3c0ec8dbff44da5c03f31",
    "CalledCountry": "US",
    "Called": "+14157669926",
    "ApiVersion": "2010-04-01",
    "ApplicationSid": "AP44efecad51364e80b133bb7c07eb8204",
}
RUBY_SIGNATURE = "oVb2kXoVy8GEfwBDjR8bk/ZZ6eA="


def test_signature_matches_published_examples() -> None:
    assert compute_signature(DOCS_URL, DOCS_PARAMS, DOCS_TOKEN) == DOCS_SIGNATURE
    assert compute_signature(RUBY_URL, RUBY_PARAMS, RUBY_TOKEN) == RUBY_SIGNATURE
    assert verify_signature(DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE, DOCS_TOKEN)
    assert verify_signature(RUBY_URL, list(RUBY_PARAMS.items()), RUBY_SIGNATURE, RUBY_TOKEN)


def test_signature_independent_computation_with_repeated_keys() -> None:
    url = "https://gw.example/twilio/inbound?x=1"
    pairs = [("To", "+2"), ("MediaUrl", "https://b"), ("From", "+1"), ("MediaUrl", "https://a")]
    data = url + "From+1" + "MediaUrlhttps://a" + "MediaUrlhttps://b" + "To+2"
    expected = base64.b64encode(hmac.new(b"tok", data.encode(), hashlib.sha1).digest()).decode()
    assert compute_signature(url, pairs, "tok") == expected
    assert compute_signature(url, list(reversed(pairs)), "tok") == expected


@pytest.mark.parametrize(
    ("url", "params", "signature", "token"),
    [
        (DOCS_URL, {**DOCS_PARAMS, "Digits": "1235"}, DOCS_SIGNATURE, DOCS_TOKEN),
        (DOCS_URL, {**DOCS_PARAMS, "Extra": ""}, DOCS_SIGNATURE, DOCS_TOKEN),
        (DOCS_URL + "&baz=3", DOCS_PARAMS, DOCS_SIGNATURE, DOCS_TOKEN),
        (DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE, "54321"),
        (DOCS_URL, DOCS_PARAMS, "", DOCS_TOKEN),
        (DOCS_URL, DOCS_PARAMS, "garbage", DOCS_TOKEN),
    ],
)
def test_tampered_request_fails_verification(
    url: str, params: dict[str, str], signature: str, token: str
) -> None:
    assert not verify_signature(url, params, signature, token)


def test_verification_tolerates_default_port_either_way() -> None:
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert verify_signature(with_port, DOCS_PARAMS, DOCS_SIGNATURE, DOCS_TOKEN)
    signed_with_port = compute_signature(with_port, DOCS_PARAMS, DOCS_TOKEN)
    assert verify_signature(DOCS_URL, DOCS_PARAMS, signed_with_port, DOCS_TOKEN)


# --- webhook parsing ------------------------------------------------------------

INBOUND = {
    "MessageSid": "SM" + "a" * 32,
    "SmsSid": "SM" + "a" * 32,
    "AccountSid": "AC" + "b" * 32,
    "From": "+14155550100",
    "To": "+15005550006",
    "Body": "Hi there",
    "NumMedia": "2",
    "MediaUrl0": "https://api.twilio.com/media/0",
    "MediaContentType0": "image/jpeg",
    "MediaUrl1": "https://api.twilio.com/media/1",
    "MediaContentType1": "image/png",
}


def test_parse_inbound() -> None:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    sms = parse_inbound(INBOUND, received_at=at)
    assert sms.carrier_id == INBOUND["MessageSid"]
    assert (sms.from_, sms.to, sms.text) == ("+14155550100", "+15005550006", "Hi there")
    assert sms.received_at == at
    assert sms.media_urls == ("https://api.twilio.com/media/0", "https://api.twilio.com/media/1")


def test_parse_inbound_minimal() -> None:
    form = {"SmsSid": "SM1", "From": "+1", "To": "+2", "Body": ""}
    sms = parse_inbound(form)
    assert sms.carrier_id == "SM1"
    assert sms.text == ""
    assert sms.media_urls == ()
    assert sms.received_at.tzinfo is not None


@pytest.mark.parametrize(
    ("remove", "changes", "field"),
    [
        (("MessageSid", "SmsSid"), {}, "MessageSid or SmsSid"),
        (("From",), {}, "From"),
        (("To",), {}, "To"),
        (("Body",), {}, "Body"),
        (("MediaUrl1",), {}, "MediaUrl1"),
        ((), {"NumMedia": "two"}, "NumMedia"),
        ((), {"NumMedia": "-1"}, "NumMedia"),
    ],
)
def test_parse_inbound_rejects_incomplete_payload(
    remove: tuple[str, ...], changes: dict[str, str], field: str
) -> None:
    form = {k: v for k, v in INBOUND.items() if k not in remove} | changes
    with pytest.raises(ValueError, match=field):
        parse_inbound(form)


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("canceled", "failed"),
        ("queued", "sending"),
        ("accepted", "sending"),
        ("scheduled", "sending"),
        ("sending", "sending"),
        ("something-new", "sending"),
    ],
)
def test_parse_status_maps_statuses(twilio: str, ours: str) -> None:
    report = parse_status({"MessageSid": "SM1", "MessageStatus": twilio})
    assert (report.carrier_id, report.status) == ("SM1", ours)


def test_parse_status_with_error_code() -> None:
    report = parse_status(
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    )
    assert report.status == "undelivered"
    assert report.error_code == "30003"
    assert report.error_text is not None
    assert "Unreachable destination handset" in report.error_text
    assert "30003" in report.error_text


def test_parse_status_unknown_error_code_and_no_code() -> None:
    report = parse_status({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "12345"})
    assert report.error_code == "12345"
    assert report.error_text is not None and "12345" in report.error_text

    plain = parse_status({"MessageSid": "SM1", "MessageStatus": "delivered", "ErrorCode": ""})
    assert (plain.error_code, plain.error_text) == (None, None)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"MessageStatus": "sent"}, "MessageSid or SmsSid"),
        ({"MessageSid": "SM1"}, "MessageStatus or SmsStatus"),
        ({"MessageSid": "SM1", "MessageStatus": ""}, "MessageStatus"),
    ],
)
def test_parse_status_rejects_incomplete_payload(form: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_status(form)
