"""SMS replies land in the sender's inbox, threaded, and a plain Reply
texts back: over real sockets end to end (smtplib -> listener -> fake
Twilio; signed webhook -> gateway -> aiosmtpd sink as smarthost)."""

from __future__ import annotations

import asyncio
import re
import smtplib
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid

import dkim
import httpx
import pytest

from mailsms.store.models import InboundStatus, MailStatus, SmsStatus
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio import ScriptedResponse
from tests.twoway.conftest import DOMAIN, SELECTOR, TwoWay, eventually

ALICE = "alice@corp.example"
BOB = "bob@corp.example"
PHONE = "+14155551212"
POOL_A = "+14155550100"
POOL_B = "+14155550101"


def email(
    sender: str, to: str, text: str, subject: str = "Dinner plans", **headers: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="corp.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


async def smtp_send(tw: TwoWay, msg: EmailMessage, sender: str | None = None) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", tw.gateway.smtp_port, timeout=10) as client:
            client.send_message(msg, from_addr=sender)

    await asyncio.to_thread(send)


def dkim_dns(record: str) -> dict[bytes, bytes]:
    name = record.split()[0]
    value = "".join(re.findall(r'"([^"]*)"', record))
    return {f"{name}.".encode(): value.encode()}


def verify_dkim(content: bytes, record: str) -> bool:
    answers = dkim_dns(record)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return answers.get(name if name.endswith(b".") else name + b".")

    return bool(dkim.verify(content, dnsfunc=dnsfunc))


async def add_pool(tw: TwoWay, *numbers: str) -> None:
    for number in numbers:
        tw.store.add_number(number, None, datetime.now(UTC))
    await asyncio.sleep(1.1)  # the listener's allow-list snapshot lives a second


async def test_full_round_trip_threads_the_reply_and_reply_texts_back(two_way: TwoWay) -> None:
    tw = two_way
    await add_pool(tw, POOL_A)
    original = email(ALICE, f"415-555-1212@{DOMAIN}", "Dinner at 8?")
    await smtp_send(tw, original)
    [first] = await tw.twilio.wait_for_async(1)
    assert (first.fields["To"], first.fields["From"]) == (PHONE, POOL_A)

    answer = await tw.phone_says(
        "Yes, 8 works", PHONE, POOL_A, "SMreply000000000000000000000000001"
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")

    [delivered] = await tw.sink.wait_for(1, timeout=10)
    assert delivered.rcpt_tos == (ALICE,)
    reply = message_from_bytes(delivered.content, policy=policy.default)
    assert f'\r\nFrom: "+1 415-555-1212" <14155551212@{DOMAIN}>\r\n'.encode() in delivered.content
    assert reply["From"].addresses[0].addr_spec == f"14155551212@{DOMAIN}"
    assert reply["To"].addresses[0].addr_spec == ALICE
    assert str(reply["Subject"]) == "Re: Dinner plans"
    assert str(reply["In-Reply-To"]) == str(original["Message-ID"])
    assert str(original["Message-ID"]) in str(reply["References"]).split()
    assert str(reply["Message-ID"]).endswith(f"@{DOMAIN}>")
    assert reply.get_content().strip() == "Yes, 8 works"
    assert verify_dkim(delivered.content, tw.dkim_record)
    assert f"d={DOMAIN}" in str(reply["DKIM-Signature"]).replace(" ", "")
    assert f"s={SELECTOR}" in str(reply["DKIM-Signature"]).replace(" ", "")

    # Alice presses Reply in her mail client.
    answer_mail = email(
        ALICE,
        reply["From"].addresses[0].addr_spec,
        "Great, see you then.\n\nOn Sun, +1 415-555-1212 wrote:\n> Yes, 8 works\n",
        subject="Re: Dinner plans",
        In_Reply_To=str(reply["Message-ID"]),
        References=f"{reply['References']} {reply['Message-ID']}",
    )
    await smtp_send(tw, answer_mail)
    second = (await tw.twilio.wait_for_async(2))[1]
    assert (second.fields["To"], second.fields["From"]) == (PHONE, POOL_A)
    assert second.fields["Body"] == "Great, see you then."

    inbound = tw.store.list_inbound()
    assert [(i.status, i.routed_to) for i in inbound] == [(InboundStatus.ROUTED, ALICE)]


async def test_two_senders_one_phone_two_pool_numbers_replies_reach_the_right_person(
    two_way: TwoWay,
) -> None:
    tw = two_way
    await add_pool(tw, POOL_A, POOL_B)
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "from alice", subject="A"))
    await smtp_send(tw, email(BOB, f"4155551212@{DOMAIN}", "from bob", subject="B"), sender=BOB)
    sent = await tw.twilio.wait_for_async(2)
    number_of = {r.fields["Body"]: r.fields["From"] for r in sent}
    assert {number_of["from alice"], number_of["from bob"]} == {POOL_A, POOL_B}

    await tw.phone_says("hi alice", PHONE, number_of["from alice"], "SM" + "a" * 32)
    await tw.phone_says("hi bob", PHONE, number_of["from bob"], "SM" + "b" * 32)
    delivered = await tw.sink.wait_for(2, timeout=10)
    got = {
        message_from_bytes(d.content, policy=policy.default).get_content().strip(): d.rcpt_tos
        for d in delivered
    }
    assert got == {"hi alice": (ALICE,), "hi bob": (BOB,)}
    subjects = {
        message_from_bytes(d.content, policy=policy.default).get_content().strip(): str(
            message_from_bytes(d.content, policy=policy.default)["Subject"]
        )
        for d in delivered
    }
    assert subjects == {"hi alice": "Re: A", "hi bob": "Re: B"}

    # Alice texts the phone again: the same number is reused (sticky).
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "again", subject="A2"))
    third = (await tw.twilio.wait_for_async(3))[2]
    assert third.fields["From"] == number_of["from alice"]


