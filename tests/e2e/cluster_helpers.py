"""Helpers for end-to-end tests of `bench-cluster`: running the CLI and SGE commands, reading qacct,
and checking that nothing of a cluster is left on the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchcluster import sge_setup
from benchcluster.down import Scope
from benchcluster.state import ClusterPaths, host_processes
from manager.providers import local_processes, local_scratch, netns

BIN = Path(sys.executable).parent
SGE_ENV = sge_setup.SgeInstall().env()


def bench_cluster(state_root: Path, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bench-cluster"), "--state-root", str(state_root), *args],
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def sge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), env=SGE_ENV, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc


def qsub(*args: str) -> int:
    return int(sge("qsub", "-terse", *args).stdout.strip().split(".")[0])


@dataclass(frozen=True)
class TaskRecord:
    task_id: int
    hostname: str
    start: datetime
    end: datetime
    exit_status: int


def qacct_tasks(job_id: int) -> list[TaskRecord]:
    proc = sge("qacct", "-j", str(job_id), check=False)
    if proc.returncode != 0:
        return []
    records: list[TaskRecord] = []
    current: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("====="):
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value.strip()
        if key == "exit_status":
            task = current.get("taskid", "undefined")
            records.append(TaskRecord(
                task_id=int(task) if task.isdigit() else 0, hostname=current["hostname"],
                start=_qacct_time(current["start_time"]), end=_qacct_time(current["end_time"]),
                exit_status=int(value.split()[0])))
    return records


def _qacct_time(text: str) -> datetime:
    """qacct's times; '-/-' (a run that was rescheduled before it started) sorts first."""
    return datetime.min if text.startswith("-/-") else datetime.strptime(text, "%a %b %d %H:%M:%S %Y")


def wait_for_tasks(job_id: int, count: int, timeout_s: float) -> list[TaskRecord]:
    deadline = time.monotonic() + timeout_s
    records: list[TaskRecord] = []
    while time.monotonic() < deadline:
        records = qacct_tasks(job_id)
        if len(records) >= count:
            return records
        time.sleep(2)
    raise AssertionError(f"job {job_id}: only {len(records)} of {count} tasks finished within {timeout_s} s")


def max_concurrency_by_host(records: list[TaskRecord]) -> dict[str, int]:
    """Most tasks running at once on each host. Intervals are half-open: a slot freed at second t
    and reused at second t is not an overlap (qacct has one-second resolution)."""
    events: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for r in records:
        events[r.hostname] += [(r.start, 1), (r.end, -1)]
    peaks = {}
    for host, host_events in events.items():
        running = peak = 0
        for _, delta in sorted(host_events, key=lambda e: (e[0], e[1])):  # ends (-1) before starts
            running += delta
            peak = max(peak, running)
        peaks[host] = peak
    return peaks


def leftovers(paths: ClusterPaths, scope: Scope | None = None, *, include_sge: bool = True) -> dict[str, list[str]]:
    """Everything of the cluster in `paths` still on the machine (empty when clean). `scope` (taken
    before `down`) limits the check to that cluster's members, so another engineer's or test's
    cluster on the same machine does not count; without it every local cluster counts."""
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    mounts = [line.split()[4] for line in mountinfo]
    names = set(scope.hostnames) if scope else None
    member_processes = (scope.member_processes() if scope else list(local_processes.marked_processes()))
    found = {
        "netns": [n for n in netns.our_netns() if names is None or n in names],
        "member processes": [str(p) for p in member_processes],
        "host processes": [str(p) for p in host_processes(paths)],
        "mounts": [m for m in mounts if str(paths.root) in m or m == "/scratch" or (m.startswith("/run/netns/bench")
                   and (names is None or m.rsplit("/", 1)[1] in names))],
        "loop devices": local_scratch.loops_backed_by(paths.root),
        "state": [str(paths.root)] if paths.root.exists() else [],
    }
    if scope is None:  # machine-wide parts, removed by the last cluster's down
        found["veths"] = netns.our_veths()
        found["hosts block"] = ["/etc/hosts"] if "bench-cluster" in Path("/etc/hosts").read_text() else []
        found["bridge"] = ["benchbr0"] if netns.run(["ip", "link", "show", "benchbr0"],
                                                     check=False).returncode == 0 else []
    if not include_sge:
        return {k: v for k, v in found.items() if v}
    install = sge_setup.SgeInstall()
    was_running = sge_setup.qmaster_pid(install) is not None
    sge_setup.start_qmaster(install)
    try:
        hosts = sge("qconf", "-sel", check=False).stdout.split()
        admin = sge("qconf", "-sh", check=False).stdout.split()
        found["exec hosts"] = [h for h in hosts if h.startswith("bench-m") and (names is None or h in names)]
        found["admin hosts"] = [h for h in admin if h.startswith("bench-m") and (names is None or h in names)]
    finally:
        if not was_running:
            sge_setup.stop_qmaster(install)
    return {k: v for k, v in found.items() if v}


def environ_for_ctl(paths: ClusterPaths) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_CTL_CONFIG"] = str(paths.client_config)
    env.pop("BENCH_MANAGER", None)
    return env
