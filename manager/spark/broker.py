"""The Spark broker: one pass per control-loop pass of the manager.

observe (the master's JSON, each Remote - Dynamic driver's target from its metrics, the slot jobs
in qstat, the kernels' registrations) → `plan_slots` (pure) → act (qsub / qdel slot jobs), then
write what users and kernels need: the three spark-defaults.conf files (never over a user's edit),
the status file the kernels read at start, and one scaler-log line per change of what an
application wants ("app X wants 3 executors of 4 cores / 4g").

Every HTTP call and SGE command has a timeout; an unreachable master leaves everything as it is.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchspark import conffile
from benchspark.paths import apps_dir, status_file
from benchspark.sizing import ExecutorSize, executor_size, fits
from common.logging import get_logger
from manager import scaler_log, unix_accounts
from manager.config import ManagerConfig
from manager.sge.model import SgeError, SgeJob
from manager.spark import api
from manager.spark.slots import (
    AppWant,
    SlotAction,
    SlotCount,
    parse_slot_job_name,
    plan_slots,
    remote_wanted,
    slot_job_name,
)
from protos.bench.v1 import cluster_pb2

log = get_logger("spark")

OWNER_UID = "_owner_uid"  # not in the file: read from its inode
REGISTRATION_GRACE_S = 30.0  # an app without a kernel registration is left alone this long
JOB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class MemberCapacity:
    hostname: str
    ip: str
    cores: int  # usable (SGE static_cores)
    memory_bytes: int


@dataclass
class SparkView:
    """The last observation, for `cluster status` / `cluster members`."""

    master_url: str = ""
    ui_url: str = ""
    master_status: str = "unknown"
    error: str = ""
    workers: list[api.Worker] = field(default_factory=list)
    apps: list[api.App] = field(default_factory=list)
    wants: dict[str, str] = field(default_factory=dict)  # app id -> "app X wants ..."


class SparkBroker:
    def __init__(self, config: ManagerConfig, sge: Any) -> None:
        self.config = config
        self.sge = sge
        self.data_root = config.data_root
        self.view = SparkView(master_url=config.spark_master_url, ui_url=config.spark_ui_url)
        self._logged: dict[str, tuple[int | None, int]] = {}
        self._first_seen: dict[str, float] = {}
        self._editors_missing_logged = False
        self.executor = self._executor_size()

    # --- configuration files ---------------------------------------------------------------------
    def _executor_size(self) -> ExecutorSize:
        cores = max(self.config.usable_cores(self.config.member_cores), 1)
        memory = max(self.config.member_memory_bytes - self.config.headroom_memory_bytes, 0)
        return executor_size(cores, memory)

    def facts(self, max_members: int) -> conffile.ClusterFacts:
        return conffile.ClusterFacts(
            master_url=self.config.spark_master_url, driver_host=self.config.spark_driver_host,
            python=self.config.spark_python or sys.executable, executor=self.executor,
            max_executors=max(max_members, 1) * self.executor.per_member)

    def _editors_gid(self) -> int | None:
        """The editors' group, looked up every pass: an operator may create it while the cluster runs."""
        name = self.config.spark_conf_group
        if not name:
            return None
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            if not self._editors_missing_logged:
                log.warning("spark conf: editors' group missing, only the manager may edit the files",
                            group=name, hint=f"groupadd {name}; usermod -aG {name} USER")
                self._editors_missing_logged = True
            return None

    def write_conf_files(self, max_members: int) -> None:
        for result in conffile.write_all(self.facts(max_members), self.data_root, self._editors_gid()):
            if result.proposed is not None:
                log.info("spark conf edited by a user: kept", path=str(result.path), proposal=str(result.proposed))
        apps = apps_dir(self.data_root)
        apps.mkdir(parents=True, exist_ok=True)
        apps.chmod(0o1777)  # kernels (ordinary users) register their applications here

    # --- one pass --------------------------------------------------------------------------------
    async def reconcile(self, jobs: Sequence[SgeJob], members: Sequence[MemberCapacity], max_members: int,
                        mode: str) -> None:
        await asyncio.to_thread(self.write_conf_files, max_members)
        try:
            state = await asyncio.to_thread(api.master_state, self.config.spark_ui_url)
        except api.SparkUnavailable as exc:
            self.view.master_status, self.view.error = "unreachable", str(exc)
            self._write_status(members, max_members, mode)
            return
        self.view.master_status, self.view.error = state.status, ""
        self.view.workers, self.view.apps = list(state.workers), list(state.apps)
        if state.status != "ALIVE":  # RECOVERING after a restart: its app list is not complete yet
            self._write_status(members, max_members, mode)
            return
        registrations = await asyncio.to_thread(self._registrations)
        wants = await self._wants(state.apps, registrations, members)
        slots = _count_slots(jobs)
        actions = plan_slots(wants, slots)
        self._log_wants(wants, slots)
        if self.sge is not None:  # without SGE there is no allocator: no slots
            for action in actions:
                await self._act(action, wants, jobs)
        self._write_status(members, max_members, mode)

    def _registrations(self) -> dict[str, dict[str, Any]]:
        """Each kernel's registration, with the uid that owns the file: who really started the application
        (the directory is sticky, so nobody can put a file there in another user's name)."""
        out: dict[str, dict[str, Any]] = {}
        directory = apps_dir(self.data_root)
        if not directory.is_dir():
            return out
        for path in directory.glob("*.json"):
            try:
                with path.open() as handle:
                    raw = json.loads(handle.read())
                    raw[OWNER_UID] = os.fstat(handle.fileno()).st_uid
                out[str(raw["app_id"])] = raw
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    async def _wants(self, apps: Iterable[api.App], registrations: dict[str, dict[str, Any]],
                     members: Sequence[MemberCapacity]) -> list[AppWant]:
        now = time.monotonic()
        wants = []
        capacities = [(m.cores, m.memory_bytes // 1024**2) for m in members]
        for app in apps:
            reg = registrations.get(app.app_id)
            first = self._first_seen.setdefault(app.app_id, now)
            if reg is None and now - first < REGISTRATION_GRACE_S:
                continue  # its kernel is still starting; it will say which kind it is
            owner, refusal = slot_owner(app, reg)
            if owner is None:
                self._refuse(app, refusal)
                wants.append(AppWant(app.app_id, app.name, "remote", self.executor.cores, 0, 0))
                continue
            assert reg is not None
            kind = str(reg.get("kind", "remote"))
            cores = int(reg.get("executor_cores", self.executor.cores))
            memory_mb = app.memory_per_executor_mb or int(reg.get("executor_memory_mb", 0))
            wanted: int | None
            if kind == "dynamic":
                try:
                    wanted = await asyncio.to_thread(api.target_executors, str(reg.get("ui_url", "")))
                except api.SparkUnavailable as exc:
                    log.warning("spark driver metrics unavailable", app=app.app_id, error=str(exc))
                    wanted = None
            else:
                wanted = remote_wanted(cores, memory_mb, capacities)
                if wanted == 0 and capacities and not any(fits(cores, memory_mb, c, m * 1024**2)
                                                          for c, m in capacities):
                    wanted = 0  # bigger than any member: never placed (the kernel refused it already)
            wants.append(AppWant(app.app_id, app.name, "dynamic" if kind == "dynamic" else "remote", cores,
                                 memory_mb, wanted, owner.name))
        return wants

    def _refuse(self, app: api.App, reason: str) -> None:
        message = f"app {app.app_id} ({app.name}) gets no executors: {reason}"
        if self.view.wants.get(app.app_id) != message:
            self.view.wants[app.app_id] = message
            log.warning("spark application refused", app=app.app_id, user=app.user, reason=reason)

    def _log_wants(self, wants: list[AppWant], slots: dict[str, SlotCount]) -> None:
        for want in wants:
            if want.wanted is None or not want.user:  # unknown this pass, or refused (said by _refuse)
                continue
            have = slots.get(want.app_id, SlotCount())
            key = (want.wanted, have.running)
            self.view.wants[want.app_id] = want.describe()
            if self._logged.get(want.app_id) == key:
                continue
            self._logged[want.app_id] = key
            self._scaler_log({
                "decision": "spark-demand", "app": want.app_id, "app_name": want.name, "kernel": want.kind,
                "reason": f"{want.describe()} ({have.running} running, {have.pending} waiting in SGE"
                          + ("; Remote: existing members only" if want.kind == "remote" else "") + ")",
                "executors_wanted": want.wanted, "executor_cores": want.cores,
                "executor_memory_mb": want.memory_mb, "slots_running": have.running, "slots_pending": have.pending,
            })

    def _scaler_log(self, record: dict[str, Any]) -> None:
        record = {"time": datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                  **record}
        scaler_log.append(self.config.scaler_log, record)

    async def _act(self, action: SlotAction, wants: list[AppWant], jobs: Sequence[SgeJob]) -> None:
        try:
            if action.submit:
                want = next(w for w in wants if w.app_id == action.app_id)
                account = unix_accounts.by_name(want.user)
                if account is None:
                    log.error("spark slots not submitted: no such account", app=want.app_id, user=want.user)
                    return
                job_id = await self.sge.submit(self._slot_args(want, action.submit), as_account=account)
                log.info("spark slots submitted", app=want.app_id, kind=want.kind, count=action.submit, job=job_id)
            if action.cancel_pending:
                for job_id, tasks in _pending_tasks_to_cancel(jobs, action.app_id, action.cancel_pending):
                    await self.sge.delete_tasks(job_id, tasks)
                log.info("spark slots cancelled", app=action.app_id, count=action.cancel_pending)
        except SgeError as exc:
            log.error("spark slot change failed", app=action.app_id, error=str(exc))

    def _slot_args(self, want: AppWant, count: int) -> list[str]:
        logs = self.data_root / "logs" / "spark-slots"
        logs.mkdir(parents=True, exist_ok=True)
        logs.chmod(0o1777)  # SGE writes each slot's output file as the slot's user
        python = self.config.spark_python or sys.executable
        return [
            "-terse", "-b", "y", "-shell", "no", "-wd", "/", "-N", slot_job_name(want.kind, want.app_id),
            "-t", f"1-{count}", "-l", f"static_cores={want.cores},static_mem={want.memory_mb}M",
            "-j", "y", "-o", f"{logs}/",
            # the slot runs qstat to notice a drain of its member
            "-v", f"PATH={JOB_PATH},SGE_ROOT={self.config.sge_root},SGE_CELL={self.config.sge_cell}",
            python, "-m", "benchspark.slot", "--master", self.config.spark_master_url, "--cores", str(want.cores),
            "--memory-mb", str(want.memory_mb), "--app", want.app_id,
        ]

    # --- status for kernels and workspace-ctl ----------------------------------------------------
    def _write_status(self, members: Sequence[MemberCapacity], max_members: int, mode: str) -> None:
        status = {
            "updated_at": time.time(), "master_url": self.config.spark_master_url,
            "ui_url": self.config.spark_ui_url, "master_status": self.view.master_status, "error": self.view.error,
            "mode": mode, "max_members": max_members, "members": len(members),
            "member_usable_cores": max(self.config.usable_cores(self.config.member_cores), 1),
            "member_usable_memory_mb": (self.config.member_memory_bytes - self.config.headroom_memory_bytes)
            // 1024**2,
            "executor": asdict(self.executor),
            "workers": [asdict(w) for w in self.view.workers],
            "apps": [asdict(a) for a in self.view.apps],
        }
        path = status_file(self.data_root)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(".cluster.json.tmp")
            tmp.write_text(json.dumps(status, indent=1) + "\n")
            tmp.chmod(0o644)
            tmp.replace(path)
        except OSError as exc:
            log.error("spark status file not writable", path=str(path), error=str(exc))

    def member_pb(self, ip: str) -> cluster_pb2.SparkMember:
        """Spark on one member: slot workers, executors (each slot worker runs one) and their cores."""
        workers = [w for w in self.view.workers if w.host == ip and w.state == "ALIVE"]
        return cluster_pb2.SparkMember(workers=len(workers), executors=sum(1 for w in workers if w.cores_used),
                                       cores=sum(w.cores for w in workers),
                                       cores_used=sum(w.cores_used for w in workers))

    def status_pb(self) -> cluster_pb2.SparkStatus:
        alive = [w for w in self.view.workers if w.state == "ALIVE"]
        return cluster_pb2.SparkStatus(
            enabled=True, master_url=self.config.spark_master_url, ui_url=self.config.spark_ui_url,
            master_status=self.view.master_status, alive_workers=len(alive), cores=sum(w.cores for w in alive),
            cores_used=sum(w.cores_used for w in alive), error=self.view.error,
            apps=[cluster_pb2.SparkApp(app_id=a.app_id, name=a.name, user=a.user, state=a.state,
                                       cores_granted=a.cores_granted, wants=self.view.wants.get(a.app_id, ""))
                  for a in self.view.apps])


def _count_slots(jobs: Iterable[SgeJob]) -> dict[str, SlotCount]:
    counts: dict[str, SlotCount] = {}
    for job in jobs:
        parsed = parse_slot_job_name(job.name)
        if parsed is None:
            continue
        app_id = parsed[1]
        have = counts.get(app_id, SlotCount())
        if job.running:
            counts[app_id] = SlotCount(have.running + 1, have.pending)
        elif job.pending and not job.error:
            counts[app_id] = SlotCount(have.running, have.pending + job.pending_task_count)
    return counts


def _pending_tasks_to_cancel(jobs: Iterable[SgeJob], app_id: str, count: int) -> list[tuple[int, list[int]]]:
    out: list[tuple[int, list[int]]] = []
    left = count
    for job in jobs:
        parsed = parse_slot_job_name(job.name)
        if parsed is None or parsed[1] != app_id or not job.pending or left <= 0:
            continue
        tasks: list[int] = []
        for start, stop, step in job.pending_tasks:
            tasks.extend(range(start, stop + 1, step))
        tasks = sorted(tasks, reverse=True)[:left] if tasks else []
        left -= max(len(tasks), 1)
        out.append((job.job_id, tasks))
    return out


def status_path(data_root: Path) -> Path:
    return status_file(data_root)


def slot_owner(app: api.App, registration: dict[str, Any] | None) -> tuple[unix_accounts.Account | None, str]:
    """The account an application's executors run as, or None and why not. The owner of the kernel's
    registration file is who started the driver; the user Spark reports comes from the driver itself
    (SPARK_USER can say anything), so it only has to agree: executors never run as somebody the
    application's owner is not."""
    if registration is None:
        return None, ("no PySpark kernel registered it (start applications from a PySpark – Remote or "
                      "Remote - Dynamic kernel)")
    account = unix_accounts.by_uid(int(registration.get(OWNER_UID, -1)))
    if account is None:
        return None, f"its registration belongs to uid {registration.get(OWNER_UID)}, which has no account"
    if account.uid != 0 and account.name != app.user:
        return None, f"registered by {account.name} but Spark reports it as {app.user}'s"
    return account, ""
