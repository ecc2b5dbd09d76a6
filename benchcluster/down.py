"""`bench-cluster down`: remove everything a local cluster consists of, from whatever is left.

Works without a complete state file (a `kill -9` of `up` can stop anywhere): processes are found by
their environment markers, namespaces by name prefix, loop devices by backing file, SGE hosts by
name. Each step is idempotent; the end is a check that nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from benchcluster import daemons, sge_setup
from benchcluster.state import ClusterPaths, host_processes
from common import imdsguard, project_rights
from manager.providers import local_processes, local_scratch, netns
from manager.providers.local import remove_member_leftovers
from manager.providers.local_config import NAME_PREFIX, LocalClusterConfig
from manager.sge.client import SgeClient
from manager.sge.model import SgeError

HOST_STOP_GRACE_S = 15.0
MEMBER_STOP_GRACE_S = 20.0
DEFAULT_BRIDGE = "benchbr0"
JOB_STOP_TIMEOUT_S = 20.0
SGE_ATTEMPTS = 3
T = TypeVar("T")


@dataclass
class Leftovers:
    netns: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    exec_hosts: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.netns, self.processes, self.mounts, self.loops, self.exec_hosts, self.files))

    def describe(self) -> str:
        parts = [f"{name}: {', '.join(map(str, items))}" for name, items in vars(self).items() if items]
        return "; ".join(parts)


def _member_mounts(paths: ClusterPaths) -> list[str]:
    """Mounts in the host namespace that belong to this cluster's members (a correct run leaves
    none here: members mount only inside their own mount namespaces)."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [m for m in mounts if m == "/scratch" or m.startswith("/scratch/") or str(paths.root) in m]


async def _stop_jobs_on_members(client: SgeClient, hostnames: set[str]) -> None:
    """While the members' execds still run: close their queues and delete the jobs running there,
    so execd ends them cleanly. (`qdel -f` on a job whose execd is gone crashed qmaster 8.1.9 here.)"""
    names = [h for h in await client.exec_host_names() if h in hostnames]
    for name in names:
        with contextlib.suppress(SgeError):
            await client.disable_host(name)
    jobs = {job for name in names for job, _ in await client.running_tasks_on(name)}
    for job_id in sorted(jobs):
        with contextlib.suppress(SgeError):
            await client.delete_job(job_id)
    deadline = time.monotonic() + JOB_STOP_TIMEOUT_S
    while jobs and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        jobs = {job.job_id for job in await client.jobs() if job.host in names}


async def _remove_exec_hosts(client: SgeClient, hostnames: set[str]) -> list[str]:
    """Remove this cluster's exec hosts, and stale member hosts whose namespace is gone (left by an
    earlier crash). Returns the ones still there afterwards, with the reason."""
    live = set(netns.list_netns())
    names = [h for h in await client.exec_host_names()
             if h in hostnames or (h.startswith(NAME_PREFIX) and h not in live)]
    failures = []
    for name in names:
        try:
            for job_id in sorted({job for job, _ in await client.running_tasks_on(name)}):
                # the host went away with its processes: its running jobs cannot finish anywhere
                await client.delete_job(job_id, force=True)
            await client.remove_exec_host(name)
        except SgeError as exc:
            failures.append(f"{name} ({exc})")
    remaining = [h for h in await client.exec_host_names() if h in hostnames]
    return failures + [h for h in remaining if not any(f.startswith(h + " ") for f in failures)]


def _sge_step(install: sge_setup.SgeInstall, step: Callable[[SgeClient], Coroutine[Any, Any, T]]) -> T:
    """Run one SGE step with qmaster up; a qmaster that dies under it is restarted and the step
    retried (bounded), since every step is idempotent."""
    client = SgeClient(install.sge_root, install.cell)
    for attempt in range(1, SGE_ATTEMPTS + 1):
        sge_setup.start_qmaster(install)
        try:
            return asyncio.run(step(client))
        except SgeError:
            if attempt == SGE_ATTEMPTS:
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Scope:
    """What belongs to the cluster of one state root. Other local clusters (other state roots) on
    the same machine are left alone."""

    hostnames: frozenset[str]
    markers: frozenset[str]

    def member_processes(self) -> list[int]:
        return [pid for pid, marker in local_processes.marked_processes().items() if marker in self.markers]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def find_scope(paths: ClusterPaths) -> Scope:
    members_dir = paths.root / "members"
    hostnames = {p.name for p in members_dir.iterdir()} if members_dir.exists() else set()
    ours = f"{paths.root}/members/".encode()
    markers = {marker for pid, marker in local_processes.marked_processes().items()
               if local_processes.ns_pid(pid) == 1 and ours in _cmdline(pid)}
    return Scope(frozenset(hostnames), frozenset(markers))


