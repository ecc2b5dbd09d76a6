"""The agent's mount supervisor: creates, removes, remembers and heals this node's data mounts.

Read-only mounts are served by one fast-mount worker process each (a child of the agent); read-write
mounts are plain bind mounts. A watch loop notices a dead or hung worker (the kernel then answers
ENOTCONN), detaches the stale mount and starts a new worker, with backoff and a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential_jitter

from agent.fastmount.beneath import open_no_symlinks
from agent.fastmount.stats import Counters
from agent.mountstates import MountEvent, MountState, next_state
from agent.mountstore import load_specs, save_specs
from agent.mountsys import FUSE_FSTYPE, bind_mount, lazy_unmount, probe, read_mount_table
from agent.mountworker import WorkerProcess, WorkerStartError, kill_orphan_worker
from common.mountpaths import READ_ONLY, READ_WRITE, MountValidationError, real_location, validate_mount_spec

log = structlog.get_logger("agent.mounts")

WATCH_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 3.0
RESTART_ATTEMPTS = 5
RESTARTS_PER_WINDOW = 10
RESTART_WINDOW_S = 300.0


@dataclass(frozen=True)
class MountSpecData:
    mount_path: str
    source: str
    mode: str  # "read-only" | "read-write"


@dataclass(frozen=True)
class MountReportData:
    spec: MountSpecData
    state: str  # "mounted" | "mounting" | "stale" | "failed" | "unmounted"
    bytes_read: int
    errors: int
    message: str


class MountError(Exception):
    """A refused or failed mount operation; `code` is a grpc StatusCode name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class _Mount:
    spec: MountSpecData
    state: MountState = MountState.UNMOUNTED
    message: str = ""
    worker: WorkerProcess | None = None
    created_dir: bool = False
    base: Counters = field(default_factory=Counters)  # counts of earlier workers of this mount
    restarts: deque[float] = field(default_factory=deque)

    def apply(self, event: MountEvent, message: str = "") -> None:
        before = self.state
        self.state = next_state(self.state, event)
        self.message = message
        log.info("mount-state", mount_path=self.spec.mount_path, cause=str(event), before=str(before),
                 after=str(self.state), message=message)

    def counters(self) -> Counters:
        live = self.worker.counters() if self.worker is not None else Counters()
        return Counters(self.base.bytes_read + live.bytes_read, self.base.errors + live.errors,
                        self.base.opens + live.opens)

    def retire_worker_counts(self) -> None:
        if self.worker is not None:
            live = self.worker.counters()
            self.base = Counters(self.base.bytes_read + live.bytes_read, self.base.errors + live.errors,
                                 self.base.opens + live.opens)

    def report(self) -> MountReportData:
        counts = self.counters()
        return MountReportData(self.spec, str(self.state), counts.bytes_read, counts.errors, self.message)


def _clean(path: str) -> str:
    # Only tidy (slashes, '.') what validation would accept anyway: normpath would hide a '..' from it.
    if path.startswith("/") and ".." not in path.split("/"):
        return os.path.normpath(path)
    return path


def _normalise(spec: MountSpecData) -> MountSpecData:
    return MountSpecData(_clean(spec.mount_path), _clean(spec.source), spec.mode)


def _prepare_mount_point(spec: MountSpecData) -> bool:
    """Check the source is still there and create the mount point; True if the mount point was created."""
    if not os.path.isdir(spec.source):
        raise MountError("NOT_FOUND", f"source {spec.source} does not exist (any more) on this node")
    if os.path.isdir(spec.mount_path):
        return False
    os.makedirs(spec.mount_path, exist_ok=True)
    return True


def _open_no_symlinks(path: str) -> int:
    return open_no_symlinks(os.fsencode(path), os.O_PATH | os.O_DIRECTORY)


