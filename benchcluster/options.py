"""Validated settings of `bench-cluster up`: every check runs before anything is created."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from common.units import parse_size
from manager.providers.local_config import HARD_MEMBER_LIMIT

MIN_SCRATCH = 1024**3
MAX_SCRATCH = 16 * 1024**4
NEEDED_TOOLS = ("ip", "unshare", "nsenter", "setsid", "mount", "losetup", "mkfs.ext4")


class UsageError(Exception):
    """Bad input: the message says what to change. Exit status 2, nothing created."""


@dataclass(frozen=True)
class UpOptions:
    members: int
    cores: int
    memory_bytes: int
    scratch_bytes: int
    allow_small_scratch: bool
    mode: str
    min_members: int
    max_members: int
    min_age_s: float | None
    idle_s: float | None
    interval_s: float | None
    dedicated_manager: bool
    port: int
    timeout_s: float
    cluster_id: str
    economy: bool = False  # members are spot instances: their agents watch spot_metadata_url
    spot_metadata_url: str = ""
    orphan_timeout_s: float | None = None  # None: the manager's default (600 s)
    spark: bool = True  # a Spark master on the manager node, executor slots on members, PySpark kernels


def _size(text: str, what: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def build_options(members: int | None, cores: int, memory: str, scratch: str, allow_small_scratch: bool,
                  mode: str, min_members: int | None, max_members: int | None, min_age: float | None,
                  idle: float | None, interval: float | None, dedicated_manager: bool, port: int,
                  timeout: float, cluster_id: str, economy: bool = False,
                  spot_metadata_url: str = "") -> UpOptions:
    problems: list[str] = []
    memory_bytes = _size(memory, "--memory")
    scratch_bytes = _size(scratch, "--scratch-size")
    if mode == "static":
        if members is None:
            problems.append("static mode needs --members K")
        elif not 0 <= members <= HARD_MEMBER_LIMIT:
            problems.append(f"--members {members} is outside 0..{HARD_MEMBER_LIMIT} (the hard limit)")
        if min_members is not None or max_members is not None:
            problems.append("--min/--max belong to --mode dynamic")
    else:
        if members is not None:
            problems.append("--members belongs to --mode static; use --min/--max with --mode dynamic")
        lo = 0 if min_members is None else min_members
        hi = 3 if max_members is None else max_members
        if not 0 <= lo <= hi <= HARD_MEMBER_LIMIT:
            problems.append(f"need 0 ≤ --min ({lo}) ≤ --max ({hi}) ≤ {HARD_MEMBER_LIMIT} (the hard limit)")
        min_members, max_members = lo, hi
    reserved = 0 if dedicated_manager else 1
    if cores - reserved < 1:
        problems.append(f"--cores {cores} leaves no usable core after the {reserved} core reserved for "
                        "scheduling (use --cores 2 or more, or --dedicated-manager)")
    if memory_bytes < 512 * 1024**2:
        problems.append("--memory must be at least 512M")
    if scratch_bytes and not allow_small_scratch and not MIN_SCRATCH <= scratch_bytes <= MAX_SCRATCH:
        problems.append("--scratch-size must be between 1G and 16T (tests: add --allow-small-scratch)")
    if scratch_bytes and scratch_bytes < 16 * 1024**2:
        problems.append("--scratch-size must be at least 16M to hold an ext4 filesystem")
    for name, value in (("--min-age", min_age), ("--idle", idle), ("--interval", interval)):
        if value is not None and value < 0:
            problems.append(f"{name} must not be negative")
    if not 1 <= port <= 65535:
        problems.append(f"--port {port} is not a TCP port")
    if timeout <= 0:
        problems.append("--timeout must be positive")
    if not cluster_id.replace("-", "").isalnum():
        problems.append(f"--cluster-id {cluster_id!r} may only hold letters, digits and '-'")
    if spot_metadata_url and not economy:
        problems.append("--spot-metadata-url belongs to --economy (spot members)")
    if spot_metadata_url and not spot_metadata_url.startswith(("http://", "https://")):
        problems.append(f"--spot-metadata-url {spot_metadata_url!r} must be an http(s) URL")
    if problems:
        raise UsageError("; ".join(problems))
    return UpOptions(members=members or 0, cores=cores, memory_bytes=memory_bytes, scratch_bytes=scratch_bytes,
                     allow_small_scratch=allow_small_scratch, mode=mode, min_members=min_members or 0,
                     max_members=max_members or 0, min_age_s=min_age, idle_s=idle, interval_s=interval,
                     dedicated_manager=dedicated_manager, port=port, timeout_s=timeout, cluster_id=cluster_id,
                     economy=economy, spot_metadata_url=spot_metadata_url)


def check_machine(sge_bin: Path, port: int) -> None:
    """What the machine must offer; raises UsageError naming the missing part."""
    if os.geteuid() != 0:
        raise UsageError("bench-cluster needs root (it creates network namespaces, mounts and SGE hosts); "
                         "run it with sudo")
    if not (sge_bin / "sge_qmaster").exists() or not (sge_bin / "sge_execd").exists():
        raise UsageError(f"Sun Grid Engine is not installed ({sge_bin}/sge_qmaster missing); "
                         "run scripts/install-system-deps.sh")
    missing = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    bin_dir = Path(sys.executable).parent
    missing += [str(bin_dir / exe) for exe in ("bench-manager", "bench-agent") if not (bin_dir / exe).exists()]
    if missing:
        raise UsageError(f"missing programs: {', '.join(missing)} (run `make deps` / install the package)")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(f"port {port} on 127.0.0.1 is in use; pick another with --port") from None
