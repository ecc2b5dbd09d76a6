"""Where a local cluster keeps its files, and how its host-side processes are marked."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manager.providers.local_processes import alive

DEFAULT_STATE_ROOT = Path("/var/lib/bench-cluster")
STATE_ENV = "BENCH_CLUSTER_STATE"
# The manager and the manager node's agent carry this in their environment so `down` finds them
# even when `up` was killed before it wrote their pids down.
HOST_PROCESS_MARKER = "BENCH_CLUSTER_HOST_PROCESS"


def resolve_state_root(flag: str | None) -> Path:
    return Path(flag or os.environ.get(STATE_ENV) or DEFAULT_STATE_ROOT).absolute()


@dataclass(frozen=True)
class ClusterPaths:
    root: Path

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def host_agent_credential(self) -> Path:
        return self.root / "manager-agent.credential"

    @property
    def admin_credential(self) -> Path:
        """User root's credential (administrator), readable by root only."""
        return self.root / "root.credential"

    @property
    def client_config(self) -> Path:
        return self.root / "client.toml"

    @property
    def manager_db(self) -> Path:
        return self.root / "manager.db"

    @property
    def manager_log(self) -> Path:
        return self.root / "manager.log"

    @property
    def host_agent_log(self) -> Path:
        return self.root / "manager-agent.log"

    @property
    def host_agent_state(self) -> Path:
        return self.root / "manager-agent"

    @property
    def processes(self) -> Path:
        return self.root / "processes.json"

    def read_processes(self) -> dict[str, int]:
        try:
            raw = json.loads(self.processes.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in raw.items()}

    def record_process(self, name: str, pid: int) -> None:
        current = self.read_processes()
        current[name] = pid
        tmp = self.processes.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n")
        tmp.replace(self.processes)

    def host_marker(self, name: str) -> str:
        return f"{self.root}:{name}"

    @property
    def daemons(self) -> Path:
        return self.root / "daemons.json"

    def read_daemons(self) -> dict[str, dict[str, Any]]:
        """The manager node's supervised daemons as `up` started them: name → {argv, log}; what a
        repairing `up` starts again."""
        try:
            raw = json.loads(self.daemons.read_text())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def record_daemon(self, name: str, argv: list[str], log: Path) -> None:
        current = self.read_daemons()
        current[name] = {"argv": argv, "log": str(log)}
        tmp = self.daemons.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n")
        tmp.replace(self.daemons)


def pids_with_environ(match: Callable[[bytes], bool]) -> list[int]:
    """Live processes with an environment variable (b"NAME=value") that `match` accepts."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(match(v) for v in environ) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def host_processes(paths: ClusterPaths) -> list[int]:
    ours = f"{HOST_PROCESS_MARKER}={paths.root}:".encode()
    found = pids_with_environ(lambda v: v.startswith(ours))
    recorded = [pid for pid in paths.read_processes().values() if alive(pid)]
    return sorted(set(found) | {p for p in recorded if _is_ours(p)})


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"bench-manager" in cmdline or b"bench-agent" in cmdline