class MountManager:
    def __init__(self, state_dir: Path, data_root: Path = Path("/data"), python: str = sys.executable,
                 engine: str = "auto") -> None:
        self._state_dir = state_dir
        self._data_root = data_root
        self._python = python
        self._engine = engine
        self._mounts: dict[str, _Mount] = {}
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    # public API

    async def start(self) -> None:
        """Restore the remembered mounts (cleaning up what a crashed agent left) and start watching them."""
        try:
            remembered = load_specs(self._state_dir)
        except ValueError as exc:
            log.error("mount-state-unreadable", error=str(exc))
            remembered = []
        async with self._lock:
            for raw in remembered:
                spec = MountSpecData(raw["mount_path"], raw["source"], raw["mode"])
                mount = _Mount(spec)
                self._mounts[spec.mount_path] = mount
                await self._clear_leftover(spec.mount_path)
                try:
                    await self._bring_up(mount)
                except MountError as exc:
                    log.error("mount-restore-failed", mount_path=spec.mount_path, error=exc.message)
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_loop(), name="mount-watch")

    async def create(self, spec: MountSpecData) -> MountReportData:
        spec = _normalise(spec)
        async with self._lock:
            current = self._mounts.get(spec.mount_path)
            if current is not None and current.spec == spec:
                if current.state in (MountState.FAILED, MountState.UNMOUNTED):
                    await self._bring_up(current)  # e.g. after a drain's unmount_all, or a failed restore
                return current.report()
            others = [(m.spec.mount_path, m.spec.source) for m in self._mounts.values()]
            try:
                request = validate_mount_spec(spec.mount_path, spec.source, spec.mode, others, self._data_root,
                                              require_resolved=True)
            except MountValidationError as exc:
                raise MountError(exc.code, exc.message) from None
            spec = MountSpecData(request.mount_path, request.source, request.mode)
            await self._refuse_foreign_mount(spec.mount_path)
            mount = _Mount(spec)
            try:
                await self._bring_up(mount)
            except MountError:
                await self._tear_down(mount)
                raise
            self._mounts[spec.mount_path] = mount
            self._save()
            return mount.report()

    async def delete(self, mount_path: str) -> None:
        path = _clean(mount_path)
        async with self._lock:
            mount = self._mounts.get(path)
            if mount is None:
                return
            await self._tear_down(mount)
            del self._mounts[path]
            self._save()

    async def sync(self, specs: Sequence[MountSpecData]) -> list[MountReportData]:
        """Converge to exactly this set: remove the others, then create the missing (errors become reports)."""
        wanted = {s.mount_path: s for s in map(_normalise, specs)}
        for path, mount in list(self._mounts.items()):
            if wanted.get(path) != mount.spec:
                await self.delete(path)
        reports = []
        for spec in wanted.values():
            try:
                reports.append(await self.create(spec))
            except MountError as exc:
                reports.append(MountReportData(spec, str(MountState.FAILED), 0, 0, exc.message))
        return reports

    def reports(self) -> list[MountReportData]:
        return [m.report() for m in sorted(self._mounts.values(), key=lambda m: m.spec.mount_path)]

    async def unmount_all(self) -> None:
        """Detach every mount but keep remembering them (a drained node that comes back gets them again)."""
        async with self._lock:
            for mount in self._mounts.values():
                await self._tear_down(mount)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.unmount_all()

    # mounting and unmounting

    def _revalidate(self, spec: MountSpecData) -> None:
        """Before every (re)mount: the source must still be the resolved directory the manager checked.
        A symlink put on its path since (a late join, a restore, a remount) fails the mount with the reason."""
        try:
            validate_mount_spec(spec.mount_path, spec.source, spec.mode, (), self._data_root, require_resolved=True)
        except MountValidationError as exc:
            raise MountError(exc.code, exc.message) from None

    async def _bind(self, spec: MountSpecData) -> None:
        """A read-write bind mount of exactly the directory validated: the source is pinned (opened without
        following any symlink) first, and what got mounted is compared with it, so a symlink swapped in
        between the check and `mount --bind` is caught and undone."""
        try:
            pinned = await asyncio.to_thread(_open_no_symlinks, real_location(spec.source, self._data_root))
        except OSError as exc:
            raise MountError("FAILED_PRECONDITION", f"source {spec.source} cannot be opened without following a "
                                                    f"symlink: {exc.strerror}") from None
        try:
            reason = await bind_mount(real_location(spec.source, self._data_root), spec.mount_path)
            if reason is not None:
                raise MountError("INTERNAL", f"bind mount of {spec.source} failed: {reason}")
            want, got = os.fstat(pinned), await asyncio.to_thread(os.stat, spec.mount_path)
            if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino):
                await lazy_unmount(spec.mount_path)
                raise MountError("FAILED_PRECONDITION", f"source {spec.source} changed while it was being mounted "
                                                        "(a symlink swapped in?); not mounted")
        finally:
            os.close(pinned)

    async def _bring_up(self, mount: _Mount) -> None:
        """Mount it and wait until it answers; raise MountError (leaving it unmounted) if that fails."""
        spec = mount.spec
        mount.apply(MountEvent.START)
        try:
            self._revalidate(spec)
            mount.created_dir = await asyncio.to_thread(_prepare_mount_point, spec) or mount.created_dir
            if spec.mode == READ_WRITE:
                await self._bind(spec)
            else:
                await self._start_worker(mount)
        except MountError as exc:
            mount.apply(MountEvent.MOUNT_FAILED, exc.message)
            raise
        except OSError as exc:
            mount.apply(MountEvent.MOUNT_FAILED, f"cannot prepare {spec.mount_path}: {exc.strerror}")
            raise MountError("INTERNAL", mount.message) from None
        mount.apply(MountEvent.READY)

    async def _start_worker(self, mount: _Mount) -> None:
        mount.retire_worker_counts()
        slug = hashlib.sha256(mount.spec.mount_path.encode()).hexdigest()[:16]
        # The worker opens this path without following any symlink: one swapped in after _revalidate fails it.
        mount.worker = WorkerProcess(self._python, real_location(mount.spec.source, self._data_root),
                                     mount.spec.mount_path,
                                     self._state_dir / "workers" / f"{slug}.stats.json",
                                     self._state_dir / "workers" / f"{slug}.log", engine=self._engine)
        try:
            await mount.worker.start()
        except WorkerStartError as exc:
            raise MountError("INTERNAL", str(exc)) from None

    async def _tear_down(self, mount: _Mount) -> None:
        if mount.worker is not None:
            await mount.worker.stop()
            mount.retire_worker_counts()
            mount.worker = None
        reason = await lazy_unmount(mount.spec.mount_path)
        if reason is not None:
            log.error("unmount-failed", mount_path=mount.spec.mount_path, reason=reason)
        if mount.created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(mount.spec.mount_path)
        mount.apply(MountEvent.UNMOUNT)

    async def _refuse_foreign_mount(self, path: str) -> None:
        """Something already mounted at the path: clear our own leftovers, refuse to touch anything else."""
        entry = read_mount_table().get(path)
        if entry is None:
            return
        if entry.fstype == FUSE_FSTYPE or await probe(path, PROBE_TIMEOUT_S) == "stale":
            await self._clear_leftover(path)
            return
        raise MountError("FAILED_PRECONDITION",
                         f"{path} already has a {entry.fstype} filesystem mounted that this agent did not create; "
                         "unmount it first")

    async def _clear_leftover(self, path: str) -> None:
        """A previous agent's worker or a stale mount at a remembered path: stop and detach it."""
        slug = hashlib.sha256(path.encode()).hexdigest()[:16]
        if kill_orphan_worker(self._state_dir / "workers" / f"{slug}.stats.json", path):
            log.info("orphan-worker-stopped", mount_path=path)
            await asyncio.sleep(0.1)
        reason = await lazy_unmount(path)
        if reason is not None:
            log.error("leftover-unmount-failed", mount_path=path, reason=reason)

    def _save(self) -> None:
        save_specs(self._state_dir, [
            {"mount_path": m.spec.mount_path, "source": m.spec.source, "mode": m.spec.mode}
            for m in self._mounts.values()
        ])

    # health watch

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for mount in list(self._mounts.values()):
                try:
                    await self._check(mount)
                except Exception as exc:  # the watch must outlive any one bad check
                    log.exception("mount-check-failed", mount_path=mount.spec.mount_path, error=str(exc))

    async def _check(self, mount: _Mount) -> None:
        if mount.state is not MountState.MOUNTED:
            return
        problem = await self._diagnose(mount)
        if problem is None:
            return
        async with self._lock:
            if self._mounts.get(mount.spec.mount_path) is not mount or mount.state is not MountState.MOUNTED:
                return  # deleted or handled while we waited for the lock
            mount.apply(MountEvent.LOST, problem)
            await self._recover(mount)

    async def _diagnose(self, mount: _Mount) -> str | None:
        path = mount.spec.mount_path
        if mount.spec.mode == READ_ONLY:
            worker = mount.worker
            if worker is None or not worker.alive:
                code = worker.proc.returncode if worker is not None and worker.proc is not None else None
                return f"mount worker exited (status {code})"
            state = await probe(path, PROBE_TIMEOUT_S)
            if state == "ok":
                return None
            return {"stale": "mount is stale (ENOTCONN)", "hung": "mount worker stopped answering"}.get(
                state, f"mount check failed: {state}")
        if path not in read_mount_table():
            return "bind mount disappeared"
        return None

    async def _recover(self, mount: _Mount) -> None:
        now = time.monotonic()
        while mount.restarts and mount.restarts[0] < now - RESTART_WINDOW_S:
            mount.restarts.popleft()
        if len(mount.restarts) >= RESTARTS_PER_WINDOW:
            await self._give_up(mount, f"restarted {len(mount.restarts)} times in {RESTART_WINDOW_S:.0f} s; "
                                f"last problem: {mount.message}; delete and re-create the mount to retry")
            return
        mount.restarts.append(now)
        lost_reason = mount.message
        if mount.worker is not None:
            await mount.worker.stop()
        await lazy_unmount(mount.spec.mount_path)
        mount.apply(MountEvent.RETRY, f"remounting after: {lost_reason}")
        try:
            self._revalidate(mount.spec)
        except MountError as exc:
            if exc.code != "NOT_FOUND":  # a source gone for now is retried below; one leading elsewhere is not
                await self._give_up(mount, exc.message, MountEvent.MOUNT_FAILED)
                return
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(RESTART_ATTEMPTS),
                                               wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.3),
                                               reraise=False):
                with attempt:
                    if mount.spec.mode == READ_ONLY:
                        await self._start_worker(mount)
                    else:
                        await self._bind(mount.spec)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            message = last.message if isinstance(last, MountError) else str(last)
            await self._give_up(mount, f"could not remount after {RESTART_ATTEMPTS} attempts: {message}",
                                MountEvent.MOUNT_FAILED)
            return
        mount.apply(MountEvent.READY, f"recovered after: {lost_reason}")

    async def _give_up(self, mount: _Mount, message: str, event: MountEvent = MountEvent.GIVE_UP) -> None:
        if mount.worker is not None:
            await mount.worker.stop()
        await lazy_unmount(mount.spec.mount_path)
        mount.apply(event, message)