def down(paths: ClusterPaths, console: Console, stop_qmaster: bool = True) -> Leftovers:
    install = sge_setup.SgeInstall()
    have_sge = (install.bin_dir / "sge_qmaster").exists()
    try:
        bridge = LocalClusterConfig.load(paths.root).bridge
    except (FileNotFoundError, ValueError, TypeError):
        bridge = DEFAULT_BRIDGE
    sge_failures: list[str] = []

    # The manager first: in static mode it would replace the members we are about to remove.
    # Supervisors before the daemons they would start again; each group stopped together.
    host = host_processes(paths)
    local_processes.stop_processes([pid for pid in host if daemons.is_supervisor(pid)], HOST_STOP_GRACE_S)
    local_processes.stop_processes([pid for pid in host if local_processes.alive(pid)], HOST_STOP_GRACE_S)
    console.print("[green]✓[/] manager and manager-node agent stopped")
    if project_rights.release(paths.host_agent_state / project_rights.MARKER_NAME):
        console.print("[green]✓[/] /data/project writable again (the workspace had no upload rights)")
    scope = find_scope(paths)  # after the manager stopped: it can no longer add members

    if have_sge and scope.hostnames:
        try:
            _sge_step(install, lambda client: _stop_jobs_on_members(client, set(scope.hostnames)))
        except (sge_setup.SgeSetupError, SgeError) as exc:
            sge_failures.append(f"stopping jobs: {exc}")

    inits = [pid for pid in scope.member_processes() if local_processes.ns_pid(pid) == 1]
    local_processes.stop_processes(inits, MEMBER_STOP_GRACE_S)
    local_processes.stop_processes(scope.member_processes(), 1.0)
    for hostname in sorted(scope.hostnames):
        remove_member_leftovers(paths.root, hostname)
    for device in local_scratch.loops_backed_by(paths.root):
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30, check=False)
    console.print(f"[green]✓[/] {len(inits)} member(s) stopped, namespaces and /scratch images removed")

    last_cluster = not netns.our_netns() and not local_processes.marked_processes()
    # Without members and without a running qmaster there is nothing of ours in SGE to remove:
    # starting qmaster only to stop it again cost ~10 s on every `down` of an empty state root.
    if have_sge and (scope.hostnames or sge_setup.qmaster_pid(install) is not None):
        try:
            sge_failures += _sge_step(install, lambda client: _remove_exec_hosts(client, set(scope.hostnames)))
            if stop_qmaster and last_cluster:
                sge_setup.stop_qmaster(install)
        except (sge_setup.SgeSetupError, SgeError, OSError) as exc:
            sge_failures.append(str(exc))
        console.print("[green]✓[/] SGE exec hosts removed"
                      + (", qmaster stopped" if stop_qmaster and last_cluster else ""))

    if last_cluster:
        for veth in netns.our_veths():
            netns.run(["ip", "link", "del", veth], check=False)
        netns.remove_hosts_block()
        netns.remove_bridge(bridge)
        with contextlib.suppress(imdsguard.GuardError):
            imdsguard.remove()
    else:
        console.print("another local cluster still runs here: bridge, member names and qmaster kept")
    shutil.rmtree(paths.root, ignore_errors=True)
    leftovers = find_leftovers(paths, scope, install)
    if sge_failures:
        leftovers.exec_hosts = sorted(set(leftovers.exec_hosts) | set(sge_failures))
    return leftovers


def find_leftovers(paths: ClusterPaths, scope: Scope, install: sge_setup.SgeInstall) -> Leftovers:
    left = Leftovers(
        netns=[name for name in netns.our_netns() if name in scope.hostnames],
        processes=sorted(set(scope.member_processes()) | set(host_processes(paths))),
        mounts=_member_mounts(paths),
        loops=local_scratch.loops_backed_by(paths.root),
        files=[str(paths.root)] if paths.root.exists() else [],
    )
    if sge_setup.qmaster_pid(install) is not None:  # else down checked them before stopping qmaster
        proc = subprocess.run([str(install.bin_dir / "qconf"), "-sel"], env=install.env(), capture_output=True,
                              text=True, timeout=30, check=False)
        left.exec_hosts = [h for h in proc.stdout.split() if h in scope.hostnames]
    return left
