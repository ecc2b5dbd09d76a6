"""`local` NodeProvider: every member is a set of Linux namespaces on this machine.

A member gets a network namespace (veth on the cluster bridge, its own IP), and — through its init
process (`local_member`) — its own uts (hostname), mount (/scratch, /data/mounts) and pid namespaces,
sharing /data with the host. The init runs in its own session, detached from the manager, so members
survive a `kill -9` of the manager; all state lives under `state_root/members/<hostname>/` and is
rediscovered by `list()` after a restart. Network settings come from `state_root/cluster.json`,
written by `bench-cluster up`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from common import imdsguard
from common.tls import write_private
from manager.providers import local_processes, local_scratch, netns
from manager.providers.base import NodeSpec, NodeState, ProviderError, ProviderNode
from manager.providers.local_config import PROCESS_MARKER, LocalClusterConfig, MemberSlot

log = structlog.get_logger(__name__)

MEMBER_FILE = "member.json"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 20.0
EXECD_SPOOL = Path("/var/spool/gridengine/execd")


@dataclass(frozen=True)
class MemberRecord:
    """What is on disk about one member (member.json)."""

    node_id: str
    cluster_id: str
    hostname: str
    ip: str
    slot_index: int
    launched_at_unix: float
    spot: bool = False

    @classmethod
    def load(cls, path: Path) -> MemberRecord:
        raw = json.loads(path.read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


@dataclass(frozen=True)
class MemberLaunch:
    """Everything needed to build the command a member runs as its agent."""

    node_id: str
    hostname: str
    ip: str
    manager_address: str
    join_token_file: Path  # one-time; the agent exchanges it for credential_file at first start
    credential_file: Path
    ca_file: Path
    state_dir: Path
    cores: int
    memory_bytes: int
    data_root: str
    spot_metadata_url: str = ""  # set for spot members: the agent watches it for interruption notices
    orphan_timeout_s: float = 600.0


AgentCommand = Callable[[MemberLaunch], list[str]]
# `list` is a NodeProvider method name, so annotations inside the class use these aliases.
Slots = list[MemberSlot]
Nodes = list[ProviderNode]
Records = list[tuple[Path, "MemberRecord | None"]]
NodeIds = list[str]


def format_size(size_bytes: int) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def bench_agent_command(launch: MemberLaunch) -> list[str]:
    agent = Path(sys.executable).parent / "bench-agent"
    return [
        str(agent), "--manager", launch.manager_address, "--ca-file", str(launch.ca_file),
        "--join-token-file", str(launch.join_token_file), "--credential-file", str(launch.credential_file),
        "--node-id", launch.node_id, "--role", "member", "--state-dir", str(launch.state_dir),
        "--scratch-dir", "/scratch", "--data-root", launch.data_root,
        "--cores", str(launch.cores), "--memory", format_size(launch.memory_bytes),
        "--advertise-ip", launch.ip, "--log-format", "json",
        # orphaned: the agent signals the member's init (PID 1 of its namespaces), which ends the member
        "--node-shutdown", "init", "--orphan-timeout", str(launch.orphan_timeout_s),
        *(["--spot-metadata-url", launch.spot_metadata_url, "--spot-poll", "1"] if launch.spot_metadata_url else []),
    ]


class LocalProvider:
    name = "local"

    def __init__(self, cluster_id: str, state_root: Path, *, agent_command: AgentCommand | None = None,
                 min_scratch_bytes: int | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.cluster_id = cluster_id
        self.state_root = Path(state_root)
        self.members_dir = self.state_root / "members"
        self._agent_command = agent_command or bench_agent_command
        self._min_scratch_bytes = min_scratch_bytes
        self._start_timeout_s = start_timeout_s

    # --- NodeProvider -------------------------------------------------------------------------

    async def create(self, count: int, spec: NodeSpec) -> Nodes:
        return await asyncio.to_thread(self._create_sync, count, spec)

    async def terminate(self, node_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self._terminate_sync, [*node_ids])

    async def list(self) -> Nodes:
        return await asyncio.to_thread(self._list_sync)

    # --- blocking implementation (worker threads) ----------------------------------------------

    def _config(self) -> LocalClusterConfig:
        try:
            config = LocalClusterConfig.load(self.state_root)
        except FileNotFoundError as exc:
            raise ProviderError(str(exc), retryable=False) from exc
        if config.cluster_id != self.cluster_id:
            raise ProviderError(f"{self.state_root} belongs to cluster {config.cluster_id!r}, "
                                f"not {self.cluster_id!r}", retryable=False)
        return config

    def _validate(self, count: int, spec: NodeSpec, config: LocalClusterConfig) -> None:
        problems = []
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problems.append(f"count must be a whole number of at least 1 (got {count!r})")
        if spec.cores < 1:
            problems.append(f"cores must be at least 1 (got {spec.cores})")
        if spec.memory_bytes < 1 << 20:
            problems.append(f"memory must be at least 1 MiB (got {spec.memory_bytes} bytes)")
        if spec.cluster_id != self.cluster_id:
            problems.append(f"spec is for cluster {spec.cluster_id!r}, "
                            f"this provider serves {self.cluster_id!r}")
        minimum = self._min_scratch_bytes if self._min_scratch_bytes is not None else config.min_scratch_bytes
        if spec.scratch_bytes != 0:  # 0: no dedicated /scratch volume, a private directory instead
            try:
                local_scratch.validate_scratch_size(spec.scratch_bytes, minimum)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ProviderError("; ".join(problems), retryable=False)

    @contextmanager
    def _allocation_lock(self) -> Iterator[None]:
        self.members_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_root / "members.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _claim_slots(self, config: LocalClusterConfig, count: int) -> Slots:
        """Reserve free slots by creating their directories (under the lock, so concurrent creates
        in this or another process never pick the same name or IP)."""
        with self._allocation_lock():
            taken = {p.name for p in self.members_dir.iterdir()} | set(netns.list_netns())
            # Round-robin from the slot after the last one handed out: a freshly removed member's
            # name is not reused at once, so SGE accounting (qacct hostname) and qmaster's host
            # caches never mix an old member with its replacement.
            cursor_file = self.state_root / "next-slot"
            try:
                start = int(cursor_file.read_text()) % config.member_pool_size
            except (FileNotFoundError, ValueError):
                start = 0
            slots = config.slots()
            ordered = slots[start:] + slots[:start]
            free = [s for s in ordered if s.hostname not in taken]
            if len(free) < count:
                raise ProviderError(f"cannot create {count} local member(s): only {len(free)} of "
                                    f"{config.member_pool_size} slots are free", retryable=False)
            chosen = free[:count]
            for slot in chosen:
                (self.members_dir / slot.hostname).mkdir()
            cursor_file.write_text(str(chosen[-1].index % config.member_pool_size))
            return chosen

    def _manager_address(self, config: LocalClusterConfig, spec: NodeSpec) -> str:
        # Loopback means nothing inside a member's network namespace: use the bridge address.
        host = spec.manager_address.rsplit(":", 1)[0]
        if not spec.manager_address or host in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"):
            return config.manager_address
        return spec.manager_address

    def _create_sync(self, count: int, spec: NodeSpec) -> Nodes:
        config = self._config()
        self._validate(count, spec, config)
        slots = self._claim_slots(config, count)
        created: Nodes = []
        try:
            for index, slot in enumerate(slots):
                created.append(self._launch(config, slot, spec, index))
        except Exception as exc:
            log.error("local.create_failed", error=str(exc), rolling_back=[s.hostname for s in slots])
            for slot in slots:
                self._cleanup_slot(slot.hostname)
            if isinstance(exc, ProviderError):
                raise
            raise ProviderError(f"launching a local member failed: {exc}") from exc
        return created

    def _launch(self, config: LocalClusterConfig, slot: MemberSlot, spec: NodeSpec, index: int) -> ProviderNode:
        member_dir = self.members_dir / slot.hostname
        node_id = f"local-{secrets.token_hex(4)}"
        record = MemberRecord(node_id=node_id, cluster_id=self.cluster_id, hostname=slot.hostname, ip=slot.ip,
                              slot_index=slot.index, launched_at_unix=time.time(), spot=spec.spot)
        # Like EC2 user-data: a one-time join token (created 0600, never wider) and the public CA.
        if len(spec.join_tokens) <= index:
            raise ProviderError("no join token for the member: the manager issues one per node", retryable=False)
        join_token_file = member_dir / "join.token"
        write_private(join_token_file, (spec.join_tokens[index] + "\n").encode())
        ca_file = member_dir / "ca.crt"
        ca_file.write_text(spec.ca_cert_pem)
        image = member_dir / "scratch.img"
        if spec.scratch_bytes:
            local_scratch.create_image(image, spec.scratch_bytes)
        netns.create_member_netns(config, slot)
        # Before the member's init starts SGE and the agent: no job there may reach the metadata service.
        imdsguard.apply(imdsguard.endpoints([config.spot_metadata_url]), netns=slot.netns)
        launch = MemberLaunch(node_id=node_id, hostname=slot.hostname, ip=slot.ip,
                              manager_address=self._manager_address(config, spec),
                              join_token_file=join_token_file, credential_file=member_dir / "agent" / "credential",
                              ca_file=ca_file,
                              state_dir=member_dir / "agent", cores=spec.cores,
                              memory_bytes=spec.memory_bytes, data_root=config.data_root,
                              spot_metadata_url=config.spot_metadata_url if spec.spot else "",
                              orphan_timeout_s=spec.orphan_timeout_s)
        init_spec = {
            "node_id": node_id, "hostname": slot.hostname, "ip": slot.ip,
            "scratch_image": str(image) if spec.scratch_bytes else "",
            "private_scratch_dir": str(member_dir / "scratch"),
            "private_mounts_dir": str(member_dir / "mounts"), "data_root": config.data_root,
            "log_dir": str(member_dir), "sge_root": config.sge_root, "sge_cell": config.sge_cell,
            "execd": "/usr/lib/gridengine/sge_execd", "agent_command": self._agent_command(launch),
        }
        (member_dir / "init.json").write_text(json.dumps(init_spec, indent=2) + "\n")
        (member_dir / MEMBER_FILE).write_text(json.dumps(asdict(record), indent=2) + "\n")
        marker = local_processes.member_marker(self.cluster_id, node_id)
        with (member_dir / "init.log").open("ab") as out:
            # setsid -f: the init is not our child and not in our session, so it outlives us.
            subprocess.run(
                ["setsid", "-f", "ip", "netns", "exec", slot.netns,
                 "unshare", "--uts", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                 "env", f"{PROCESS_MARKER}={marker}", sys.executable, "-m", "manager.providers.local_member",
                 str(member_dir / "init.json")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=30,
                cwd="/", env=_member_env())
        self._wait_started(record, member_dir)
        log.info("local.member_started", node_id=node_id, hostname=slot.hostname, ip=slot.ip)
        return ProviderNode(node_id=node_id, hostname=slot.hostname, ip=slot.ip, state=NodeState.RUNNING,
                            launched_at_unix=record.launched_at_unix, spot=spec.spot)

    def _wait_started(self, record: MemberRecord, member_dir: Path) -> None:
        """Started = the init is alive and has mounted /scratch in its namespace."""
        deadline = time.monotonic() + self._start_timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            pid = local_processes.member_init_pid(self.cluster_id, record.node_id)
            if pid is not None:
                try:
                    mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
                except OSError:
                    mountinfo = ""
                if " /scratch " in mountinfo:
                    return
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        tail = (member_dir / "init.log").read_text()[-2000:] if (member_dir / "init.log").exists() else ""
        raise ProviderError(f"member {record.hostname} did not start within {self._start_timeout_s:.0f} s; "
                            f"its init log ends with:\n{tail}")

    def _records(self) -> Records:
        if not self.members_dir.exists():
            return []
        out: Records = []
        for member_dir in sorted(self.members_dir.iterdir()):
            try:
                out.append((member_dir, MemberRecord.load(member_dir / MEMBER_FILE)))
            except (OSError, ValueError, KeyError, TypeError):
                out.append((member_dir, None))  # claimed but never finished launching
        return out

    def _list_sync(self) -> Nodes:
        nodes: Nodes = []
        for _, record in self._records():
            if record is None or record.cluster_id != self.cluster_id:
                continue
            if local_processes.member_init_pid(self.cluster_id, record.node_id) is None:
                log.warning("local.member_not_running", node_id=record.node_id, hostname=record.hostname)
                continue
            nodes.append(ProviderNode(node_id=record.node_id, hostname=record.hostname, ip=record.ip,
                                      state=NodeState.RUNNING, launched_at_unix=record.launched_at_unix,
                                      spot=record.spot))
        return nodes

    def _terminate_sync(self, node_ids: NodeIds) -> None:
        wanted = set(node_ids)
        for member_dir, record in self._records():
            if record is not None and record.node_id in wanted and record.cluster_id == self.cluster_id:
                self._cleanup_slot(member_dir.name, record.node_id)

    def _cleanup_slot(self, hostname: str, node_id: str | None = None) -> None:
        """Remove everything one member consists of; safe to repeat and on half-created members."""
        member_dir = self.members_dir / hostname
        if node_id is None and (member_dir / MEMBER_FILE).exists():
            node_id = MemberRecord.load(member_dir / MEMBER_FILE).node_id
        if node_id is not None:
            marker = local_processes.member_marker(self.cluster_id, node_id)
            pid = local_processes.member_init_pid(self.cluster_id, node_id)
            if pid is not None:
                local_processes.stop_process(pid, STOP_GRACE_S)
            for leftover in local_processes.marked_processes(marker):
                local_processes.stop_process(leftover, 1.0)
        remove_member_leftovers(self.state_root, hostname)
        log.info("local.member_removed", node_id=node_id, hostname=hostname)


def _member_env() -> dict[str, str]:
    """Our environment minus other bench-cluster process markers (the manager's own marker must not
    make a member look like the manager to `bench-cluster down`)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BENCH_CLUSTER_")}


def remove_member_leftovers(state_root: Path, hostname: str) -> None:
    """Host-side remains of a member whose processes are gone: loop device, netns + veth, execd
    spool, state directory. Shared with `bench-cluster down`, which may find members without any
    member.json (a killed `up`)."""
    member_dir = state_root / "members" / hostname
    local_scratch.detach_loops(member_dir / "scratch.img")
    index = hostname.removeprefix("bench-m")
    netns.delete_member_netns(hostname, f"bv{index}" if index.isdigit() else None)
    shutil.rmtree(EXECD_SPOOL / hostname, ignore_errors=True)
    shutil.rmtree(member_dir, ignore_errors=True)