async def test_bad_missing_and_replayed_signatures(two_way: TwoWay) -> None:
    tw = two_way
    form = {"MessageSid": "SM" + "c" * 32, "From": PHONE, "To": POOL_A, "Body": "hello"}
    path = "/webhooks/twilio/inbound"
    missing = await tw.post(path, form, headers={})
    assert missing.status_code == 403
    assert missing.json() == {"error": "invalid or missing signature"}
    forged = await tw.post(
        path, form, headers={"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    )
    assert forged.status_code == 403
    tampered = dict(form, Body="tampered")
    wrong = await tw.post(path, tampered, headers=tw.signed(path, form))
    assert wrong.status_code == 403
    assert tw.store.list_inbound() == []

    first = await tw.post(path, form)
    replay = await tw.post(path, form)
    assert first.status_code == replay.status_code == 200
    assert len(tw.store.list_inbound()) == 1


async def test_payload_missing_required_fields_is_400_and_nothing_stored(two_way: TwoWay) -> None:
    tw = two_way
    form = {"MessageSid": "SM" + "d" * 32, "To": POOL_A, "Body": "no sender"}
    response = await tw.post("/webhooks/twilio/inbound", form)
    assert response.status_code == 400
    assert "From" in response.json()["error"]
    status = await tw.post("/webhooks/twilio/status", {"MessageStatus": "delivered"})
    assert status.status_code == 400
    assert tw.store.list_inbound() == []


async def test_unknown_carrier_and_wrong_content_type(two_way: TwoWay) -> None:
    async with httpx.AsyncClient(base_url=two_way.http) as client:
        unknown = await client.post("/webhooks/acme/inbound", data={"a": "b"})
        as_json = await client.post("/webhooks/twilio/inbound", json={"From": PHONE})
    assert unknown.status_code == 404 and "acme" in unknown.json()["error"]
    assert as_json.status_code == 415


async def test_database_down_answers_503_so_the_carrier_retries(
    two_way: TwoWay, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    def down(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    assert two_way.gateway.runner is not None
    monkeypatch.setattr(two_way.gateway.runner.store, "save_inbound", down)
    response = await two_way.phone_says("hello", PHONE, POOL_A, "SM" + "e" * 32)
    assert response.status_code == 503
    assert "retry" in response.json()["error"]


async def test_relay_down_then_up_delivers_the_reply_once(
    tmp_path: object, fake_twilio: object
) -> None:
    from pathlib import Path

    from mailsms.app import Gateway
    from tests.bench.procs import free_port
    from tests.conftest import prepare_store
    from tests.twoway.conftest import two_way_settings

    port = free_port()
    settings, record = two_way_settings(Path(str(tmp_path)), fake_twilio, port)  # type: ignore[arg-type]
    store = prepare_store(settings, senders=(ALICE,))
    store.add_number(POOL_A, None, datetime.now(UTC))
    gateway = Gateway(settings)
    await gateway.start()
    sink = SmtpSink(port=port)
    try:
        tw = TwoWay(gateway, settings, store, fake_twilio, sink, record)  # type: ignore[arg-type]
        await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "ping"))
        await tw.twilio.wait_for_async(1)
        await tw.phone_says("pong", PHONE, POOL_A, "SM" + "f" * 32)
        # Nobody listens on the relay port: the reply stays queued with an error.
        queued = await eventually(
            lambda: [m for m in store.list_mail() if m.attempts >= 1 and m.error]
        )
        assert queued[0].status in (MailStatus.QUEUED, MailStatus.SENDING)
        await sink.start()
        [delivered] = await sink.wait_for(1, timeout=10)
        assert (
            message_from_bytes(delivered.content, policy=policy.default).get_content().strip()
            == "pong"
        )
        await eventually(lambda: store.list_mail(MailStatus.SENT))
        await asyncio.sleep(0.5)
        assert len(sink.envelopes) == 1
    finally:
        await gateway.stop()
        await sink.stop()


async def test_failed_status_produces_exactly_one_dsn(two_way: TwoWay) -> None:
    tw = two_way
    await add_pool(tw, POOL_A)
    original = email(ALICE, f"4155551212@{DOMAIN}", "are you there?", subject="Status check")
    await smtp_send(tw, original)
    [request] = await tw.twilio.wait_for_async(1)
    await eventually(lambda: tw.store.list_sms(SmsStatus.SENT))
    form = {
        "MessageSid": request.sid,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "To": PHONE,
        "From": POOL_A,
        "AccountSid": tw.twilio.account_sid,
    }
    for _ in range(2):  # carriers retry callbacks
        response = await tw.post("/webhooks/twilio/status", form)
        assert response.status_code == 200
    late = await tw.post("/webhooks/twilio/status", dict(form, MessageStatus="sent", ErrorCode=""))
    assert late.status_code == 200

    [bounce] = await tw.sink.wait_for(1, timeout=10)
    await asyncio.sleep(0.5)
    assert len(tw.sink.envelopes) == 1
    assert bounce.mail_from == ""
    assert bounce.rcpt_tos == (ALICE,)
    dsn = message_from_bytes(bounce.content, policy=policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert str(dsn["Auto-Submitted"]) == "auto-replied"
    assert "Status check" in str(dsn["Subject"])
    human = dsn.get_payload()[0].get_content()
    assert "+1 415-555-1212" in human and "30003" in human
    status_part = dsn.get_payload()[1]
    assert status_part.get_content_type() == "message/delivery-status"
    assert "Action: failed" in status_part.as_string()

    [row] = tw.store.list_sms()
    assert row.status == SmsStatus.UNDELIVERED  # the late "sent" did not move it back
    history = [e.status for e in tw.store.sms_events(row.id or 0)]
    assert history[-1] == SmsStatus.UNDELIVERED and history.count(SmsStatus.UNDELIVERED) == 1


async def test_stop_refuses_mail_to_that_phone_and_start_allows_it_again(two_way: TwoWay) -> None:
    tw = two_way
    await add_pool(tw, POOL_A)
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "promo"))
    await tw.twilio.wait_for_async(1)

    stop = await tw.phone_says("  Stop ", PHONE, POOL_A, "SM" + "1" * 32)
    assert stop.status_code == 200
    confirmation = (await tw.twilio.wait_for_async(2))[1]
    assert confirmation.fields["To"] == PHONE and confirmation.fields["From"] == POOL_A
    assert "unsubscribed" in confirmation.fields["Body"]
    [notice] = await tw.sink.wait_for(1, timeout=10)
    assert notice.rcpt_tos == (ALICE,)
    assert "replied STOP" in message_from_bytes(notice.content, policy=policy.default).get_content()

    def refused() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", tw.gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail(ALICE)
            code, text = client.rcpt(f"4155551212@{DOMAIN}")
            return code, text.decode()

    code, text = await asyncio.to_thread(refused)
    assert code == 550 and text.startswith("5.7.1 ")
    assert "opted out" in text and "STOP" in text

    start = await tw.phone_says("START", PHONE, POOL_A, "SM" + "2" * 32)
    assert start.status_code == 200
    await tw.twilio.wait_for_async(3)  # the START confirmation
    await eventually(lambda: not tw.store.list_suppressions())
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "welcome back"))
    bodies = [r.fields["Body"] for r in await tw.twilio.wait_for_async(4)]
    assert bodies[-1] == "welcome back"
    # One STOP, one confirmation.
    assert sum("unsubscribed" in b for b in bodies) == 1


