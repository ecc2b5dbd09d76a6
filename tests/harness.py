"""Real-process harness: bench-manager and bench-agent started as subprocesses on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from grpc import aio

from common.auth import bearer, write_new_token
from common.tls import channel_credentials, create_ca, issue_server_cert
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as(user: str, *argv: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """argv as an ordinary user, with that user's groups (runuser), a plain PATH and the output captured."""
    return subprocess.run(["/usr/sbin/runuser", "-u", user, "--", *argv], capture_output=True, text=True,
                          timeout=timeout_s, check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Daemon:
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 10) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class Trust:
    """A cluster's CA, the manager's certificate (loopback SANs) and root's administrator credential."""

    root: Path

    @classmethod
    def create(cls, root: Path, addresses: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Trust:
        trust = cls(root)
        ca = create_ca(trust.tls_dir, "test")
        issue_server_cert(ca, trust.tls_dir, list(addresses))
        write_new_token(trust.admin_credential, "bcu_")
        write_new_token(trust.host_agent_credential, "bcm_")
        return trust

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def admin_credential(self) -> Path:
        return self.root / "root.credential"

    @property
    def host_agent_credential(self) -> Path:
        return self.root / "manager-agent.credential"

    def manager_args(self) -> list[str]:
        return ["--tls-cert-file", str(self.tls_dir / "manager.crt"), "--tls-key-file",
                str(self.tls_dir / "manager.key"), "--tls-ca-file", str(self.ca),
                "--host-agent-credential-file", str(self.host_agent_credential),
                "--admin-credential-file", str(self.admin_credential)]

    def channel(self, address: str) -> grpc.Channel:
        return grpc.secure_channel(address, channel_credentials(self.ca))

    def aio_channel(self, address: str) -> aio.Channel:
        return aio.secure_channel(address, channel_credentials(self.ca))

    def admin_call(self, address: str, method: str, request: object, credential: Path | None = None) -> object:
        with self.channel(address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            secret = (credential or self.admin_credential).read_text().strip()
            return getattr(stub, method)(request, metadata=bearer(secret), timeout=10)

    def enrol(self, address: str, node_id: str, hostname: str | None = None, ip: str | None = None) -> str:
        """An administrator enrols node_id (as the provider would record it); returns its join token."""
        hostname = hostname if hostname is not None else socket.gethostname()
        if ip is None:
            try:
                ip = socket.gethostbyname(hostname)
            except OSError:
                ip = ""
        response = self.admin_call(address, "AddNode", cluster_pb2.AddNodeRequest(node_id=node_id, hostname=hostname,
                                                                                  ip=ip))
        return str(response.join_token)  # type: ignore[attr-defined]

    def add_user(self, address: str, name: str, role: str) -> str:
        request = cluster_pb2.AddUserRequest(name=name, role=cluster_pb2.Role.Value(f"ROLE_{role.upper()}"))
        response = self.admin_call(address, "AddUser", request)
        return str(response.credential)  # type: ignore[attr-defined]


@dataclass
class ControlPlane:
    """A manager on a free loopback port plus any number of agents, all real processes."""

    root: Path
    lost_after_s: float = 4.0
    heartbeat_s: float = 0.5
    extra_manager_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    manager: Daemon | None = None
    agents: dict[str, Daemon] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.trust = Trust.create(self.root)
        self.user_token = self.trust.admin_credential  # root, administrator
        self.data_root = self.root / "data"
        (self.data_root / "mounts").mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_manager(self) -> Daemon:
        self.manager = Daemon([str(VENV_BIN / "bench-manager"), "--listen", self.address,
                               "--db", str(self.root / "state.db"), *self.trust.manager_args(), "--no-sge",
                               "--data-root", str(self.data_root), "--lost-after", str(self.lost_after_s),
                               "--heartbeat-interval", str(self.heartbeat_s), "--interval", "0.5",
                               "--log-format", "json", *self.extra_manager_args],
                              self.root / "manager.log").start()
        return self.manager

    def start_agent(self, node_id: str, *extra: str) -> Daemon:
        """Start node_id's agent; on its first start an administrator enrols it and hands it a join token."""
        credential = self.root / node_id / "credential"
        join_token = self.root / node_id / "join.token"
        if not credential.exists() and not join_token.exists():
            wait_until(lambda: self._manager_answers(), 15, "the manager to answer")
            write_new_token(join_token)  # created 0600, then filled with the real token
            join_token.write_text(self.trust.enrol(self.address, node_id) + "\n")
        agent = Daemon([str(VENV_BIN / "bench-agent"), "--manager", self.address, "--ca-file", str(self.trust.ca),
                        "--credential-file", str(credential), "--join-token-file", str(join_token),
                        "--node-id", node_id, "--state-dir", str(self.root / node_id),
                        "--scratch-dir", str(self.root / node_id / "scratch"), "--data-root", str(self.data_root),
                        "--heartbeat-interval", str(self.heartbeat_s), "--reconnect-max", "1",
                        "--log-format", "json", *extra],
                       self.root / f"{node_id}.log").start()
        self.agents[node_id] = agent
        return agent

    def _manager_answers(self) -> bool:
        try:
            self.trust.admin_call(self.address, "WhoAmI", cluster_pb2.WhoAmIRequest())
            return True
        except grpc.RpcError:
            return False

    def ctl(self, *args: str, token_file: Path | None = None,
            manager: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "workspace-ctl"), "--manager", manager or self.address,
                               "--ca-file", str(self.trust.ca),
                               "--credential-file", str(token_file or self.user_token), *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "BENCH_CTL_CONFIG": str(self.root / "no-client.toml")})

    def members(self) -> dict[str, dict[str, Any]]:
        result = self.ctl("cluster", "members", "--output", "json")
        if result.returncode != 0:
            return {}
        return {m["member_id"]: m for m in json.loads(result.stdout)["members"]}

    def states(self) -> dict[str, str]:
        return {k: v["state"] for k, v in self.members().items()}

    def shutdown(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        if self.manager:
            self.manager.stop()


def port_open(url: str) -> bool:
    """Whether something accepts TCP connections at the URL's host and port (443 when it names none)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=2):
            return True
    except OSError:
        return False
