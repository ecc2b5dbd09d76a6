"""Carries out the manager's commands on this node and acknowledges each with a result.

Commands carry ids and are idempotent: a command seen again (re-sent after a reconnect) is answered
from the result cache instead of being run twice. The draining flag is persisted so an agent
restarted mid-drain does not mount anything again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from agent import scratch
from agent.mounts import MountError, MountManager, MountReportData, MountSpecData
from agent.mountsys import detach
from agent.restrictions import RestrictionEnforcer, RestrictionError, from_pb
from common.logging import get_logger
from common.mountmodes import MODE_NAMES, MODE_VALUES
from protos.bench.v1 import agent_pb2, types_pb2

log = get_logger("agent-commands")

RESULT_CACHE_SIZE = 512


def spec_from_pb(pb: types_pb2.MountSpec) -> MountSpecData:
    return MountSpecData(mount_path=pb.mount_path, source=pb.source, mode=MODE_NAMES[pb.mode])


def report_to_pb(r: MountReportData) -> types_pb2.MountReport:
    return types_pb2.MountReport(
        spec=types_pb2.MountSpec(mount_path=r.spec.mount_path, source=r.spec.source, mode=MODE_VALUES[r.spec.mode]),
        state=r.state, bytes_read=r.bytes_read, errors=r.errors, message=r.message)


class CommandHandler:
    def __init__(self, mounts: MountManager, state_dir: Path, scratch_dir: Path,
                 request_shutdown: Callable[[], None], restrictions: RestrictionEnforcer | None = None) -> None:
        self._mounts = mounts
        self._restrictions = restrictions
        self._scratch_dir = scratch_dir
        self._draining_flag = state_dir / "draining"
        self._request_shutdown = request_shutdown
        self._results: OrderedDict[str, agent_pb2.CommandResult] = OrderedDict()
        self._in_progress: dict[str, asyncio.Future[agent_pb2.CommandResult]] = {}
        self._lock = asyncio.Lock()  # commands touching mounts run one at a time, in arrival order

    @property
    def draining(self) -> bool:
        return self._draining_flag.exists()

    async def handle(self, command: agent_pb2.ManagerCommand) -> agent_pb2.CommandResult:
        cid = command.command_id
        if cid in self._results:
            return self._results[cid]
        if cid in self._in_progress:
            return await asyncio.shield(self._in_progress[cid])
        future: asyncio.Future[agent_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        self._in_progress[cid] = future
        try:
            result = await self._run(command)
        except Exception as exc:  # a command failing must not take the session down; report it
            log.exception("command failed", command_id=cid)
            result = _failure(cid, "INTERNAL", f"{type(exc).__name__}: {exc}")
        finally:
            self._in_progress.pop(cid, None)
        future.set_result(result)
        self._results[cid] = result
        while len(self._results) > RESULT_CACHE_SIZE:
            self._results.popitem(last=False)
        return result

    async def _run(self, command: agent_pb2.ManagerCommand) -> agent_pb2.CommandResult:
        cid = command.command_id
        kind = command.WhichOneof("command")
        if kind == "ping":
            return agent_pb2.CommandResult(command_id=cid, ok=True)
        if kind == "shutdown":
            self._request_shutdown()
            return agent_pb2.CommandResult(command_id=cid, ok=True, message="agent stopping")
        if kind == "apply_restrictions":
            if self._restrictions is None:
                return _failure(cid, "UNIMPLEMENTED", "this agent does not enforce workspace restrictions")
            try:
                done = await self._restrictions.apply(from_pb(command.apply_restrictions.restrictions))
            except RestrictionError as exc:
                return _failure(cid, "FAILED_PRECONDITION", str(exc))
            return agent_pb2.CommandResult(command_id=cid, ok=True, message=done)
        async with self._lock:
            if kind == "create_mount":
                if self.draining:
                    return _failure(cid, "FAILED_PRECONDITION", "node is draining; it takes no new mounts")
                try:
                    report = await self._mounts.create(spec_from_pb(command.create_mount.spec))
                except MountError as exc:
                    return _failure(cid, exc.code, exc.message)
                return agent_pb2.CommandResult(command_id=cid, ok=True, mount=report_to_pb(report))
            if kind == "delete_mount":
                try:
                    await self._mounts.delete(command.delete_mount.mount_path)
                except MountError as exc:
                    return _failure(cid, exc.code, exc.message)
                return agent_pb2.CommandResult(command_id=cid, ok=True)
            if kind == "sync_mounts":
                specs = [] if self.draining else [spec_from_pb(s) for s in command.sync_mounts.mounts]
                reports = await self._mounts.sync(specs)
                bad = [r for r in reports if r.state == "failed"]
                return agent_pb2.CommandResult(
                    command_id=cid, ok=not bad,
                    error_code="" if not bad else "UNAVAILABLE",
                    message="; ".join(f"{r.spec.mount_path}: {r.message}" for r in bad))
            if kind == "drain":
                self._draining_flag.parent.mkdir(parents=True, exist_ok=True)
                self._draining_flag.write_text(command.drain.reason or "drain")
                await self._mounts.unmount_all()
                return agent_pb2.CommandResult(command_id=cid, ok=True, message="draining; mounts removed")
            if kind == "wipe_scratch":
                try:
                    message = await wipe_scratch(self._scratch_dir)
                except (scratch.ScratchError, OSError) as exc:
                    return _failure(cid, "FAILED_PRECONDITION", str(exc))
                return agent_pb2.CommandResult(command_id=cid, ok=True, message=message)
        return _failure(cid, "UNIMPLEMENTED", f"unknown command {kind!r}; upgrade this agent")


async def wipe_scratch(scratch_dir: Path) -> str:
    """Empty /scratch (a drain's step, and an orphaned member's); what was done, as one line.
    A job's FUSE mount left below /scratch (its server dead or hung) is detached, never entered."""
    detached = []
    for point in await asyncio.to_thread(scratch.mounts_below, scratch_dir):
        reason = await detach(point)
        detached.append(point if reason is None else f"{point} (not detached: {reason})")
    wiped = await asyncio.to_thread(scratch.wipe, scratch_dir)
    message = f"removed {wiped.removed} entries from {scratch_dir}"
    if detached:
        message += f"; detached {len(detached)} mount(s) left below it: {', '.join(detached[:5])}"
    if wiped.kept:
        message += f"; left {len(wiped.kept)} path(s) on other filesystems: {', '.join(wiped.kept[:5])}"
    return message


def _failure(cid: str, code: str, message: str) -> agent_pb2.CommandResult:
    return agent_pb2.CommandResult(command_id=cid, ok=False, error_code=code, message=message)
