"""Finding the local cluster's processes from /proc, without relying on any state file.

Every member init (and everything it starts) carries `BENCH_CLUSTER_MEMBER=<cluster>/<node>` in its
environment, so a restarted manager or a `bench-cluster down` after a crash can find them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from manager.providers.local_config import PROCESS_MARKER

PROC = Path("/proc")


def _environ(pid: int) -> list[bytes]:
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _is_zombie(pid: int) -> bool:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def ns_pid(pid: int) -> int | None:
    """The pid a process has inside its own (innermost) pid namespace."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def marked_processes(marker_prefix: str = "") -> dict[int, str]:
    """pid → marker value, for live processes whose marker starts with `marker_prefix`."""
    key = f"{PROCESS_MARKER}=".encode()
    found: dict[int, str] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        for var in _environ(pid):
            if var.startswith(key):
                value = var[len(key):].decode(errors="replace")
                if value.startswith(marker_prefix) and not _is_zombie(pid):
                    found[pid] = value
                break
    return found


def member_marker(cluster_id: str, node_id: str) -> str:
    return f"{cluster_id}/{node_id}"


def member_init_pid(cluster_id: str, node_id: str) -> int | None:
    marker = member_marker(cluster_id, node_id)
    for pid, value in marked_processes(marker).items():
        if value == marker and ns_pid(pid) == 1:
            return pid
    return None


def alive(pid: int) -> bool:
    return (PROC / str(pid)).exists() and not _is_zombie(pid)


def stop_process(pid: int, grace_s: float) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL and wait (bounded) for it to be gone."""
    stop_processes([pid], grace_s)


def stop_processes(pids: list[int], grace_s: float) -> None:
    """`stop_process` for several at once: all are signalled first and waited for together, so
    stopping N members takes one grace period, not N of them."""
    remaining = list(pids)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        for pid in list(remaining):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                remaining.remove(pid)
        deadline = time.monotonic() + wait_s
        while remaining and time.monotonic() < deadline:
            remaining = [pid for pid in remaining if alive(pid)]
            if remaining:
                time.sleep(0.1)
        if not remaining:
            return
