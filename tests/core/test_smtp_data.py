"""The message text of DATA, read by mailsms.smtp.data (one search of the
stream) against aiosmtpd's own ``smtp_DATA`` (a line at a time): the same
bytes over a real socket on 127.0.0.1 must give the same replies, the same
message and leave the same commands for after it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailsms.smtp import data
from mailsms.smtp.data import read_message
from mailsms.smtp.server import GatewaySMTP

SIZE_LIMIT = 1500
"""Small, so that generated texts cross it; lines are limited to aiosmtpd's
1001 octets with their CRLF."""


class Recorder:
    """A handler that keeps every message and accepts it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 2.0.0 kept"


class AiosmtpdData(GatewaySMTP):
    """The gateway's protocol with aiosmtpd's own DATA: the reference."""

    smtp_DATA = SMTP.smtp_DATA


async def transcript(protocol: type[GatewaySMTP], stream: bytes) -> tuple[bytes, list[bytes]]:
    """Everything the server answers to ``stream`` after DATA's 354 (the
    session ends with QUIT), and the messages its handler got."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(
        lambda: protocol(
            recorder,  # type: ignore[arg-type]
            data_size_limit=SIZE_LIMIT,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname="sms.localhost",
            loop=loop,
        ),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await reader.readline()  # 220
            for command in (
                b"EHLO t.example",
                b"MAIL FROM:<a@t.example>",
                b"RCPT TO:<b@t.example>",
            ):
                writer.write(command + b"\r\n")
                while (await reader.readline())[3:4] == b"-":
                    pass
            writer.write(b"DATA\r\n")
            assert (await reader.readline()).startswith(b"354")
            writer.write(stream)
            answers = await asyncio.wait_for(reader.read(), 10)  # until QUIT closes it
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return answers, recorder.messages


def after_data(text: bytes) -> bytes:
    """``text`` ended as a client must end it, then a command and QUIT:
    whatever the server takes for the end of the text, the rest of the
    stream are commands, and QUIT ends the session."""
    return text + b"\r\n.\r\nNOOP\r\nQUIT\r\n"


PIECES = st.sampled_from(
    [b"x", b"Hello", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b" ", b"\x00", b"\xff",
     b"x" * 500, b"x" * 999, b"x" * 1000, b"y" * 1400]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(text=st.lists(PIECES, max_size=30).map(b"".join))
@example(text=b"")  # the empty message: "." is the first line
@example(text=b".")  # a first line of one dot
@example(text=b"..x\r\n.y")  # transparency dots
@example(text=b"\r")  # the first line a lone CR, then CRLF
@example(text=b"\r\r")
@example(text=b"\r\n")  # an empty first line, then the end
@example(text=b"x" * 999)  # the longest line aiosmtpd takes
@example(text=b"x" * 1000)
@example(text=b"\r" + b"x" * 1200)  # over-long from the first byte on
@example(text=b"x" * 900 + b"\r\n" + b"x" * 597)  # SIZE_LIMIT exactly
@example(text=b"x" * 900 + b"\r\n" + b"x" * 598)
@example(text=b"x\n.\r\nx")  # a bare LF before the dot ends nothing
def test_the_text_read_is_aiosmtpds(text: bytes) -> None:
    stream = after_data(text)

    async def both() -> None:
        expected = await transcript(AiosmtpdData, stream)
        assert await transcript(GatewaySMTP, stream) == expected

    asyncio.run(both())


async def test_a_usual_message_is_found_with_one_search() -> None:
    """The point of the module: one readuntil for the whole text, not one
    per line; and the reader's line limit is back afterwards."""
    reader = asyncio.StreamReader(limit=1001)
    text = b"Subject: hi\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(40))
    reader.feed_data(text + b".\r\nQUIT\r\n")
    calls = []
    readuntil = reader.readuntil

    async def counting(separator: bytes = b"\n") -> bytes:
        calls.append(separator)
        return await readuntil(separator)

    reader.readuntil = counting  # type: ignore[method-assign]
    got = await read_message(reader, size_limit=10_000, line_limit=1001)
    assert got == data.Text(text)
    assert calls == [data.END]
    assert vars(reader)["_limit"] == 1001
    assert await reader.readline() == b"QUIT\r\n"  # the next command stays


async def test_over_the_size_limit_the_text_is_read_to_its_end_and_dropped() -> None:
    reader = asyncio.StreamReader(limit=1001)
    reader.feed_data(b"".join(b"%04d" % i + b"x" * 90 + b"\r\n" for i in range(200)))
    reader.feed_data(b".\r\nNOOP\r\n")
    got = await read_message(reader, size_limit=5000, line_limit=1001)
    assert got == data.Text(refusal=data.TOO_MUCH_DATA)
    assert await reader.readline() == b"NOOP\r\n"
