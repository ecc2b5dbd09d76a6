"""`bench-cluster status` and `bench-cluster exec`: look at and into a running local cluster."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from benchcluster import sge_setup
from benchcluster.options import UsageError
from benchcluster.registry import RegistryUnavailable, list_members
from benchcluster.state import ClusterPaths, host_processes
from common.auth import CredentialError, read_token_file
from manager.providers import local_processes
from manager.providers.local import LocalProvider
from manager.providers.local_config import LocalClusterConfig
from manager.sge.parse import parse_qhost


@dataclass(frozen=True)
class MemberStatus:
    member_id: str
    hostname: str
    ip: str
    state: str  # registry state, or "UNREGISTERED" when only the provider knows it
    running: bool  # its namespaces and init process exist
    in_sge: bool  # execd reporting in qhost


def load_config(paths: ClusterPaths) -> LocalClusterConfig:
    try:
        return LocalClusterConfig.load(paths.root)
    except FileNotFoundError:
        raise UsageError(f"no local cluster at {paths.root} (start one with `bench-cluster up`)") from None


def collect(paths: ClusterPaths) -> dict[str, Any]:
    config = load_config(paths)
    install = sge_setup.SgeInstall()
    address = f"127.0.0.1:{config.grpc_port}"
    registry_error = ""
    registered = {}
    try:
        credential = read_token_file(paths.admin_credential)
        registered = {m.member_id: m for m in list_members(address, credential, paths.ca_cert) if m.role == "member"}
    except (RegistryUnavailable, CredentialError) as exc:
        registry_error = str(exc)
    nodes = {n.node_id: n for n in asyncio.run(LocalProvider(config.cluster_id, paths.root).list())}
    qhost = subprocess.run([str(install.bin_dir / "qhost"), "-xml"], env=install.env(), capture_output=True,
                           text=True, timeout=30, check=False)
    in_qhost = {e.name for e in parse_qhost(qhost.stdout) if e.load_reported} if qhost.returncode == 0 else set()
    members = []
    for member_id in sorted(set(registered) | set(nodes)):
        reg, node = registered.get(member_id), nodes.get(member_id)
        hostname = reg.hostname if reg and reg.hostname else (node.hostname if node else "")
        members.append(MemberStatus(
            member_id=member_id, hostname=hostname, ip=(reg.ip if reg and reg.ip else (node.ip if node else "")),
            state=reg.state if reg else "UNREGISTERED", running=node is not None, in_sge=hostname in in_qhost))
    manager_pids = host_processes(paths)
    qmaster = sge_setup.qmaster_pid(install)
    return {
        "cluster_id": config.cluster_id,
        "state_root": str(paths.root),
        "manager": {"address": address, "pids": manager_pids, "alive": bool(manager_pids) and not registry_error,
                    "error": registry_error},
        "qmaster": {"pid": qmaster, "alive": qmaster is not None},
        "members": [asdict(m) for m in sorted(members, key=lambda m: m.hostname)],
    }


def print_status(report: dict[str, Any], console: Console, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    manager = report["manager"]
    console.print(f"cluster [bold]{report['cluster_id']}[/] (state {report['state_root']})")
    console.print(f"manager {manager['address']}: " + ("[green]up[/]" if manager["alive"]
                                                         else f"[red]down[/] {manager['error']}"))
    console.print("sge_qmaster: " + (f"[green]up[/] pid {report['qmaster']['pid']}" if report["qmaster"]["alive"]
                                     else "[red]down[/]"))
    table = Table("member", "hostname", "ip", "state", "namespaces", "in qhost")
    for m in report["members"]:
        table.add_row(m["member_id"], m["hostname"], m["ip"], m["state"], "yes" if m["running"] else "no",
                      "yes" if m["in_sge"] else "no")
    console.print(table)


def exec_in_member(paths: ClusterPaths, member: str, command: list[str]) -> int:
    """Run `command` inside a member's namespaces (like `kubectl exec`); returns its exit status."""
    if not command:
        raise UsageError("give the command after `--`, e.g. bench-cluster exec bench-m01 -- hostname")
    config = load_config(paths)
    nodes = asyncio.run(LocalProvider(config.cluster_id, paths.root).list())
    match = [n for n in nodes if member in (n.hostname, n.node_id)]
    if not match:
        known = ", ".join(f"{n.hostname} ({n.node_id})" for n in nodes) or "none"
        raise UsageError(f"no running member {member!r}; members: {known}")
    pid = local_processes.member_init_pid(config.cluster_id, match[0].node_id)
    if pid is None:
        raise UsageError(f"member {member!r} stopped while looking it up")
    proc = subprocess.run(["nsenter", "--target", str(pid), "--net", "--uts", "--mount", "--pid", "--wd=/",
                           "--", *command], check=False)
    # a command killed by a signal: report it the way a shell does
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
