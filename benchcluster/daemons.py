"""The manager node's daemons of a local cluster (bench-manager, its agent, ...), each kept up by its
own supervisor (`benchcluster.supervise`), and the repair a second `bench-cluster up` performs.

Every daemon is recorded (argv, log) in the state root when `up` first starts it, so a repair starts
exactly what ran before, with the same certificates, tokens and database, and the members and their
jobs are left alone: the manager resumes from SQLite, the members' agents reconnect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchcluster.state import HOST_PROCESS_MARKER, ClusterPaths, pids_with_environ
from benchcluster.supervise import MODULE as SUPERVISE_MODULE
from manager.providers import local_processes
from manager.providers.local_config import PROCESS_MARKER

# A daemon crashing this many times in a row, each within 30 s of its start, is given up on
# (systemd's StartLimitBurst does the same); `bench-cluster up` then starts it again.
MAX_QUICK_FAILURES = 10
STOP_GRACE_S = 20.0


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def is_supervisor(pid: int) -> bool:
    return SUPERVISE_MODULE.encode() in _argv(pid)


def start(paths: ClusterPaths, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` under a supervisor of its own session (it outlives `up` and ignores a Ctrl-C
    meant for it); returns the supervisor's pid, recorded with the daemon's command line. The daemon
    gets this process's environment (or `env`), marked as the cluster's."""
    env = dict(os.environ if env is None else env)
    env[HOST_PROCESS_MARKER] = paths.host_marker(name)
    env.pop(PROCESS_MARKER, None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", SUPERVISE_MODULE, "--name", name, "--log", str(log_path),
             "--max-quick-failures", str(MAX_QUICK_FAILURES), "--", *argv],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    paths.record_process(name, supervisor.pid)
    paths.record_daemon(name, argv, log_path)
    return supervisor.pid


def supervisor_of(paths: ClusterPaths, name: str) -> int | None:
    pid = paths.read_processes().get(name)
    if pid is None or not local_processes.alive(pid) or not is_supervisor(pid):
        return None
    return pid if f"--name\0{name}\0".encode() in b"\0".join(_argv(pid)) + b"\0" else None


def strays(paths: ClusterPaths, name: str) -> list[int]:
    """Processes of daemon `name` no supervisor owns any more (their supervisor was killed)."""
    marker = f"{HOST_PROCESS_MARKER}={paths.host_marker(name)}".encode()
    return [pid for pid in pids_with_environ(lambda v: v == marker) if not is_supervisor(pid)]


@dataclass
class Repair:
    started: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.started)


def ensure_running(paths: ClusterPaths, order: list[str]) -> Repair:
    """Start (under a new supervisor) every recorded daemon whose supervisor is gone; strays of it
    (a daemon whose supervisor was killed) are stopped first so no two run at once."""
    recorded = paths.read_daemons()
    repair = Repair()
    for name in order:
        spec = recorded.get(name)
        if spec is None:
            continue
        if supervisor_of(paths, name) is not None:
            continue
        for pid in strays(paths, name):
            local_processes.stop_process(pid, STOP_GRACE_S)
            repair.notes.append(f"stopped {name} pid {pid}, left without its supervisor")
        start(paths, name, [str(a) for a in spec["argv"]], Path(spec["log"]))
        repair.started.append(name)
    return repair


def stop(paths: ClusterPaths, name: str, timeout_s: float = STOP_GRACE_S + 15) -> bool:
    """Stop daemon `name` for good (until the next `bench-cluster up` repairs it): SIGTERM to its
    supervisor, which stops the daemon and exits instead of restarting it. False if none ran."""
    pid = supervisor_of(paths, name)
    if pid is None:
        return False
    local_processes.stop_process(pid, timeout_s)
    return True
