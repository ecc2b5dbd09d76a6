"""A local cluster as an object for end-to-end tests: `bench-cluster up/down`, workspace-ctl, commands
inside members, and the scaler log. SGE commands and qacct parsing come from cluster_helpers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchcluster import daemons
from benchcluster.state import ClusterPaths
from tests.conftest import require_sge
from tests.e2e.cluster_helpers import BIN, bench_cluster, environ_for_ctl, sge
from tests.harness import wait_until

SCALER_LOG = Path("/data/logs/sge-scaler.log")


@dataclass
class LocalCluster:
    state_root: Path
    up_args: Sequence[str]
    up_timeout_s: float = 300.0

    def up(self) -> None:
        require_sge()
        bench_cluster(self.state_root, "down", "--keep-qmaster")  # leftovers of an earlier crash
        result = bench_cluster(self.state_root, "up", *self.up_args, timeout_s=self.up_timeout_s)
        assert result.returncode == 0, f"bench-cluster up failed:\n{result.stdout}\n{result.stderr}"

    def down(self) -> None:
        # qmaster stays for the next module's cluster (stopping and starting it costs ~10 s each
        # time); tests/conftest.py stops it when the session ends
        bench_cluster(self.state_root, "down", "--keep-qmaster")

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN / "workspace-ctl"), *args], capture_output=True, text=True, timeout=180,
                                env=environ_for_ctl(ClusterPaths(self.state_root)), check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"workspace-ctl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--output", "json").stdout)

    def members(self, *, tolerate_unreachable: bool = False) -> dict[str, dict[str, Any]]:
        """Registered members by id; with tolerate_unreachable, {} while the manager (re)starts."""
        result = self.ctl("cluster", "members", "--output", "json", check=not tolerate_unreachable)
        if result.returncode != 0:
            return {}
        return {m["member_id"]: m for m in json.loads(result.stdout)["members"] if m.get("role", "member") == "member"}

    def live_members(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.members().items() if v["state"] != "TERMINATED"}

    def ready_members(self) -> list[str]:
        return sorted(k for k, v in self.members().items() if v["state"] == "READY")

    def exec(self, member: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return bench_cluster(self.state_root, "exec", member, "--", *cmd)

    @staticmethod
    def job_finished(job_id: int) -> bool:
        return sge("qstat", "-j", str(job_id), check=False).returncode != 0

    def wait_job(self, job_id: int, timeout_s: float) -> None:
        wait_until(lambda: self.job_finished(job_id), timeout_s, f"job {job_id} to finish", interval_s=1.0)

    @staticmethod
    def scaler_log() -> list[dict[str, Any]]:
        if not SCALER_LOG.exists():
            return []
        return [json.loads(line) for line in SCALER_LOG.read_text().splitlines() if line.strip()]


def job_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/bash\n#$ -S /bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def manager_process(state_root: Path) -> psutil.Process:
    """The bench-manager process serving this cluster (found by its command line)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(part.endswith("bench-manager") for part in cmdline[:2]) and any(str(state_root) in p for p in cmdline):
            return proc
    raise AssertionError(f"no bench-manager process serving {state_root}")


def kill9_and_restart_manager(state_root: Path, env_changes: dict[str, str | None] | None = None) -> None:
    """kill -9 the manager; its supervisor starts it again, as systemd does on a real node. With
    `env_changes` (a value sets a variable, None removes it) the supervisor is killed first and a new one
    starts the same command line with the changed environment."""
    proc = manager_process(state_root)
    if not env_changes:
        proc.kill()
        proc.wait(10)
        return
    paths = ClusterPaths(state_root)
    argv, env = proc.cmdline(), proc.environ()
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    supervisor = daemons.supervisor_of(paths, "manager")
    assert supervisor is not None, "the manager runs without its supervisor"
    psutil.Process(supervisor).kill()
    psutil.Process(supervisor).wait(10)
    proc.kill()
    proc.wait(10)
    daemons.start(paths, "manager", argv, paths.manager_log, env=env)
