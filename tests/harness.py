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

from common.auth import write_new_token

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.agent_token = self.root / "agent.token"
        self.user_token = self.root / "user.token"
        write_new_token(self.agent_token)
        write_new_token(self.user_token)
        self.data_root = self.root / "data"
        (self.data_root / "mounts").mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_manager(self) -> Daemon:
        self.manager = Daemon([str(VENV_BIN / "bench-manager"), "--listen", self.address,
                               "--db", str(self.root / "state.db"), "--agent-token-file", str(self.agent_token),
                               "--user-token-file", str(self.user_token), "--no-sge",
                               "--data-root", str(self.data_root), "--lost-after", str(self.lost_after_s),
                               "--heartbeat-interval", str(self.heartbeat_s), "--interval", "0.5",
                               "--log-format", "json", *self.extra_manager_args],
                              self.root / "manager.log").start()
        return self.manager

    def start_agent(self, node_id: str, *extra: str) -> Daemon:
        agent = Daemon([str(VENV_BIN / "bench-agent"), "--manager", self.address, "--token-file",
                        str(self.agent_token), "--node-id", node_id, "--state-dir", str(self.root / node_id),
                        "--scratch-dir", str(self.root / node_id / "scratch"), "--data-root", str(self.data_root),
                        "--heartbeat-interval", str(self.heartbeat_s), "--reconnect-max", "1",
                        "--log-format", "json", *extra],
                       self.root / f"{node_id}.log").start()
        self.agents[node_id] = agent
        return agent

    def ctl(self, *args: str, token_file: Path | None = None,
            manager: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "workspace-ctl"), "--manager", manager or self.address,
                               "--token-file", str(token_file or self.user_token), *args],
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
