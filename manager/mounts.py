"""Fast-mount fan-out: the manager stores the mount set and every node's agent converges on it.

create: validate (same rules as the agents) → resolve the source and check it as the requesting user
(`mountaccess.py`) → persist the intent with the resolved source → send CreateMount to every
connected node (members and the manager node) in parallel → if any node fails, roll back on all and
forget the mount, so it is never left silently half-mounted. Nodes not connected right now get the
mount when they (re)connect, from the SyncMounts sent at the start of every agent session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from common.logging import get_logger
from common.mountpaths import MountValidationError, under_root, validate_mount_spec
from manager.config import ManagerConfig
from manager.convert import mount_spec_to_pb
from manager.errors import RequestError, code_from_name, not_found
from manager.lifecycle import MemberState
from manager.mountaccess import SourceAccessError, resolve_as
from manager.registry import MemberRegistry
from manager.sessions import AgentUnavailable, SessionTable
from manager.store import Store
from protos.bench.v1 import agent_pb2

log = get_logger("mounts")

MOUNT_TARGET_STATES = frozenset({MemberState.JOINING, MemberState.READY})


@dataclass(frozen=True)
class NodeOutcome:
    member_id: str
    ok: bool
    error_code: str = ""
    message: str = ""


@dataclass(frozen=True)
class MountOutcome:
    mount_path: str
    source: str
    mode: str
    results: tuple[NodeOutcome, ...]
    message: str


@dataclass(frozen=True)
class NodeMountView:
    member_id: str
    state: str
    bytes_read: int
    errors: int
    message: str


@dataclass(frozen=True)
class MountView:
    mount_path: str
    source: str
    mode: str
    nodes: tuple[NodeMountView, ...]


class MountService:
    def __init__(self, config: ManagerConfig, store: Store, registry: MemberRegistry,
                 sessions: SessionTable, clock: Callable[[], float],
                 upload_allowed: Callable[[], bool] = lambda: True) -> None:
        self._config = config
        self._upload_allowed = upload_allowed  # restricted workspaces: upload rights in force
        self._store = store
        self._registry = registry
        self._sessions = sessions
        self._clock = clock
        self._lock = asyncio.Lock()  # one mount change at a time keeps validation against `existing` true

    def sync_command(self) -> agent_pb2.ManagerCommand:
        specs = [mount_spec_to_pb(m["mount_path"], m["source"], m["mode"]) for m in self._store.mounts()]
        return agent_pb2.ManagerCommand(command_id=self._sessions.new_command_id(),
                                        sync_mounts=agent_pb2.SyncMounts(mounts=specs))

    def _targets(self) -> list[str]:
        return [m.member_id for m in self._registry.all()
                if m.state in MOUNT_TARGET_STATES and self._sessions.connected(m.member_id)]

    async def _fan_out(self, targets: list[str],
                       make: Callable[[], agent_pb2.ManagerCommand]) -> list[NodeOutcome]:
        async def one(member_id: str) -> NodeOutcome:
            try:
                result = await self._sessions.send(member_id, make(), self._config.command_timeout_s)
            except AgentUnavailable as exc:
                return NodeOutcome(member_id, False, "UNAVAILABLE", str(exc))
            return NodeOutcome(member_id, result.ok, result.error_code, result.message)
        return list(await asyncio.gather(*(one(t) for t in targets)))

    async def create(self, mount_path: str, source: str, mode: str, user: str) -> MountOutcome:
        async with self._lock:
            existing = [(m["mount_path"], m["source"]) for m in self._store.mounts()]
            root = self._config.data_root
            try:
                validate_mount_spec(mount_path, source, mode, existing, root, examined_elsewhere=True)
                # Resolved once, as the requester (who must be able to read it), and stored resolved:
                # a symlink retargeted later changes nothing any node mounts.
                resolved = under_root(await resolve_as(user, source), root)
                req = validate_mount_spec(mount_path, resolved, mode, existing, root, examined_elsewhere=True)
            except (MountValidationError, SourceAccessError) as exc:
                raise RequestError(code_from_name(exc.code), exc.message) from None
            self._check_upload_rights(req.source, req.mode)
            self._store.add_mount(req.mount_path, req.source, req.mode, self._clock(), user)
            targets = self._targets()
            spec = mount_spec_to_pb(req.mount_path, req.source, req.mode)
            results = await self._fan_out(targets, lambda: agent_pb2.ManagerCommand(
                create_mount=agent_pb2.CreateMount(spec=spec)))
            failed = [r for r in results if not r.ok]
            if failed:
                await self._fan_out(targets, lambda: agent_pb2.ManagerCommand(
                    delete_mount=agent_pb2.DeleteMount(mount_path=req.mount_path)))
                self._store.remove_mount(req.mount_path)
                detail = "; ".join(f"{r.member_id}: {r.error_code}: {r.message}" for r in failed)
                log.warning("mount rolled back", mount_path=req.mount_path, failed=detail)
                code = code_from_name(failed[0].error_code) if failed[0].error_code else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.OK:
                    code = grpc.StatusCode.UNKNOWN
                raise RequestError(code, f"mount {req.mount_path} failed on {len(failed)} of {len(targets)} "
                                         f"node(s) and was rolled back everywhere: {detail}")
            message = f"mounted on {len(results)} node(s)" if results else \
                "stored; no node is connected yet — every node mounts it when it joins"
            return MountOutcome(req.mount_path, req.source, req.mode, tuple(results), message)

    def _check_upload_rights(self, source: str, mode: str) -> None:
        project = f"{str(self._config.data_root).rstrip('/')}/project"
        if mode == "read-write" and (source == project or source.startswith(project + "/")) \
                and not self._upload_allowed():
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED,
                               f"a read-write mount of {source} is refused: this workspace has no upload rights, "
                               f"so {project} is read-only on every node. Use --mode read-only, or ask an "
                               "administrator for upload rights (`workspace-ctl workspace set-rights --upload on`, "
                               "then `workspace-ctl cluster start`)")

    async def delete(self, mount_path: str, user: str) -> MountOutcome:
        async with self._lock:
            known = {m["mount_path"]: m for m in self._store.mounts()}
            entry = known.get(mount_path.rstrip("/") or mount_path)
            if entry is None:
                listing = ", ".join(known) or "none"
                raise not_found(f"no mount at {mount_path!r} (mounts: {listing})")
            # Forget first: a node that misses the delete drops the mount when it next syncs.
            self._store.remove_mount(entry["mount_path"])
            results = await self._fan_out(self._targets(), lambda: agent_pb2.ManagerCommand(
                delete_mount=agent_pb2.DeleteMount(mount_path=entry["mount_path"])))
            failed = [r for r in results if not r.ok]
            message = (f"unmounted on {len(results)} node(s)" if not failed else
                       f"removed; {len(failed)} node(s) did not confirm and will drop it when they next sync")
            return MountOutcome(entry["mount_path"], entry["source"], entry["mode"], tuple(results), message)

    def views(self) -> list[MountView]:
        members = [m for m in self._registry.all() if m.state in MOUNT_TARGET_STATES | {MemberState.DRAINING}]
        out = []
        for entry in self._store.mounts():
            nodes = []
            for member in members:
                report = next((v for v in member.mounts if v.mount_path == entry["mount_path"]), None)
                if report is None:
                    nodes.append(NodeMountView(member.member_id, "pending", 0, 0,
                                               "not reported by the node yet"))
                else:
                    nodes.append(NodeMountView(member.member_id, report.state, report.bytes_read, report.errors,
                                               report.message))
            out.append(MountView(entry["mount_path"], entry["source"], entry["mode"], tuple(nodes)))
        return out
