"""Both daemons speak systemd's notify protocol to a real NOTIFY_SOCKET, as systemd would see them.

The test binds the AF_UNIX datagram socket itself and turns on SO_PASSCRED, so every message carries the
kernel-verified sender PID: with NotifyAccess=main systemd ignores anything not sent by the main process.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.tls import channel_credentials
from tests.harness import Daemon, Trust, free_port, wait_until

WATCHDOG_USEC = 1_000_000  # the daemons ping every WATCHDOG_USEC/2 = 0.5 s
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Notification:
    pid: int
    fields: dict[str, str]


class NotifySocket:
    """The receiving end of sd_notify, with the sender's credentials attached by the kernel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))

    def receive(self, timeout_s: float) -> Notification | None:
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        if not ready:
            return None
        data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = _CREDENTIALS.unpack(payload[:_CREDENTIALS.size])
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return Notification(pid, fields)

    def wait_for(self, key: str, value: str, timeout_s: float) -> Notification:
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, str]] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            if message.fields.get(key) == value:
                return message
            seen.append(message.fields)
        raise AssertionError(f"no {key}={value} within {timeout_s} s; received {seen}")

    def drain(self, duration_s: float) -> list[Notification]:
        messages = []
        deadline = time.monotonic() + duration_s
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None:
                messages.append(message)
        return messages

    def close(self) -> None:
        self.sock.close()


@dataclass
class Started:
    daemon: Daemon
    notify: NotifySocket
    health_target: str  # where the daemon's grpc.health.v1 service answers
    ca: Path | None = None  # the cluster CA when that is the manager's TLS port

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def log(self) -> str:
        return self.daemon.log_path.read_text(errors="replace")[-3000:]


def health_status(target: str, ca: Path | None = None) -> int:
    """One health check that fails at once (no wait_for_ready) when nothing serves the target. The
    manager serves TLS (ca given); the agent's local health socket is a unix socket."""
    channel_of = (lambda: grpc.secure_channel(target, channel_credentials(ca))) if ca else \
        (lambda: grpc.insecure_channel(target))
    with channel_of() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def notify_env(sock: Path) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(sock), "WATCHDOG_USEC": str(WATCHDOG_USEC), "BENCH_DEBUG_ALLOW_HANG": "1",
            "PYTHONUNBUFFERED": "1"}


def trust(root: Path) -> Trust:
    return Trust(root) if (root / "tls" / "ca.crt").exists() else Trust.create(root)


def manager_daemon(root: Path, port: int, env: dict[str, str]) -> Daemon:
    argv = [sys.executable, "-m", "manager.main", "--listen", f"127.0.0.1:{port}", "--db", str(root / "state.db"),
            "--cluster-id", "sdnotify", *trust(root).manager_args(), "--provider", "none", "--no-sge",
            "--data-root", str(root / "data"), "--log-format", "json"]
    return Daemon(argv, root / "manager.log", env)


def agent_daemon(root: Path, manager_port: int, env: dict[str, str]) -> Daemon:
    argv = [sys.executable, "-m", "agent.main", "--manager", f"127.0.0.1:{manager_port}",
            "--ca-file", str(trust(root).ca), "--credential-file", str(trust(root).host_agent_credential),
            "--node-id", "manager", "--role", "manager", "--state-dir", str(root / "agent"),
            "--scratch-dir", str(root / "scratch"), "--data-root", str(root / "data"), "--cores", "2",
            "--memory", "4G", "--heartbeat-interval", "0.5", "--log-format", "json"]
    return Daemon(argv, root / "agent.log", env)


@pytest.fixture(params=["bench-manager", "bench-agent"])
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Started]:
    sock_path = tmp_path / "notify.sock"
    notify = NotifySocket(sock_path)
    port = free_port()
    background: list[Daemon] = []
    if request.param == "bench-manager":
        daemon = manager_daemon(tmp_path, port, notify_env(sock_path))
        target, ca = f"127.0.0.1:{port}", trust(tmp_path).ca
    else:
        # The agent under test needs a manager to talk to; that one gets no notify socket.
        background.append(manager_daemon(tmp_path, port, {}).start())
        wait_until(lambda: _serves(f"127.0.0.1:{port}", trust(tmp_path).ca), 30, "the helper manager serving")
        daemon = agent_daemon(tmp_path, port, notify_env(sock_path))
        target, ca = f"unix:{tmp_path / 'agent' / 'agent.sock'}", None
    daemon.start()
    try:
        yield Started(daemon, notify, target, ca)
    finally:
        for process in (daemon, *background):
            if process.proc is not None and process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(10)
        notify.close()


def _serves(target: str, ca: Path | None = None) -> bool:
    try:
        return health_status(target, ca) == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def test_ready_is_sent_by_the_main_process_once_it_serves(started: Started) -> None:
    ready = started.notify.wait_for("READY", "1", timeout_s=60)
    # Straight after READY, with no retry or wait: the health service must already answer.
    status = health_status(started.health_target, started.ca)
    assert status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert ready.pid == started.pid, "READY must come from the main process (NotifyAccess=main)"
    assert started.daemon.alive, started.log()


def test_manager_is_serving_at_ready(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    daemon = manager_daemon(tmp_path, port, notify_env(tmp_path / "notify.sock")).start()
    try:
        notify.wait_for("READY", "1", timeout_s=60)
        assert health_status(f"127.0.0.1:{port}", trust(tmp_path).ca) == health_pb2.HealthCheckResponse.SERVING
    finally:
        daemon.stop()
        notify.close()


def test_health_turns_serving(started: Started) -> None:
    """The manager serves at once; the agent reports SERVING once it is connected to its manager."""
    started.notify.wait_for("READY", "1", timeout_s=60)
    wait_until(lambda: _serves(started.health_target, started.ca), 30, "health status SERVING")


def test_watchdog_pings_keep_coming_from_the_main_process(started: Started) -> None:
    started.notify.wait_for("READY", "1", timeout_s=60)
    pings: list[Notification] = []
    deadline = time.monotonic() + 30
    while len(pings) < 5 and time.monotonic() < deadline:
        message = started.notify.receive(deadline - time.monotonic())
        if message is not None and message.fields.get("WATCHDOG") == "1":
            pings.append(message)
    assert len(pings) == 5, f"only {len(pings)} WATCHDOG=1 pings; log:\n{started.log()}"
    assert {ping.pid for ping in pings} == {started.pid}


def test_hung_main_loop_stops_the_watchdog_pings(started: Started) -> None:
    started.notify.wait_for("READY", "1", timeout_s=60)
    started.notify.wait_for("WATCHDOG", "1", timeout_s=10)
    os.kill(started.pid, signal.SIGUSR2)
    started.notify.drain(WATCHDOG_USEC / 1e6)  # a ping already on its way may still arrive
    late = [m for m in started.notify.drain(3 * WATCHDOG_USEC / 1e6) if m.fields.get("WATCHDOG") == "1"]
    assert late == [], "a hung daemon kept pinging the watchdog, so systemd would never restart it"
    assert started.daemon.alive, "the hook must hang the loop, not kill the process"


def test_sigterm_shuts_down_cleanly(started: Started) -> None:
    started.notify.wait_for("READY", "1", timeout_s=60)
    assert started.daemon.proc is not None
    started.daemon.proc.send_signal(signal.SIGTERM)
    stopping = started.notify.wait_for("STOPPING", "1", timeout_s=15)
    assert stopping.pid == started.pid
    assert started.daemon.proc.wait(30) == 0, started.log()
