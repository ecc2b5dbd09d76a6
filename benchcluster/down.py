"""`bench-cluster down`: remove everything a local cluster consists of, from whatever is left.

Works without a complete state file (a `kill -9` of `up` can stop anywhere): processes are found by
their environment markers, namespaces by name prefix, loop devices by backing file, SGE hosts by
name. Each step is idempotent; the end is a check that nothing is left.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from benchcluster import sge_setup
from benchcluster.state import ClusterPaths, host_processes
from manager.providers import local_processes, local_scratch, netns
from manager.providers.local import remove_member_leftovers
from manager.providers.local_config import NAME_PREFIX, LocalClusterConfig
from manager.sge.client import SgeClient
from manager.sge.model import SgeError

HOST_STOP_GRACE_S = 15.0
MEMBER_STOP_GRACE_S = 20.0
DEFAULT_BRIDGE = "benchbr0"


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


def _member_mounts() -> list[str]:
    """Mounts in the host namespace that belong to members (a correct run leaves none here)."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [m for m in mounts if m == "/scratch" or m.startswith("/scratch/") or "/members/bench-m" in m
            or m.startswith("/run/netns/" + NAME_PREFIX)]


async def _remove_exec_hosts(install: sge_setup.SgeInstall) -> list[str]:
    """Returns the exec hosts still there afterwards, with the reason."""
    client = SgeClient(install.sge_root, install.cell)
    names = [h for h in await client.exec_host_names() if h.startswith(NAME_PREFIX)]
    failures = []
    for name in names:
        try:
            for job_id in sorted({job for job, _ in await client.running_tasks_on(name)}):
                # the host went away with its processes: its running jobs cannot finish anywhere
                await client.delete_job(job_id, force=True)
            await client.remove_exec_host(name)
        except SgeError as exc:
            failures.append(f"{name} ({exc})")
    remaining = [h for h in await client.exec_host_names() if h.startswith(NAME_PREFIX)]
    return failures + [h for h in remaining if not any(f.startswith(h + " ") for f in failures)]


def down(paths: ClusterPaths, console: Console, stop_qmaster: bool = True) -> Leftovers:
    install = sge_setup.SgeInstall()
    try:
        bridge = LocalClusterConfig.load(paths.root).bridge
    except (FileNotFoundError, ValueError, TypeError):
        bridge = DEFAULT_BRIDGE

    # The manager first: in static mode it would replace the members we are about to remove.
    for pid in host_processes(paths):
        local_processes.stop_process(pid, HOST_STOP_GRACE_S)
    console.print("[green]✓[/] manager and manager-node agent stopped")

    inits = [pid for pid in local_processes.marked_processes() if local_processes.ns_pid(pid) == 1]
    for pid in inits:
        local_processes.stop_process(pid, MEMBER_STOP_GRACE_S)
    for pid in local_processes.marked_processes():
        local_processes.stop_process(pid, 1.0)
    members_dir = paths.root / "members"
    hostnames = set(netns.our_netns())
    if members_dir.exists():
        hostnames |= {p.name for p in members_dir.iterdir()}
    for hostname in sorted(hostnames):
        remove_member_leftovers(paths.root, hostname)
    for veth in netns.our_veths():
        netns.run(["ip", "link", "del", veth], check=False)
    for device in local_scratch.loops_backed_by(paths.root):
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30, check=False)
    console.print(f"[green]✓[/] {len(inits)} member(s) stopped, namespaces and /scratch images removed")

    sge_failures: list[str] = []
    if (install.bin_dir / "sge_qmaster").exists():
        try:
            sge_setup.start_qmaster(install)  # exec hosts can only be removed through qmaster
            sge_failures = asyncio.run(_remove_exec_hosts(install))
            if stop_qmaster:
                sge_setup.stop_qmaster(install)
        except (sge_setup.SgeSetupError, SgeError, OSError) as exc:
            sge_failures.append(str(exc))
        console.print("[green]✓[/] SGE exec hosts removed" + (", qmaster stopped" if stop_qmaster else ""))

    netns.remove_hosts_block()
    netns.remove_bridge(bridge)
    shutil.rmtree(paths.root, ignore_errors=True)
    leftovers = find_leftovers(paths, install)
    if sge_failures:
        leftovers.exec_hosts = sorted(set(leftovers.exec_hosts) | set(sge_failures))
    return leftovers


def find_leftovers(paths: ClusterPaths, install: sge_setup.SgeInstall) -> Leftovers:
    left = Leftovers(
        netns=netns.our_netns(),
        processes=sorted(set(local_processes.marked_processes()) | set(host_processes(paths))),
        mounts=_member_mounts(),
        loops=local_scratch.loops_backed_by(paths.root),
        files=[str(paths.root)] if paths.root.exists() else [],
    )
    if sge_setup.qmaster_pid(install) is not None:  # else down checked them before stopping qmaster
        proc = subprocess.run([str(install.bin_dir / "qconf"), "-sel"], env=install.env(), capture_output=True,
                              text=True, timeout=30, check=False)
        left.exec_hosts = [h for h in proc.stdout.split() if h.startswith(NAME_PREFIX)]
    return left