async def test_a_stop_after_the_email_was_accepted_stops_the_queued_sms(
    two_way: TwoWay,
) -> None:
    """The opt-out that counts is checked as the SMS is claimed for sending:
    an SMS waiting for a retry when the phone texts STOP is never sent, and
    its sender gets a bounce saying why."""
    tw = two_way
    await add_pool(tw, POOL_A)
    tw.twilio.script(ScriptedResponse(429, 20429, "Too Many Requests", {"Retry-After": "2"}))
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "last chance sale", "Sale"))
    await eventually(lambda: tw.twilio.attempts >= 1)
    [waiting] = tw.store.list_sms()
    assert waiting.status == SmsStatus.QUEUED  # waiting out the Retry-After

    await tw.phone_says("STOP", PHONE, POOL_A, "SM" + "5" * 32)
    [confirmation] = await tw.twilio.wait_for_async(1)
    assert "unsubscribed" in confirmation.fields["Body"]

    [row] = await eventually(
        lambda: [r for r in tw.store.list_sms() if r.email_id and r.status == SmsStatus.FAILED]
    )
    assert row.error_code == "opted-out" and "opted out" in (row.error or "")
    assert [r.fields["Body"] for r in tw.twilio.requests] == [confirmation.fields["Body"]]
    bounce = next(
        env
        for env in await tw.sink.wait_for(2, timeout=10)
        if message_from_bytes(env.content, policy=policy.default).get_content_type()
        == "multipart/report"
    )
    assert bounce.mail_from == "" and bounce.rcpt_tos == (ALICE,)
    human = message_from_bytes(bounce.content, policy=policy.default).get_payload()[0]
    assert "opted out" in human.get_content()
    history = [e.status for e in tw.store.sms_events(row.id or 0)]
    assert history[-1] == SmsStatus.FAILED


