"""The two servers `benchmarks/heartbeats.py` measures, each a real subprocess on loopback:
bench-manager (temp state dir, its own cluster CA and administrator credential, no SGE, no provider;
TLS on, or plaintext for the TLS-cost comparison) and the grpc.aio echo baseline.

Both are stopped (SIGTERM, then SIGKILL after a timeout) when their context exits, also on Ctrl-C.
They stay in the benchmark's process group, so whatever signals or kills that group (a terminal's
Ctrl-C, `kill -- -PGID`, a test's or CI job's clean-up) reaches them too; both stop by themselves on
SIGINT or SIGTERM. `stop_child_processes` is the last resort at exit for a server an interrupt left
running (a second Ctrl-C while a server was being started or stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from common.auth import write_new_token
from common.tls import channel_credentials, create_ca, issue_server_cert

VENV_BIN = Path(sys.executable).parent
ECHO_SERVER = Path(__file__).resolve().parent / "echo_server.py"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"

Announce = Callable[[str], None]
"""Receives one line of progress (a server started, serving); `heartbeats.py` prints them."""


def _silent(_: str) -> None:
    pass


class ServerFailed(Exception):
    """A server did not come up; the message says why and where its log is."""


@dataclass(frozen=True)
class RunningServer:
    pid: int
    address: str
    admin_credential: str  # root, administrator: enrols the simulated agents, reads the registry
    ca_file: Path | None  # None: plaintext
    log_path: Path

    def channel(self, options: list[tuple[str, Any]] | None = None) -> aio.Channel:
        if self.ca_file is None:
            return aio.insecure_channel(self.address, options=options)
        return aio.secure_channel(self.address, channel_credentials(self.ca_file), options=options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)


async def _wait_serving(address: str, proc: asyncio.subprocess.Process, log_path: Path,
                        ca_file: Path | None = None) -> None:
    """Poll the standard health service until SERVING; fail fast if the process exits."""
    channel_of = (lambda: aio.secure_channel(address, channel_credentials(ca_file))) if ca_file else \
        (lambda: aio.insecure_channel(address))
    async with channel_of() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        async for attempt in AsyncRetrying(wait=wait_exponential_jitter(initial=0.05, max=1.0),
                                           stop=stop_after_delay(START_TIMEOUT_S),
                                           retry=retry_if_exception_type((aio.AioRpcError, ServerFailed)),
                                           reraise=True):
            with attempt:
                if proc.returncode is not None:
                    raise ServerFailed(f"bench-manager exited with code {proc.returncode} at start; "
                                       f"log {log_path}:\n{_log_tail(log_path)}")
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    raise ServerFailed(f"bench-manager health is {reply.status}, not SERVING")


@contextlib.asynccontextmanager
async def bench_manager(work_dir: Path, heartbeat_interval_s: float, announce: Announce = _silent,
                        tls: bool = True, max_members: int = 1000) -> AsyncIterator[RunningServer]:
    """A real bench-manager: own SQLite file, CA, credentials and data root; LOST detection pushed out
    of the way; the hard limit raised so every simulated agent can be enrolled."""
    tls_dir = work_dir / "tls"
    ca = create_ca(tls_dir, "heartbeat-bench")
    issue_server_cert(ca, tls_dir, [LOOPBACK])
    admin_file = work_dir / "root.credential"
    admin_credential = write_new_token(admin_file, "bcu_")
    trust_args = ["--insecure-plaintext"] if not tls else [
        "--tls-cert-file", str(tls_dir / "manager.crt"), "--tls-key-file", str(tls_dir / "manager.key"),
        "--tls-ca-file", str(ca.cert)]
    data_root = work_dir / "data"
    (data_root / "mounts").mkdir(parents=True, exist_ok=True)
    address = f"{LOOPBACK}:{_free_port()}"
    log_path = work_dir / "manager.log"
    # The benchmark measures load, not liveness: no member may turn LOST because the client lagged.
    lost_after_s = max(3600.0, heartbeat_interval_s * 10)
    argv = [str(VENV_BIN / "bench-manager"), "--listen", address, "--db", str(work_dir / "state.db"),
            *trust_args, "--admin-credential-file", str(admin_file),
            "--host-agent-credential-file", str(work_dir / "no-host-agent"),
            "--hard-limit", str(max(50, max_members)), "--no-sge", "--provider", "none",
            "--data-root", str(data_root), "--lost-after", str(lost_after_s),
            "--heartbeat-interval", str(heartbeat_interval_s), "--log-format", "json"]
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                    stderr=asyncio.subprocess.STDOUT)
    try:
        announce(f"started bench-manager (pid {proc.pid}), waiting for it to serve on {address}; log {log_path}")
        await _wait_serving(address, proc, log_path, ca.cert if tls else None)
        announce(f"bench-manager serving on {address} ({'TLS' if tls else 'plaintext'}, pid {proc.pid})")
        yield RunningServer(proc.pid, address, admin_credential, ca.cert if tls else None, log_path)
    finally:
        await _stop(proc)


@contextlib.asynccontextmanager
async def echo_server(work_dir: Path, announce: Announce = _silent, tls: bool = False,
                      max_members: int = 1000) -> AsyncIterator[RunningServer]:
    """The baseline server; it picks its own free loopback port and prints it. With `tls`, it serves TLS
    with a certificate of its own CA, as bench-manager does, so that both pay for encryption. Its queue of
    calls not yet taken up is sized as bench-manager's for `max_members` (2 x hard limit + 256)."""
    log_path = work_dir / "echo.log"
    tls_args: list[str] = []
    ca_file: Path | None = None
    if tls:
        tls_dir = work_dir / "tls"
        ca = create_ca(tls_dir, "heartbeat-bench-echo")
        issue_server_cert(ca, tls_dir, [LOOPBACK])
        tls_args = ["--tls-cert-file", str(tls_dir / "manager.crt"), "--tls-key-file", str(tls_dir / "manager.key")]
        ca_file = ca.cert
    with log_path.open("ab") as log:
        pending_args = ["--max-pending", str(2 * max(50, max_members) + 256)]
        proc = await asyncio.create_subprocess_exec(sys.executable, str(ECHO_SERVER), *tls_args, *pending_args,
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=log)
    try:
        announce(f"started echo server (pid {proc.pid}); log {log_path}")
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            raise ServerFailed(f"echo server did not start within {START_TIMEOUT_S:.0f}s; log {log_path}:\n"
                               f"{_log_tail(log_path)}") from None
        words = line.decode().split()
        if len(words) != 2 or words[0] != "LISTENING":
            raise ServerFailed(f"echo server failed to start (said {line!r}); log {log_path}:\n{_log_tail(log_path)}")
        address = f"{LOOPBACK}:{words[1]}"
        announce(f"echo server serving on {address} ({'TLS' if tls else 'plaintext'}, pid {proc.pid})")
        yield RunningServer(proc.pid, address, "", ca_file, log_path)
    finally:
        await _stop(proc)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_child_processes(timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """The last resort at exit, synchronous and bounded: stop every descendant of this process that is
    still running (SIGTERM, then SIGKILL after `timeout_s`) and return a "name (pid N)" for each one.

    The servers' contexts stop their server in every normal path, also on a single Ctrl-C. What they
    can miss is a second interrupt: KeyboardInterrupt raised while a server is being started (the
    process exists but its pid never reached us) or while the context waits for it to stop. Nothing
    else in the benchmark starts processes, so every child still running at exit is such a server.
    Exited children are not reaped here (asyncio's child watcher does that)."""
    try:
        found = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    running = [p for p in found if _running(p)]
    names = []
    for process in running:
        with contextlib.suppress(psutil.Error):
            names.append(f"{process.name()} (pid {process.pid})")
            process.terminate()
    _wait_gone(running, timeout_s)
    for process in running:
        if _running(process):
            with contextlib.suppress(psutil.Error):
                process.kill()
    _wait_gone(running, timeout_s)
    return names


def _wait_gone(processes: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def temp_work_dir(keep: Path | None) -> contextlib.AbstractContextManager[str]:
    """A fresh temp dir removed at exit, or the given dir kept for inspection of the server logs."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(str(keep))
    return tempfile.TemporaryDirectory(prefix="hb-bench-")


__all__ = ["Announce", "RunningServer", "ServerFailed", "bench_manager", "echo_server", "stop_child_processes",
           "temp_work_dir"]
