"""Processes the harness starts and stops: the gateway (``python -m mailsms
serve``), the bare aiosmtpd baseline and the fake carrier; plus /proc
readings (peak RSS, CPU time) for a pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports (two bind-and-close calls can give the
    same one: a gateway once got SMTP and HTTP on one port and hung)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def proc_status_kib(pid: int, field: str) -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a live process, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


SCHEDSTAT = os.path.exists("/proc/self/schedstat")
"""The kernel counts each thread's CPU time in nanoseconds (CONFIG_SCHED_INFO)."""


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of the live threads of ``pid``, to the nanosecond, from the
    scheduler's own count (``/proc/PID/task/TID/schedstat``).  ``/proc``'s
    stat counts in clock ticks of 10 ms, and a queue of 1,000 SMS drains in
    about 15 of them.  Threads that have ended are not counted: use it for
    differences over a window in which none ends."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
            total += int(fh.read().split()[0])
    return total / 1e9


def wait_smtp(port: int, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait until something on ``port`` greets with 220."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered SMTP on 127.0.0.1:{port} within {timeout}s")


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (e.g. the workers of ``serve --workers``)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.extend(int(p) for p in fh.read().split())
    return found


class Managed:
    """A child process with a pid, stopped with SIGTERM (then SIGKILL).

    Readings cover the process and its own children (the workers of
    ``mailsms serve --workers N``): CPU is their sum, RSS the largest one,
    because the memory target is per process.
    """

    proc: subprocess.Popen[Any]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid, *child_pids(self.pid)]

    def _each(self, read: Any) -> list[float]:
        values = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                values.append(read(pid))
        return values

    def peak_rss_mib(self) -> float:
        return max(self._each(lambda pid: proc_status_kib(pid, "VmHWM") / 1024), default=0.0)

    def rss_mib(self) -> float:
        return max(self._each(lambda pid: proc_status_kib(pid, "VmRSS") / 1024), default=0.0)

    def cpu(self) -> float:
        return sum(self._each(cpu_seconds))

    def fine_cpu(self) -> float:
        """:meth:`cpu` to the nanosecond (live threads only), where the
        kernel keeps the count; else :meth:`cpu`."""
        return sum(self._each(thread_cpu_seconds)) if SCHEDSTAT else self.cpu()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> Managed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ReadyProcess(Managed):
    """A helper module that prints ``READY <port>`` once it listens."""

    def __init__(self, module: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", module],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.stop()
            raise RuntimeError(f"{module} did not start: {line}")
        self.port = int(line[1])


class FakeCarrier(ReadyProcess):
    def __init__(self) -> None:
        super().__init__("tests.bench.fake_carrier")
        self.url = f"http://127.0.0.1:{self.port}"

    def _get(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def stats(self) -> dict[str, Any]:
        return self._get("/stats")

    def reset(self) -> None:
        self._get("/reset", "POST")

    def wait_count(self, n: int, timeout: float, poll: float = 0.05) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["count"] >= n or time.monotonic() > deadline:
                return stats
            time.sleep(poll)


class Baseline(ReadyProcess):
    """The bare aiosmtpd server; ``durable``: the one that puts each message
    on disk (group-committed fsync) before its 250."""

    def __init__(self, durable: bool = False) -> None:
        super().__init__(
            "tests.bench.durable_baseline" if durable else "tests.bench.baseline_server"
        )


def mailsms_env(database_url: str, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSMS_")}
    env["MAILSMS_DATABASE_URL"] = database_url
    for key, value in settings.items():
        env[f"MAILSMS_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


# -P (Python 3.11+): the working directory does not go first on sys.path,
# so PYTHONPATH (set by --mailsms-src) decides which mailsms runs; without
# it the installed (editable) package is this tree.
MAILSMS_COMMAND = (PYTHON, "-P", "-m", "mailsms")


def mailsms_cli(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [*MAILSMS_COMMAND, *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


_LISTENING = b"mailsms listening:"
"""What each gateway worker logs once it serves (mailsms.app)."""


class GatewayProcess(Managed):
    """``python -m mailsms serve`` with MAILSMS_* settings; stderr to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.smtp_port, http_port = free_ports(2)
        env = {
            **env,
            "MAILSMS_SMTP_PORT": str(self.smtp_port),
            "MAILSMS_HTTP_PORT": str(http_port),
        }
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*MAILSMS_COMMAND, "serve"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log_path
        try:
            wait_smtp(self.smtp_port, proc=self.proc)
            self._wait_workers(int(env.get("MAILSMS_WORKERS", "1")))
        except Exception:
            self.stop()
            raise RuntimeError(
                "gateway did not start: " + log_path.read_text(errors="replace")[-800:]
            ) from None

    def _wait_workers(self, workers: int, timeout: float = 30.0) -> None:
        """Wait until every worker says it listens.  The first one to answer
        220 is not enough: the kernel already hands connections to the
        sockets of the others (SO_REUSEPORT), where they wait until their
        worker has started, and a run measured from there counts about 0.1 s
        of a worker's start-up, CPU included."""
        deadline = time.monotonic() + timeout
        while self.log_path.read_bytes().count(_LISTENING) < workers:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {workers} workers listened within {timeout:g}s")
            time.sleep(0.02)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError):
            self._log.close()
