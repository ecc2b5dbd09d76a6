"""ClusterManager: the manager's domain object. Servicers translate protobuf and call into it.

It owns the registry, the live agent sessions and the durable store, and runs the liveness loop
(passive transitions: LOST after lost_after_s of silence; JOINING → READY once SGE sees the host).
The scaling and drain work lives in manager.reconciler and manager.drain, which call back into it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.daemon import wait_for_stop
from common.logging import get_logger
from manager import restrictions
from manager.activity import ActivityLog
from manager.config import ManagerConfig
from manager.credentials import CredentialStore
from manager.errors import invalid, not_found, precondition
from manager.events import EventBus
from manager.identity import IdentityRules
from manager.jobs_view import JobsView
from manager.lifecycle import MemberEvent, MemberState, can_take
from manager.member_names import UnknownMemberName, find_member
from manager.model import MemberRecord
from manager.mounts import MountService
from manager.registry import HeartbeatData, MemberRegistry, NodeRegistration, RegistrationRefused
from manager.sessions import SessionTable
from manager.store import Store
from manager.validation import check_heartbeat, check_registration
from manager.workspace_settings import WorkspaceSettingsService
from protos.bench.v1 import agent_pb2, cluster_pb2

log = get_logger("manager")

VERSION = "0.1.0"
SPOT_RESCHEDULE_MARGIN_S = 30.0
PROMOTIONS_PER_BATCH = 200


@dataclass(frozen=True)
class MountEntry:
    mount_path: str
    source: str
    mode: str


class ClusterManager:
    def __init__(self, config: ManagerConfig, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.events = EventBus()
        self.registry = MemberRegistry(store, self.events, clock)
        self.sessions = SessionTable()
        self.activity = ActivityLog(config.activity_log)
        self.cluster_id = self._cluster_id()
        self.state = store.get_meta("cluster_state") or "running"
        # Restricted workspaces: settings pending at a (re)start come in force now.
        self.workspace = WorkspaceSettingsService(store, clock)
        self._cluster_addresses = restrictions.cluster_addresses(config)
        self._apply_workspace_settings("system", "manager start")
        self.mount_service = MountService(config, store, self.registry, self.sessions, clock,
                                          upload_allowed=lambda: self.workspace.in_force().upload)
        self.credentials = CredentialStore(store, clock)
        self.identity = IdentityRules(self.registry, self.activity, config.host_agent_id)
        self.registry.on_terminated.append(self._revoke_member)
        self.spark: Any = None  # manager.spark.broker.SparkBroker, set by the reconciler when Spark is on
        self.jobs_view = JobsView()  # SGE jobs as the reconciler last saw them (the web page reads it)
        self.web: Any = None  # manager.web.server.WebAccess, set by manager.main

    def _revoke_member(self, member_id: str) -> None:
        """A terminated member's credential stops working at once, and its stream ends."""
        self.credentials.revoke_member(member_id)
        self.sessions.close(member_id)

    def _apply_workspace_settings(self, user: str, stimulus: str) -> bool:
        if not self.workspace.apply_pending(user):
            return False
        s = self.workspace.in_force()
        self.activity.record(user, "workspace settings applied", "ok", stimulus=stimulus,
                             allowlist=list(s.allowlist), upload="on" if s.upload else "off")
        return True

    def on_connection_refused(self, member_id: str, user: str, destination: str, name: str, reason: str) -> None:
        """A node's egress rules reset a connection: recorded under the node the stream's credential names
        (never a node name the agent supplies); the local user is as the node reports it."""
        member = self.registry.get(member_id)
        details = {"node": member.hostname if member is not None else member_id,
                   "destination": destination[:64] or "unknown", "reason": reason[:200]}
        if name:
            details["name"] = name[:263]
        self.activity.record(user[:64] or "unknown", "connection refused", "reset", **details)

    def restrictions_pb(self) -> agent_pb2.WorkspaceRestrictions:
        """What every node's agent enforces (manager/restrictions.py)."""
        return restrictions.to_pb(self.workspace.in_force(), self._cluster_addresses)

    def _cluster_id(self) -> str:
        stored = self.store.get_meta("cluster_id")
        if stored is None:
            self.store.set_meta("cluster_id", self.config.cluster_id)
            return self.config.cluster_id
        return stored

    # agent-facing -----------------------------------------------------------------------------
    def register(self, node: NodeRegistration) -> tuple[MemberRecord, list[MountEntry]]:
        check_registration(node)
        try:
            member = self.registry.register(node)
        except RegistrationRefused as exc:
            raise precondition(str(exc)) from None
        return member, self.mounts()

    def heartbeat(self, member_id: str, beat: HeartbeatData) -> None:
        check_heartbeat(beat)
        member = self.registry.on_heartbeat(member_id, beat)
        if member is not None and member.state == MemberState.LOST:
            # Heartbeats from a member declared LOST while its stream stayed up (e.g. a network
            # partition that healed): it rejoins through JOINING like a re-registration.
            self.registry.transition(member_id, MemberEvent.AGENT_REGISTERED, "heartbeat", "heartbeats resumed")

    def mounts(self) -> list[MountEntry]:
        return [MountEntry(m["mount_path"], m["source"], m["mode"]) for m in self.store.mounts()]

    # loops ------------------------------------------------------------------------------------
    async def liveness_loop(self, stop: asyncio.Event, tick_s: float = 0.5) -> None:
        """Passive transitions only: records what the world already did."""
        flush_every = max(1.0, self.config.heartbeat_interval_s)
        last_flush = self.clock()
        while not stop.is_set():
            try:
                self.registry.expire(self.config.lost_after_s, self.config.join_timeout_s)
                await self._promote_joined()
                if self.clock() - last_flush >= flush_every:
                    await self.registry.flush_in_background()
                    last_flush = self.clock()
            except Exception:  # one bad pass must not stop liveness tracking; the next pass retries
                log.exception("liveness pass failed")
            await wait_for_stop(stop, tick_s)
        self.registry.flush()

    async def _promote_joined(self) -> None:
        """JOINING members whose agent is connected become READY when SGE is not what decides (the
        manager node's agent, or no SGE); with SGE the reconciler promotes members once qhost sees them.
        One SQLite transaction per batch: thousands of agents connecting at once must not cost a commit
        each, nor hold the event loop for seconds (their Hellos time out meanwhile)."""
        joined = [member_id for member_id in self.registry.joining_ids() if self.sessions.connected(member_id)]
        for start in range(0, len(joined), PROMOTIONS_PER_BATCH):
            if start:
                await asyncio.sleep(0)
            batch = []
            for member_id in joined[start:start + PROMOTIONS_PER_BATCH]:
                member = self.registry.get(member_id)  # it may have changed while we yielded
                if (member is not None and member.state == MemberState.JOINING
                        and (member.role != "member" or not self.config.sge)):
                    batch.append(member_id)
            if batch:
                self.registry.transition_many(batch, MemberEvent.SGE_READY, "agent-connected",
                                              "agent connected" + ("" if self.config.sge else " (SGE not in use)"))

    # policy -----------------------------------------------------------------------------------
    def policy(self) -> dict[str, int | str]:
        stored = self.store.get_json("policy")
        if stored is None:
            c = self.config
            stored = {"mode": c.mode, "static_members": c.members, "min_members": c.min_members,
                      "max_members": c.max_members}
            self.store.set_json("policy", stored)
        return dict(stored)

    async def set_policy(self, mode: str, static_members: int, min_members: int, max_members: int,
                         user: str) -> cluster_pb2.ScalingPolicy:
        limit = self.config.hard_limit
        if mode == "static" and not 0 <= static_members <= limit:
            raise invalid(f"--static must be 0..{limit} members (the hard limit), got {static_members}")
        if mode == "dynamic":
            if min_members < 0 or max_members < 0:
                raise invalid("--min and --max must not be negative")
            if min_members > max_members:
                raise invalid(f"--min ({min_members}) must not exceed --max ({max_members})")
            if max_members > limit:
                raise invalid(f"--max ({max_members}) exceeds the hard limit of {limit} members")
        policy = {"mode": mode, "static_members": static_members, "min_members": min_members,
                  "max_members": max_members}
        self.store.set_json("policy", policy)
        log.info("scaling policy changed", user=user, **policy)
        return self.policy_pb()

    def policy_pb(self) -> cluster_pb2.ScalingPolicy:
        p = self.policy()
        return cluster_pb2.ScalingPolicy(mode=str(p["mode"]), static_members=int(p["static_members"]),
                                         min_members=int(p["min_members"]), max_members=int(p["max_members"]))

    # status -----------------------------------------------------------------------------------
    def status(self) -> cluster_pb2.ClusterStatus:
        members = [m for m in self.registry.all() if m.is_member]
        by_state: dict[str, int] = {}
        for m in members:
            by_state[m.state.value] = by_state.get(m.state.value, 0) + 1
        ready = [m for m in members if m.state == MemberState.READY]
        decision = self.store.last_decision()
        op = self.store.active_operation()
        status = cluster_pb2.ClusterStatus(
            cluster_id=self.cluster_id, state=self.state, policy=self.policy_pb(), members_by_state=by_state,
            total_cores=sum(m.capacity.cores for m in ready),
            total_memory_bytes=sum(m.capacity.memory_bytes for m in ready),
            usable_cores=sum(max(self.config.usable_cores(m.capacity.cores), 0) for m in ready),
            running_jobs=sum(m.running_jobs for m in members), manager_version=VERSION,
            scaler_brake=self.store.get_meta("scaler_brake") or "",
            pending_tasks=int(self.store.get_meta("pending_tasks") or 0),
            operation_in_flight="" if op is None else f"{op['kind']} #{op['id']} since {op['started_at']:.0f}")
        if self.spark is not None:
            status.spark.CopyFrom(self.spark.status_pb())
        if self.web is not None:
            status.web_access_url = self.web.base_url()
        if decision is not None:
            status.last_decision.CopyFrom(cluster_pb2.ScalerDecision(
                decision_id=decision["id"], at_unix=decision["at"], action=decision["action"],
                count=decision["count"], member_ids=decision["member_ids"], reason=decision["reason"]))
        return status

    def with_spark(self, members: list[cluster_pb2.Member]) -> list[cluster_pb2.Member]:
        """Each member's Spark executor slots, as the master last reported them."""
        if self.spark is not None:
            for member in members:
                if member.role != "manager":
                    member.spark.CopyFrom(self.spark.member_pb(member.ip))
        return members

    def scaler_log_tail(self, tail: int) -> list[str]:
        path = self.config.scaler_log
        try:
            with path.open() as fh:
                return [line.rstrip("\n") for line in deque(fh, maxlen=tail)]
        except FileNotFoundError:
            return []

    # drains and cluster start/stop (carried out by manager.drain / manager.reconciler) ---------
    def resolve_member(self, name: str) -> MemberRecord:
        """The member a person means by `name`: its member id or its hostname."""
        try:
            return find_member(self.registry.all(), name)
        except UnknownMemberName as exc:
            raise not_found(str(exc)) from None

    async def request_drain(self, name: str, deadline_s: int, stimulus: str) -> MemberRecord:
        member = self.resolve_member(name)
        member_id = member.member_id
        if deadline_s < 0:
            raise invalid(f"--deadline must be ≥ 0 seconds (0 waits for running jobs), got {deadline_s}")
        if member.state in (MemberState.DRAINING, MemberState.DRAINED, MemberState.INTERRUPTED):
            return member  # idempotent: the drain already under way continues
        if not can_take(member.state, MemberEvent.DRAIN_REQUESTED):
            raise precondition(f"member {member_id} is {member.state.value}; it cannot be drained")
        deadline = self.clock() + deadline_s if deadline_s else 0.0
        return self.registry.transition(member_id, MemberEvent.DRAIN_REQUESTED, stimulus,
                                        f"drain requested{f' with a {deadline_s}s deadline' if deadline_s else ''}",
                                        drain={"step": "start", "deadline": deadline, "progress": "queued"})

    async def start_cluster(self, user: str) -> None:
        if self._apply_workspace_settings(user, "cluster start"):
            # agents connected now (the manager node's own at least) apply them at once; the others at
            # their next registration
            await restrictions.push(self.sessions, self.restrictions_pb(), self.config.command_timeout_s)
        self.state = "running"
        self.store.set_meta("cluster_state", self.state)

    async def stop_cluster(self, user: str) -> None:
        """Stop = drain every member (jobs finish, nothing is killed) and launch nothing new."""
        self.state = "stopping"
        self.store.set_meta("cluster_state", self.state)
        for member in self.registry.all():
            if member.is_member and can_take(member.state, MemberEvent.DRAIN_REQUESTED):
                await self.request_drain(member.member_id, 0, f"user:{user}")

    def on_spot_notice(self, member_id: str, action: str, deadline_unix: float) -> None:
        member = self.registry.get(member_id)
        if member is None or member.state == MemberState.INTERRUPTED:
            return
        if not can_take(member.state, MemberEvent.SPOT_NOTICE):
            return
        # Jobs still running SPOT_RESCHEDULE_MARGIN_S before the cloud takes the node cannot be
        # trusted to finish: they are rescheduled then, so they restart elsewhere instead of dying.
        reschedule_at = max(self.clock(), deadline_unix - SPOT_RESCHEDULE_MARGIN_S)
        self.registry.transition(member_id, MemberEvent.SPOT_NOTICE, "spot-notice",
                                 f"cloud will {action or 'terminate'} the node at {deadline_unix:.0f}",
                                 drain={"step": "start", "deadline": reschedule_at, "progress": "spot notice",
                                        "spot": True})