async def test_help_is_answered_and_unknown_pairs_are_kept_with_a_reason(two_way: TwoWay) -> None:
    tw = two_way
    await tw.phone_says("help", PHONE, POOL_A, "SM" + "3" * 32)
    [help_answer] = await tw.twilio.wait_for_async(1)
    assert "STOP" in help_answer.fields["Body"]
    await tw.phone_says("who is this?", "+14155559999", POOL_B, "SM" + "4" * 32)
    rows = await eventually(
        lambda: [i for i in tw.store.list_inbound() if i.status == InboundStatus.UNROUTED]
    )
    assert "no catch-all address" in (rows[0].reason or "")
    assert tw.sink.envelopes == []


async def test_no_conversation_goes_to_the_numbers_owner_with_media_listed(
    two_way: TwoWay,
) -> None:
    tw = two_way
    tw.store.add_number(POOL_B, BOB, datetime.now(UTC))
    form = {
        "MessageSid": "SM" + "5" * 32,
        "From": "+14155557777",
        "To": POOL_B,
        "Body": "photo of the gate",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg",
    }
    assert (await tw.post("/webhooks/twilio/inbound", form)).status_code == 200
    [delivered] = await tw.sink.wait_for(1, timeout=10)
    assert delivered.rcpt_tos == (BOB,)
    reply = message_from_bytes(delivered.content, policy=policy.default)
    assert str(reply["Subject"]) == "SMS from +1 415-555-7777"
    assert "In-Reply-To" not in reply
    body = reply.get_content()
    assert "photo of the gate" in body and form["MediaUrl0"] in body


async def test_no_conversation_and_no_owner_goes_to_the_catch_all(
    tmp_path: object, fake_twilio: object, smtp_sink: SmtpSink
) -> None:
    from pathlib import Path

    from mailsms.app import Gateway
    from tests.conftest import prepare_store
    from tests.twoway.conftest import two_way_settings

    settings, record = two_way_settings(
        Path(str(tmp_path)),
        fake_twilio,
        smtp_sink.port,
        catch_all="ops@corp.example",  # type: ignore[arg-type]
    )
    store = prepare_store(settings, senders=(ALICE,))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        tw = TwoWay(gateway, settings, store, fake_twilio, smtp_sink, record)  # type: ignore[arg-type]
        await tw.phone_says("anyone?", "+14155558888", POOL_A, "SM" + "6" * 32)
        [delivered] = await smtp_sink.wait_for(1, timeout=10)
        assert delivered.rcpt_tos == ("ops@corp.example",)
        [row] = store.list_inbound()
        assert (row.status, row.routed_to) == (InboundStatus.ROUTED, "ops@corp.example")
        assert "catch-all" in (row.reason or "")
    finally:
        await gateway.stop()


async def test_sms_text_cannot_inject_headers_into_the_reply(two_way: TwoWay) -> None:
    tw = two_way
    await add_pool(tw, POOL_A)
    await smtp_send(tw, email(ALICE, f"4155551212@{DOMAIN}", "hi"))
    await tw.twilio.wait_for_async(1)
    hostile = "ok\r\nBcc: victim@example.net\r\nSubject: pwned\r\n\r\nbody"
    await tw.phone_says(hostile, PHONE, POOL_A, "SM" + "7" * 32)
    [delivered] = await tw.sink.wait_for(1, timeout=10)
    assert delivered.rcpt_tos == (ALICE,)
    reply = message_from_bytes(delivered.content, policy=policy.default)
    assert "Bcc" not in reply
    assert str(reply["Subject"]) == "Re: Dinner plans"
    assert "victim@example.net" in reply.get_content()  # stays in the body, as text
