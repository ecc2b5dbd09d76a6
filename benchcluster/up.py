"""`bench-cluster up`: manager node (qmaster, bench-manager, its own agent) plus K members.

The manager creates the members itself through the local NodeProvider (static mode: exactly K);
`up` prepares what the provider reads (cluster.json, bridge, name pool, SGE, tokens), starts the
daemons detached, and waits until every member is READY in the registry and reporting in qhost.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from benchcluster import daemons, sge_setup, spark_setup
from benchcluster.options import UpOptions, UsageError
from benchcluster.registry import RegistryMember, RegistryUnavailable, list_members
from benchcluster.state import ClusterPaths, host_processes
from common import imdsguard
from common.auth import write_new_token
from common.tls import create_ca, issue_server_cert
from manager.providers import local_processes, netns
from manager.providers.local_config import CONFIG_NAME, LocalClusterConfig
from manager.sge.parse import parse_qhost

MANAGER_START_TIMEOUT_S = 30.0
POLL_S = 1.0


class UpFailed(Exception):
    """The cluster did not come up; the message says what is missing."""


@dataclass(frozen=True)
class Readiness:
    ready: list[RegistryMember]
    not_ready: list[RegistryMember]
    in_qhost: set[str]
    error: str = ""

    def done(self, wanted: int) -> bool:
        return len(self.ready_in_sge) >= wanted

    @property
    def ready_in_sge(self) -> list[RegistryMember]:
        return [m for m in self.ready if m.hostname in self.in_qhost]


def check_no_leftovers(paths: ClusterPaths) -> None:
    """Another cluster with its own state root (and port) may run beside this one; what must not
    exist is a cluster, or the remains of one, in this state root."""
    leftovers = []
    if (paths.root / CONFIG_NAME).exists():
        leftovers.append(f"{paths.root / CONFIG_NAME}")
    if (paths.root / "members").exists():
        leftovers.append(f"{paths.root / 'members'}")
    if host_processes(paths):
        leftovers.append("its manager processes")
    if leftovers:
        raise UsageError(f"a local cluster is already up in {paths.root} or was left behind there ("
                         + ", ".join(leftovers) + "); run `bench-cluster down` first")


def manager_argv(paths: ClusterPaths, config: LocalClusterConfig, options: UpOptions) -> list[str]:
    argv = [
        str(Path(sys.executable).parent / "bench-manager"),
        "--listen", f"127.0.0.1:{options.port}", "--listen", config.manager_address,
        "--db", str(paths.manager_db), "--cluster-id", config.cluster_id,
        "--tls-cert-file", str(paths.tls_dir / "manager.crt"), "--tls-key-file", str(paths.tls_dir / "manager.key"),
        "--tls-ca-file", str(paths.ca_cert), "--host-agent-id", "manager",
        "--host-agent-credential-file", str(paths.host_agent_credential),
        "--admin-credential-file", str(paths.admin_credential),
        "--provider", "local", "--local-state-root", str(paths.root),
        "--sge-root", config.sge_root, "--sge-cell", config.sge_cell, "--data-root", config.data_root,
        "--mode", options.mode, "--member-cores", str(options.cores),
        "--member-memory", str(options.memory_bytes), "--scratch-size", str(options.scratch_bytes),
        "--log-format", "json",
    ]
    if options.mode == "static":
        argv += ["--members", str(options.members)]
    else:
        argv += ["--min", str(options.min_members), "--max", str(options.max_members)]
    for flag, value in (("--min-age", options.min_age_s), ("--idle", options.idle_s),
                        ("--interval", options.interval_s),
                        ("--member-orphan-timeout", options.orphan_timeout_s)):
        if value is not None:
            argv += [flag, str(value)]
    if options.allow_small_scratch:
        argv.append("--allow-small-scratch")
    if options.dedicated_manager:
        argv.append("--dedicated-manager")
    if options.economy:
        argv.append("--economy")
    if options.spark:
        argv += spark_setup.manager_flags(config.manager_ip)
    return argv


def host_agent_argv(paths: ClusterPaths, config: LocalClusterConfig, options: UpOptions) -> list[str]:
    return [
        str(Path(sys.executable).parent / "bench-agent"), "--manager", f"127.0.0.1:{options.port}",
        "--ca-file", str(paths.ca_cert), "--credential-file", str(paths.host_agent_credential),
        "--join-token-file", str(paths.root / "manager-agent.join-token"), "--node-id", "manager", "--role", "manager",
        "--state-dir", str(paths.host_agent_state), "--scratch-dir", str(paths.root / "manager-scratch"),
        "--data-root", config.data_root, "--log-format", "json",
        # This agent runs in the machine's own network namespace: a restricted workspace's egress rules
        # would firewall the developer's host. Upload rights still apply to the host's /data/project.
        "--no-egress-enforcement",
    ]


def write_client_config(paths: ClusterPaths, port: int) -> None:
    """Readable by every user (address and CA are public); the admin credential it names is root's only."""
    paths.client_config.write_text(f'manager = "127.0.0.1:{port}"\nca_file = "{paths.ca_cert}"\n'
                                   f'admin_credential_file = "{paths.admin_credential}"\n')
    paths.client_config.chmod(0o644)


