"""A tiny authoritative DNS server for tests (RFC 1035 over UDP and TCP).

Built on dnslib's ``DNSServer`` with our own resolver, bound to 127.0.0.1 on
an ephemeral port (the same port for UDP and TCP so truncated UDP answers
can fall back to TCP, as real resolvers do).  Tests fill the zone with
``add_txt`` / ``add_a`` / ``add_aaaa`` / ``add_mx`` / ``add_cname``; names
not in the zone get NXDOMAIN.  ``silent = True`` makes the server drop every
query (to provoke timeouts) and ``add_servfail(name)`` answers SERVFAIL.

Use the ``dns_server`` fixture: it starts a fresh server per test and stops
it afterwards.  ``server.nameserver`` is the ``host:port`` string to put in a
``ResolverConfig``.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import DNSHandler, DNSServer, TCPServer, UDPServer

__all__ = ["FakeDnsServer", "dns_server", "split_txt"]

_UDP_LIMIT = 512  # RFC 1035 §4.2.1, when the query carries no EDNS size
_TTL = 60


def split_txt(value: str | bytes) -> list[bytes]:
    """Cut a TXT value into the <=255-byte character-strings DNS requires."""
    data = value.encode("ascii") if isinstance(value, str) else value
    if not data:
        return [b""]
    return [data[i : i + 255] for i in range(0, len(data), 255)]


def _key(name: str) -> str:
    return name.rstrip(".").lower()


class _Zone:
    """Records plus failure modes, shared between the test and server threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[tuple[str, Any]]] = {}
        self.servfail: set[str] = set()
        self.silent = False
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()  # copies id and question, sets QR and AA
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        name = _key(str(qname))
        with self.lock:
            self.queries.append((name, qtype))
            if name in self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            # Follow CNAMEs inside the zone (bounded, in case of loops).
            for _ in range(8):
                entries = self.records.get(name)
                if entries is None:
                    if not reply.rr:
                        reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                cnames = [rdata for rtype, rdata in entries if rtype == "CNAME"]
                if cnames and qtype != "CNAME":
                    reply.add_answer(RR(name, QTYPE.CNAME, rdata=cnames[0], ttl=_TTL))
                    name = _key(str(cnames[0].label))
                    continue
                for rtype, rdata in entries:
                    if rtype == qtype:
                        reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=_TTL))
                return reply  # NOERROR, possibly with no data
        return reply


class _Handler(DNSHandler):  # type: ignore[misc]  # dnslib is untyped
    """dnslib's handler plus: drop queries when silent, truncate big UDP."""

    def handle(self) -> None:
        if self.server.resolver.silent:
            return  # never answer: the client times out
        super().handle()

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp":
            limit = _UDP_LIMIT
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(limit, rr.rclass)  # EDNS0 payload size
            if len(packed) > limit:
                # dnslib's own truncate() also drops the question, which
                # clients reject; send question + TC bit so they retry on TCP.
                truncated = request.reply()
                truncated.header.tc = 1
                truncated.header.rcode = reply.header.rcode
                packed = truncated.pack()
        return packed


class _QuietLogger:
    """dnslib logs every packet to stdout by default; keep only errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def log_error(self, handler: object, error: object) -> None:
        self.errors.append(str(error))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("log_"):
            return lambda *args: None
        raise AttributeError(name)


class FakeDnsServer:
    """Authoritative test DNS server on 127.0.0.1 (UDP + TCP, one port)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._zone = _Zone()
        self._logger = _QuietLogger()
        self._udp: DNSServer | None = None
        self._tcp: DNSServer | None = None
        self._threads: list[threading.Thread] = []
        self.port = 0

    # -- zone -------------------------------------------------------------
    def _add(self, name: str, rtype: str, rdata: Any) -> None:
        with self._zone.lock:
            self._zone.records.setdefault(_key(name), []).append((rtype, rdata))

    def add_txt(self, name: str, value: str | bytes) -> None:
        """One TXT record; long values are split into 255-byte strings."""
        self._add(name, "TXT", TXT(split_txt(value)))

    def add_a(self, name: str, address: str) -> None:
        self._add(name, "A", A(address))

    def add_aaaa(self, name: str, address: str) -> None:
        self._add(name, "AAAA", AAAA(address))

    def add_mx(self, name: str, preference: int, exchange: str) -> None:
        self._add(name, "MX", MX(exchange, preference))

    def add_cname(self, name: str, target: str) -> None:
        self._add(name, "CNAME", CNAME(target))

    def add_servfail(self, name: str) -> None:
        with self._zone.lock:
            self._zone.servfail.add(_key(name))

    @property
    def silent(self) -> bool:
        return self._zone.silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._zone.silent = value

    @property
    def queries(self) -> list[tuple[str, str]]:
        """(name, type) of every query received so far."""
        with self._zone.lock:
            return list(self._zone.queries)

    @property
    def errors(self) -> list[str]:
        return list(self._logger.errors)

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        # Bind UDP to an ephemeral port, then TCP to the same number; retry if
        # another process holds that TCP port.
        for _ in range(50):
            udp = DNSServer(
                self._zone,
                address=self.host,
                port=0,
                logger=self._logger,
                handler=_Handler,
                server=UDPServer,
            )
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self._zone,
                    address=self.host,
                    port=port,
                    logger=self._logger,
                    handler=_Handler,
                    server=TCPServer,
                )
            except OSError as exc:
                udp.server.server_close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            break
        else:
            raise RuntimeError("could not bind UDP and TCP on one port")
        self._udp, self._tcp, self.port = udp, tcp, port
        for server in (udp, tcp):
            # Not dnslib's start_thread(): its 0.5 s poll interval would make
            # every stop() (and so every test) half a second slower.
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"fake-dns-{port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.server.shutdown()
                server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self) -> FakeDnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def dns_server() -> Iterator[FakeDnsServer]:
    """A running :class:`FakeDnsServer`, stopped after the test."""
    server = FakeDnsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
