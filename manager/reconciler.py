"""The manager's control loop, a reconciler in the style of Ray autoscaler v2:

observe (registry, SGE qstat/qhost, the provider's node list) → passive transitions that only record
what the world already did (JOINING → READY once qhost sees the host; provider nodes the registry
does not know are adopted) → plan (manager.autoscaler.plan, a pure function) → active transitions,
persisted first (the operation row before the provider call, the member rows before the drain) →
effects (provider calls, SGE configuration, agent commands) whose results arrive as the next
observation. One scale operation is in flight at a time; a manager killed mid-operation finds the
operation row and the provider's nodes on restart and finishes it once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from common.daemon import wait_for_stop
from common.logging import get_logger
from manager import scaler_log
from manager.autoscaler import (
    Action,
    Decision,
    LaunchHistory,
    MemberView,
    OperationInFlight,
    OpKind,
    PendingJob,
    ScalerConfig,
    Snapshot,
    plan,
    scaler_log_record,
)
from manager.core import ClusterManager
from manager.drain import DrainExecutor
from manager.jobs_view import JobsView
from manager.lifecycle import MemberEvent, MemberState
from manager.model import MemberRecord
from manager.providers.base import NodeProvider, NodeSpec, ProviderError
from manager.spark.slots import is_no_scale

log = get_logger("reconciler")

LIVE = frozenset({MemberState.REQUESTED, MemberState.JOINING, MemberState.READY, MemberState.DRAINING,
                  MemberState.DRAINED, MemberState.LOST, MemberState.INTERRUPTED})


@dataclass
class Observation:
    hosts: dict[str, Any] = field(default_factory=dict)  # hostname -> SgeHost
    jobs: list[Any] = field(default_factory=list)  # SgeJob
    tasks_by_host: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    provider_nodes: list[Any] | None = None  # ProviderNode, None without a provider


class Reconciler:
    def __init__(self, manager: ClusterManager, sge: Any | None, provider: NodeProvider | None) -> None:
        self.manager = manager
        self.sge = sge
        self.provider = provider
        self.drains = DrainExecutor(manager, sge, provider)
        self._idle_since: dict[str, float] = {}
        self._logged_ignored: set[int] = set()
        self._last_logged: tuple[str, str] | None = None
        self._first_pass = True
        self.spark: Any = None
        if manager.config.spark_master_url:
            from manager.spark.broker import SparkBroker

            self.spark = SparkBroker(manager.config, sge)
            manager.spark = self.spark

    @classmethod
    def from_config(cls, manager: ClusterManager) -> Reconciler:
        config = manager.config
        sge = None
        if config.sge:
            from manager.sge.client import SgeClient

            sge = SgeClient(sge_root=str(config.sge_root), cell=config.sge_cell)
        provider: NodeProvider | None = None
        if config.provider == "local":
            from manager.providers.local import LocalProvider

            provider = LocalProvider(cluster_id=manager.cluster_id, state_root=config.local_state_root,
                                     min_scratch_bytes=0 if config.allow_small_scratch else None)
        elif config.provider == "ec2":
            from manager.providers.ec2 import Ec2Provider
            from manager.providers.ec2_config import Ec2Config

            provider = Ec2Provider(Ec2Config.from_mapping(config.ec2), cluster_id=manager.cluster_id)
        return cls(manager, sge, provider)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reconcile_once()
            except Exception:  # keep reconciling; the failure is logged with its traceback
                log.exception("reconcile pass failed")
            await wait_for_stop(stop, self.manager.config.interval_s)

    # one pass ---------------------------------------------------------------------------------
    async def reconcile_once(self) -> Decision | None:
        seen = await self._observe()
        self.manager.jobs_view = JobsView(self.manager.clock(), tuple(seen.jobs), self.manager.jobs_view.ignored)
        await self._sge_join_pass(seen)
        self._adopt_unknown_nodes(seen)
        await self._reconcile_departed(seen)
        if self._first_pass:
            self._close_unrecorded_launch()
            self._first_pass = False
        await self.drains.advance_all(seen.tasks_by_host)
        if self.spark is not None:
            await self._spark_pass(seen)
        self._finish_stop()
        if self.provider is None or self.manager.state != "running":
            return None
        snapshot = self._snapshot(seen)
        now = self.manager.clock()
        decision = plan(snapshot, self.scaler_config(), now)
        self.manager.jobs_view = replace(self.manager.jobs_view, ignored=decision.ignored)
        self._record(decision, snapshot, now)
        await self._act(decision, snapshot)
        return decision

    async def _observe(self) -> Observation:
        seen = Observation()
        if self.sge is not None:
            seen.hosts = {h.name: h for h in await self.sge.hosts()}
            seen.jobs = list(await self.sge.jobs())
            for job in seen.jobs:
                if job.running and job.host:
                    seen.tasks_by_host.setdefault(job.host.split(".")[0], []).append((job.job_id, job.task_id))
        if self.provider is not None:
            seen.provider_nodes = await self.provider.list()
        return seen

    async def _sge_join_pass(self, seen: Observation) -> None:
        """JOINING members: configure the exec host from the reported capacity (minus headroom and
        the scheduling core), then promote to READY once qhost shows the host reporting."""
        registry = self.manager.registry
        for member in registry.all():
            if member.state != MemberState.JOINING or not member.is_member:
                continue
            if self.sge is None:
                continue  # the liveness loop promotes members when SGE is not in use
            if not member.sge_configured:
                cores, memory = self.usable(member)
                await self.sge.ensure_exec_host(member.hostname, cores, memory)
                registry.update(member.member_id, sge_configured=True)
                log.info("exec host configured", member=member.member_id, static_cores=cores, static_mem=memory)
                continue  # qhost is observed again next pass
            host = seen.hosts.get(member.hostname)
            if host is not None and host.reachable:
                registry.transition(member.member_id, MemberEvent.SGE_READY, "sge-observed",
                                    f"exec host reporting in qhost with static_cores={host.static_cores}")

    def usable(self, member: MemberRecord) -> tuple[int, int]:
        config = self.manager.config
        cores = max(config.usable_cores(member.capacity.cores), 1)
        memory = max(member.capacity.memory_bytes - config.headroom_memory_bytes, 256 * 1024**2)
        return cores, memory

    def _adopt_unknown_nodes(self, seen: Observation) -> None:
        """Nodes the provider runs but the registry does not know: launched by an operation that was
        cut short (manager killed between the provider call and recording its result)."""
        if seen.provider_nodes is None:
            return
        op = self.manager.store.active_operation()
        for node in seen.provider_nodes:
            if self.manager.registry.get(node.node_id) is not None:
                continue
            self.manager.registry.request(node.node_id, node.hostname, node.ip, "provider-list",
                                          "adopted a running node the registry did not know (resumed launch)",
                                          spot=node.spot)
            if op is not None and op["kind"] in ("up", "replace"):
                detail = op["detail"]
                detail["member_ids"] = sorted({*detail.get("member_ids", []), node.node_id})
                self.manager.store.update_operation(op["id"], detail=detail)

    async def _reconcile_departed(self, seen: Observation) -> None:
        """Members whose node is gone from the provider without the manager removing it: a dynamic
        member ends itself after orphan_timeout_s without its manager (agent/orphan.py), a node may
        also crash. Recorded, not acted upon: the exec host leaves SGE, the provider's remains go
        (LocalProvider.terminate removes the namespaces; on EC2 the instance is already terminated),
        and the member is TERMINATED with the reason. Tasks SGE still shows on the host died with it:
        such a member is drained at once instead, which has SGE reschedule them first."""
        if seen.provider_nodes is None or self.provider is None:
            return
        present = {node.node_id for node in seen.provider_nodes}
        for member in self.manager.registry.all():
            if (not member.is_member or member.member_id in present
                    or member.state not in (MemberState.READY, MemberState.JOINING, MemberState.LOST)
                    or self.manager.sessions.connected(member.member_id)):
                continue
            reason = (f"node {member.hostname} left on its own (gone from the {self.provider.name} provider; "
                      "a dynamic member ends itself when its manager stays unreachable for orphan_timeout_s)")
            if seen.tasks_by_host.get(member.hostname):
                self.manager.registry.transition(
                    member.member_id, MemberEvent.DRAIN_REQUESTED, "provider-list", reason,
                    drain={"step": "start", "progress": "queued", "deadline": self.manager.clock(),
                           "abort_if_busy": False, "left": reason})
                continue
            if self.sge is not None and member.sge_configured:
                await self.sge.remove_exec_host(member.hostname)
            await self.provider.terminate([member.member_id])
            self.manager.registry.transition(member.member_id, MemberEvent.NODE_LEFT, "provider-list", reason)
            self.manager.activity.record("manager", "member left on its own", "ok", target=member.member_id,
                                         hostname=member.hostname, reason=reason)

    def _close_unrecorded_launch(self) -> None:
        """After a restart: a launch operation with no member recorded and no unknown node at the
        provider never reached the provider (the manager died first). Close it so planning resumes
        now instead of after the stabilise timeout; the next decision launches what is still needed."""
        op = self.manager.store.active_operation()
        if op is None or op["kind"] not in ("up", "replace") or op["detail"].get("member_ids"):
            return
        self.manager.store.update_operation(op["id"], state="failed", finished_at=self.manager.clock(),
                                            detail={**op["detail"], "error": "manager restarted before the launch"})
        log.warning("closed a launch the previous manager never carried out", op=op["id"])

    def _finish_stop(self) -> None:
        manager = self.manager
        if manager.state == "stopping" and not any(m.is_member and m.state in LIVE for m in manager.registry.all()):
            manager.state = "stopped"
            manager.store.set_meta("cluster_state", "stopped")
            log.info("cluster stopped: every member drained and removed")

    async def _spark_pass(self, seen: Observation) -> None:
        """Executor slots for Spark applications (manager.spark): submitted here, they are SGE demand
        (Remote - Dynamic) or no-scale (Remote) for the plan below, from the next pass on."""
        from manager.spark.broker import MemberCapacity

        members = []
        for member in self.manager.registry.all():
            if member.is_member and member.state == MemberState.READY:
                cores, memory = self.usable(member)
                members.append(MemberCapacity(member.hostname, member.ip, cores, memory))
        policy = self.manager.policy()
        ceiling = int(policy["static_members"] if policy["mode"] == "static" else policy["max_members"])
        try:
            await self.spark.reconcile(seen.jobs, members, ceiling, str(policy["mode"]))
        except Exception:  # Spark trouble must not stop scaling and drains
            log.exception("spark pass failed")

    # planning ---------------------------------------------------------------------------------
    def scaler_config(self) -> ScalerConfig:
        c, policy = self.manager.config, self.manager.policy()
        return ScalerConfig(
            mode="static" if policy["mode"] == "static" else "dynamic", member_cores=c.member_cores,
            member_memory_bytes=c.member_memory_bytes, static_members=int(policy["static_members"]),
            min_members=int(policy["min_members"]), max_members=int(policy["max_members"]),
            hard_limit=c.hard_limit, headroom_cores=c.headroom_cores,
            headroom_memory_bytes=c.headroom_memory_bytes, dedicated_manager=c.dedicated_manager,
            min_age_s=c.min_age_s, idle_s=c.idle_s, max_consecutive_failures=c.max_launch_failures,
            brake_backoff_s=c.brake_backoff_s, stabilise_timeout_s=c.stabilise_timeout_s)

    def _snapshot(self, seen: Observation) -> Snapshot:
        now = self.manager.clock()
        views = []
        members = [m for m in self.manager.registry.all() if m.is_member]
        # SGE fills hosts in sequence-number order, which follows join order: plan in that order.
        for member in sorted(members, key=lambda m: (m.joined_at or float("inf"), m.member_id)):
            host = seen.hosts.get(member.hostname)
            running = len(seen.tasks_by_host.get(member.hostname, []))
            if running or member.state != MemberState.READY:
                self._idle_since.pop(member.member_id, None)
            else:
                self._idle_since.setdefault(member.member_id, now)
            cores, memory = self.usable(member)
            if host is not None and host.static_cores is not None:
                cores, memory = host.static_cores, host.static_mem_bytes or memory
            free_cores = host.static_cores_free if host is not None and host.static_cores_free is not None else cores
            free_mem = (host.static_mem_free_bytes if host is not None and host.static_mem_free_bytes is not None
                        else memory)
            views.append(MemberView(
                member_id=member.member_id, state=member.state.value, capacity_cores=max(cores, 0),
                capacity_memory_bytes=max(memory, 0), free_cores=max(free_cores, 0), free_memory_bytes=max(free_mem, 0),
                running_jobs=running, joined_at=member.joined_at or None,
                idle_since=self._idle_since.get(member.member_id),
                in_sge=bool(host is not None and host.reachable)))
        pending = tuple(
            PendingJob.from_request(job.job_id, cores=job.requested_cores, memory_bytes=job.requested_mem_bytes,
                                    name=job.name, owner=job.owner, task_ranges=job.pending_tasks,
                                    held=job.held, waiting_on_dependency=job.waiting_on_dependency,
                                    error=job.error, no_scale=is_no_scale(job.name))
            for job in seen.jobs if job.pending)
        self.manager.store.set_meta("pending_tasks", str(sum(p.tasks for p in pending if p.hold is None)))
        history = self.manager.store.get_json("launch_history") or {}
        return Snapshot(members=tuple(views), pending=pending, in_flight=self._in_flight(),
                        history=LaunchHistory(int(history.get("failures", 0)), history.get("last_failure_at")))

    def _in_flight(self) -> OperationInFlight | None:
        op = self.manager.store.active_operation()
        if op is None:
            return None
        detail = op["detail"]
        return OperationInFlight(kind=OpKind(op["kind"]), started_at=op["started_at"], target=int(detail["target"]),
                                 member_ids=tuple(detail.get("member_ids", [])),
                                 removed_ids=tuple(detail.get("removed_ids", [])))

    def _record(self, decision: Decision, snapshot: Snapshot, now: float) -> None:
        """Every decision goes to the scaler log; changes of decision also to the store (status)."""
        record = scaler_log_record(decision, snapshot, now, already_logged=self._logged_ignored)
        self._logged_ignored.update(job.job_id for job in decision.ignored)
        scaler_log.append(self.manager.config.scaler_log, record)
        key = (decision.action.value, decision.reason)
        if key != self._last_logged or decision.action != Action.NONE:
            self._last_logged = key
            self.manager.store.add_decision(now, decision.action.value, decision.add_count,
                                            list(decision.remove_ids), decision.reason)
            log.info("scaler decision", action=decision.action.value, add=decision.add_count,
                     remove=list(decision.remove_ids), reason=decision.reason)
        self.manager.store.set_meta("scaler_brake", decision.reason if decision.action == Action.BRAKE else "")

    # acting -----------------------------------------------------------------------------------
    async def _act(self, decision: Decision, snapshot: Snapshot) -> None:
        store, now = self.manager.store, self.manager.clock()
        op = store.active_operation()
        if decision.op_settled and op is not None:
            store.update_operation(op["id"], state="timed-out" if decision.op_timed_out else "done", finished_at=now)
            if decision.op_timed_out and op["kind"] in ("up", "replace"):
                self._count_launch_failure()  # members that never became READY are a failed launch
            log.info("operation closed", op=op["id"], kind=op["kind"], timed_out=decision.op_timed_out)
        if decision.action in (Action.NONE, Action.BRAKE):
            return
        decision_id = (store.last_decision() or {}).get("id")
        kind = {Action.SCALE_UP: "up", Action.SCALE_DOWN: "down", Action.REPLACE: "replace"}[decision.action]
        op_id = store.begin_operation(kind, decision_id, now, {
            "target": decision.target_members, "member_ids": [], "removed_ids": list(decision.remove_ids)})
        for member_id in decision.remove_ids:
            self._start_drain(member_id, f"scaler-decision:{decision_id}", decision.reason)
        if decision.add_count:
            await self._launch(op_id, decision.add_count, decision_id)

    def _start_drain(self, member_id: str, stimulus: str, reason: str) -> None:
        member = self.manager.registry.get(member_id)
        if member is None or member.state in (MemberState.DRAINING, MemberState.DRAINED, MemberState.TERMINATED):
            return
        dead = member.state in (MemberState.LOST, MemberState.INTERRUPTED)
        drain = {"step": "start", "progress": "queued",
                 # a dead member's jobs cannot finish there: reschedule them at once
                 "deadline": self.manager.clock() if dead else 0.0,
                 # the scaler chose an idle READY member: a job that slipped in cancels its removal
                 "abort_if_busy": member.state == MemberState.READY}
        if member.state == MemberState.INTERRUPTED:
            self.manager.registry.update(member_id, drain={**drain, **member.drain})
            return
        self.manager.registry.transition(member_id, MemberEvent.DRAIN_REQUESTED, stimulus, reason, drain=drain)

    def _ca_pem(self) -> str:
        try:
            return self.manager.config.tls_ca_file.read_text()
        except OSError:
            return ""  # plaintext benchmarks; a real member cannot join without it and says so

    def _count_launch_failure(self) -> int:
        store = self.manager.store
        failures = int((store.get_json("launch_history") or {}).get("failures", 0)) + 1
        store.set_json("launch_history", {"failures": failures, "last_failure_at": self.manager.clock()})
        return failures

    async def _launch(self, op_id: int, count: int, decision_id: int | None) -> None:
        assert self.provider is not None
        config, store = self.manager.config, self.manager.store
        live = sum(1 for m in self.manager.registry.all() if m.is_member and m.state != MemberState.TERMINATED)
        if live + count > config.hard_limit:
            log.error("launch refused: hard limit", live=live, count=count, hard_limit=config.hard_limit)
            count = config.hard_limit - live
            if count <= 0:
                store.update_operation(op_id, state="failed", finished_at=self.manager.clock(),
                                       detail={"target": 0, "error": "hard limit reached"})
                return
        tokens = tuple(self.manager.credentials.issue_join_tokens(count, config.join_token_ttl_s))
        spec = NodeSpec(cluster_id=self.manager.cluster_id, cores=config.member_cores,
                        memory_bytes=config.member_memory_bytes, scratch_bytes=config.scratch_bytes,
                        manager_address=config.advertise_address or config.listen[0],
                        join_tokens=tokens, ca_cert_pem=self._ca_pem(), spot=config.economy,
                        orphan_timeout_s=config.member_orphan_timeout_s)
        try:
            nodes = await self.provider.create(count, spec)
        except ProviderError as exc:
            failures = self._count_launch_failure()
            store.update_operation(op_id, state="failed", finished_at=self.manager.clock(),
                                   detail={"target": 0, "error": str(exc)})
            log.error("launch failed", count=count, error=str(exc), consecutive_failures=failures)
            return
        store.set_json("launch_history", {"failures": 0, "last_failure_at": None})
        for node, token in zip(nodes, tokens, strict=False):
            if self.manager.registry.get(node.node_id) is None:
                self.manager.registry.request(node.node_id, node.hostname, node.ip,
                                              f"scaler-decision:{decision_id}", "launched by the autoscaler",
                                              spot=node.spot)
            # Only now, with the provider's record written, does the token enrol this node.
            self.manager.credentials.bind_join_token(token, node.node_id)
        op = store.active_operation()
        if op is not None and op["id"] == op_id:
            detail = op["detail"]
            detail["member_ids"] = sorted({*detail.get("member_ids", []), *(n.node_id for n in nodes)})
            store.update_operation(op_id, detail=detail)
        log.info("launched members", ids=[n.node_id for n in nodes])