def prepare_trust(paths: ClusterPaths, config: LocalClusterConfig) -> str:
    """The cluster CA, the manager's certificate (loopback, bridge address and host name as SANs), the
    manager node agent's credential and root's administrator credential; returns root's credential."""
    ca = create_ca(paths.tls_dir, config.cluster_id)
    paths.tls_dir.chmod(0o755)  # ca.crt is public; the keys inside are 0600
    issue_server_cert(ca, paths.tls_dir, ["127.0.0.1", config.manager_ip, "localhost", socket.gethostname()])
    write_new_token(paths.host_agent_credential, "bcm_")
    return write_new_token(paths.admin_credential, "bcu_")


def observe(address: str, token: str, install: sge_setup.SgeInstall, ca: Path) -> Readiness:
    try:
        members = [m for m in list_members(address, token, ca) if m.role == "member"]
        error = ""
    except RegistryUnavailable as exc:
        members, error = [], str(exc)
    proc = subprocess.run([str(install.bin_dir / "qhost"), "-xml"], env=install.env(), capture_output=True,
                          text=True, timeout=30, check=False)
    in_qhost = {e.name for e in parse_qhost(proc.stdout) if e.load_reported} if proc.returncode == 0 else set()
    return Readiness(ready=[m for m in members if m.state == "READY"],
                     not_ready=[m for m in members if m.state != "READY"], in_qhost=in_qhost, error=error)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cluster_exists(paths: ClusterPaths) -> bool:
    """A cluster this bench-cluster started (and can repair) has its config and its daemons recorded."""
    return (paths.root / CONFIG_NAME).exists() and paths.daemons.exists()


def up(paths: ClusterPaths, options: UpOptions, console: Console) -> None:
    install = sge_setup.SgeInstall()
    check_no_leftovers(paths)
    paths.root.mkdir(parents=True, exist_ok=True)
    config = LocalClusterConfig(
        cluster_id=options.cluster_id, manager_hostname=socket.gethostname(), grpc_port=options.port,
        min_scratch_bytes=16 * 1024**2 if options.allow_small_scratch else 1_000_000_000,
        spot_metadata_url=options.spot_metadata_url)
    config.save(paths.root)

    with console.status("network: bridge and name pool"):
        netns.ensure_bridge(config)
        hosts_changed = netns.write_hosts_block(config.hosts_lines())
    console.print(f"[green]✓[/] bridge {config.bridge} {config.manager_ip}/24, "
                  f"{config.member_pool_size} member names in /etc/hosts")

    with console.status("metadata guard"):
        # Before SGE starts: no job on the manager node may reach the metadata service (common/imdsguard.py).
        imdsguard.apply(imdsguard.endpoints([config.spot_metadata_url]))
    console.print(f"[green]✓[/] instance metadata reachable by root only (nft table inet {imdsguard.TABLE})")

    with console.status("Sun Grid Engine: qmaster and configuration"):
        sge_setup.write_host_aliases(install, config.manager_hostname)
        if hosts_changed and sge_setup.qmaster_pid(install) is not None:
            # qmaster caches failed reverse lookups: restart it so it sees the new names.
            sge_setup.stop_qmaster(install)
        qmaster = sge_setup.bring_up(install, config.manager_hostname)
    console.print(f"[green]✓[/] sge_qmaster pid {qmaster} configured (static_cores, static_mem, fill order)")

    data_root = Path(config.data_root)
    for sub in ("project", "mounts", "logs"):
        (data_root / sub).mkdir(parents=True, exist_ok=True)
    user_token = prepare_trust(paths, config)

    master_pid = None
    if options.spark:
        # Started now, waited for last: the JVM starts while the members join.
        master_pid = daemons.start(paths, "spark-master", spark_setup.master_argv(paths.root, config.manager_ip),
                                   paths.root / "spark-master.log")
        kernels = spark_setup.install_kernels()

    log_start = _log_size(paths.manager_log)
    daemons.start(paths, "manager", manager_argv(paths, config, options), paths.manager_log)
    address = f"127.0.0.1:{options.port}"
    _wait_for_manager(address, user_token, paths, log_start)
    daemons.start(paths, "host-agent", host_agent_argv(paths, config, options), paths.host_agent_log)
    write_client_config(paths, options.port)
    console.print(f"[green]✓[/] bench-manager on {address} and {config.manager_address} (supervised: restarted "
                  f"after a crash); client config {paths.client_config}")

    wanted = options.members if options.mode == "static" else options.min_members
    _wait_for_members(address, user_token, install, wanted, options.timeout_s, paths, console, log_start)
    if master_pid is not None:
        with console.status("Spark master"):
            try:
                spark_setup.wait_for_master(config.manager_ip, lambda: local_processes.alive(master_pid))
            except RuntimeError as exc:
                raise UpFailed(f"{exc}; its log ({paths.root / 'spark-master.log'}) ends with:\n"
                               f"{_log_tail(paths.root / 'spark-master.log')}") from None
        console.print(f"[green]✓[/] Spark master {spark_setup.master_url(config.manager_ip)} (UI "
                      f"{spark_setup.ui_url(config.manager_ip)}, supervised); PySpark kernels in {kernels}")


def repair(paths: ClusterPaths, console: Console) -> None:
    """`up` over a cluster that exists: start whatever of the manager node is down (qmaster, manager,
    its agent), keep the members and their jobs, and say what was done."""
    install = sge_setup.SgeInstall()
    if not paths.read_daemons():
        raise UsageError(f"the cluster in {paths.root} was started by an older bench-cluster that did not record "
                         "its daemons; `bench-cluster down` and `up` again")
    config = LocalClusterConfig.load(paths.root)
    console.print(f"a local cluster is already up in {paths.root}: checking it (the options given are not "
                  "applied to it; `workspace-ctl cluster scale` changes its size)")
    netns.ensure_bridge(config)
    if netns.write_hosts_block(config.hosts_lines()):
        console.print("[yellow]•[/] restored the member names in /etc/hosts")
    if imdsguard.show() is None:
        console.print("[yellow]•[/] restored the metadata guard (instance metadata reachable by root only)")
    imdsguard.apply(imdsguard.endpoints([config.spot_metadata_url]))  # before qmaster: replaces, never adds
    had_qmaster = sge_setup.qmaster_pid(install) is not None
    sge_setup.start_qmaster(install)
    if not had_qmaster:
        console.print("[yellow]•[/] started sge_qmaster (it was down)")
    log_start = _log_size(paths.manager_log)
    outcome = daemons.ensure_running(paths, ["spark-master", "manager", "host-agent"])
    for note in outcome.notes:
        console.print(f"[yellow]•[/] {note}")
    address = f"127.0.0.1:{config.grpc_port}"
    user_token = _client_credential(paths)
    _wait_for_manager(address, user_token, paths, log_start)
    members = [m for m in list_members(address, user_token, paths.ca_cert) if m.role == "member"]
    summary = ", ".join(f"{m.hostname or m.member_id} {m.state}" for m in members) or "no members"
    if outcome.changed or not had_qmaster:
        console.print(f"[green]✓[/] repaired: started {', '.join(outcome.started) or 'nothing else'}; "
                      f"members kept: {summary}")
    else:
        console.print(f"[green]✓[/] the cluster is up; nothing changed. Members: {summary}")


def _client_credential(paths: ClusterPaths) -> str:
    """root's administrator credential, made by `up` (0600, root only)."""
    return paths.admin_credential.read_text().strip()


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _crash_line(log_path: Path, name: str, since: int) -> str | None:
    """The supervisor's line for a crash of `name` logged after offset `since`, if any."""
    try:
        with log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    marker = f"supervise: {name} exited with status"
    return next((line for line in text.splitlines() if marker in line), None)


def _wait_for_manager(address: str, token: str, paths: ClusterPaths, log_start: int) -> None:
    deadline = time.monotonic() + MANAGER_START_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        crash = _crash_line(paths.manager_log, "manager", log_start)
        if crash is not None:
            raise UpFailed(f"bench-manager crashed while starting ({crash.split(': ', 1)[-1]}); its log "
                           f"({paths.manager_log}) ends with:\n{_log_tail(paths.manager_log)}")
        try:
            list_members(address, token, paths.ca_cert)
            return
        except RegistryUnavailable as exc:
            last_error = str(exc)
        time.sleep(0.3)
    raise UpFailed(f"bench-manager did not answer on {address} within {MANAGER_START_TIMEOUT_S:.0f} s "
                   f"({last_error}); log {paths.manager_log}:\n{_log_tail(paths.manager_log)}")


def _wait_for_members(address: str, token: str, install: sge_setup.SgeInstall, wanted: int, timeout_s: float,
                      paths: ClusterPaths, console: Console, log_start: int) -> None:
    deadline = time.monotonic() + timeout_s
    state = observe(address, token, install, paths.ca_cert)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("members READY and in qhost", total=wanted)
        while not state.done(wanted):
            crash = _crash_line(paths.manager_log, "manager", log_start)
            if crash is not None:
                raise UpFailed(f"bench-manager crashed while members were joining ({crash.split(': ', 1)[-1]}); "
                               f"log {paths.manager_log}:\n{_log_tail(paths.manager_log)}")
            if time.monotonic() > deadline:
                raise UpFailed(_missing_report(state, wanted, timeout_s, paths))
            time.sleep(POLL_S)
            state = observe(address, token, install, paths.ca_cert)
            progress.update(task, completed=min(wanted, len(state.ready_in_sge)))
    console.print(f"[green]✓[/] {wanted} member(s) READY: "
                  + ", ".join(f"{m.hostname} ({m.ip})" for m in state.ready_in_sge[:wanted]))


def _missing_report(state: Readiness, wanted: int, timeout_s: float, paths: ClusterPaths) -> str:
    lines = [f"only {len(state.ready_in_sge)} of {wanted} members are READY and reporting in qhost after "
             f"{timeout_s:.0f} s"]
    if state.error:
        lines.append(f"registry: {state.error}")
    lines += [f"  {m.hostname or m.member_id}: state {m.state}" for m in state.not_ready]
    lines += [f"  {m.hostname}: READY but not reporting in qhost (see its execd.log under "
              f"{paths.root}/members/{m.hostname}/)" for m in state.ready if m.hostname not in state.in_qhost]
    lines.append(f"manager log {paths.manager_log} ends with:\n{_log_tail(paths.manager_log)}")
    lines.append("the cluster was left as it is for inspection; `bench-cluster down` removes it")
    return "\n".join(lines)
