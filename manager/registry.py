"""The member registry: the single owner of member records and their lifecycle transitions.

Transitions go through `manager.lifecycle` (the table) and are persisted before anybody acts on
them. Heartbeats are absorbed in memory and flushed in batches: at 1000 members x one heartbeat
every 5 s, a write per heartbeat would make SQLite the bottleneck for no gain (liveness after a
restart is re-established from fresh heartbeats, not from the file).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.logging import get_logger
from manager.events import ClusterEventData, EventBus
from manager.lifecycle import HEARTBEATING_STATES, MemberEvent, MemberState, next_state
from manager.model import Capacity, MemberRecord, MountStateView, TransitionRecord
from manager.store import Store

log = get_logger("registry")


class RegistrationRefused(Exception):
    """The node may not (re)join: e.g. it was drained and removed."""


@dataclass(frozen=True)
class NodeRegistration:
    node_id: str
    hostname: str
    ip: str
    agent_version: str
    capacity: Capacity
    role: str


@dataclass(frozen=True)
class HeartbeatData:
    capacity: Capacity
    running_jobs: int
    mounts: tuple[MountStateView, ...]
    draining: bool
    agent_version: str


class MemberRegistry:
    def __init__(self, store: Store, events: EventBus, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._members: dict[str, MemberRecord] = {m.member_id: m for m in store.members()}
        # JOINING members, kept with every change: the liveness tick looks only at these, not at all 10,000.
        self._joining: set[str] = {m for m, r in self._members.items() if r.state == MemberState.JOINING}
        self._dirty: set[str] = set()
        # Liveness is judged from heartbeats seen by *this* process: after a restart every member
        # gets a full lost_after_s to reconnect before it is declared LOST.
        started = clock()
        self._last_seen: dict[str, float] = {m: started for m in self._members}
        # Called with the member id when a member is TERMINATED (its credential is revoked then).
        self.on_terminated: list[Callable[[str], None]] = []

    # queries ----------------------------------------------------------------------------------
    def all(self) -> list[MemberRecord]:
        return sorted(self._members.values(), key=lambda m: m.member_id)

    def in_any_order(self) -> list[MemberRecord]:
        """Every record, unsorted: for counting and filtering on hot paths (10,000 members)."""
        return list(self._members.values())

    def joining_ids(self) -> list[str]:
        """Member ids in state JOINING, in no particular order."""
        return list(self._joining)

    def get(self, member_id: str) -> MemberRecord | None:
        return self._members.get(member_id)

    def history(self, member_id: str) -> list[TransitionRecord]:
        return self._store.history(member_id)

    def last_seen(self, member_id: str) -> float | None:
        return self._last_seen.get(member_id)

    # transitions ------------------------------------------------------------------------------
    def transition(self, member_id: str, event: MemberEvent, stimulus: str, reason: str,
                   **changes: object) -> MemberRecord:
        """Apply a lifecycle event; persisted (member row + transition row, atomically) first."""
        return self.transition_many([member_id], event, stimulus, reason, **changes)[0]

    def transition_many(self, member_ids: list[str], event: MemberEvent, stimulus: str, reason: str,
                        **changes: object) -> list[MemberRecord]:
        """The same event for several members, persisted in one SQLite transaction (all or none) before any
        of them changes in memory: one commit for a batch instead of one per member."""
        now = self._clock()
        planned: list[tuple[MemberRecord, TransitionRecord, MemberState | None]] = []
        for member_id in member_ids:
            current = self._members.get(member_id)
            from_state = current.state if current else None
            to_state = next_state(from_state, event)
            if current is None:
                current = MemberRecord(member_id=member_id, state=to_state, state_since=now)
            updated = current.with_changes(state=to_state, **changes)
            if to_state != from_state:
                updated = updated.with_changes(state_since=now)
            record = TransitionRecord(member_id, from_state.value if from_state else "NEW", to_state.value, now,
                                      stimulus, reason)
            planned.append((updated, record, from_state))
        self._store.save_transitions([(updated, record) for updated, record, _ in planned])
        for updated, record, from_state in planned:
            self._applied(updated, record, from_state, stimulus, reason)
        return [updated for updated, _, _ in planned]

    def _applied(self, updated: MemberRecord, record: TransitionRecord, from_state: MemberState | None,
                 stimulus: str, reason: str) -> None:
        """In memory, hooks, log and event of a transition already persisted."""
        member_id, to_state = updated.member_id, updated.state
        self._put(updated)
        self._dirty.discard(member_id)
        if to_state == MemberState.TERMINATED:
            for hook in self.on_terminated:
                hook(member_id)
        if to_state != from_state:
            log.info("member transition", member=member_id, from_state=record.from_state, to_state=to_state.value,
                     stimulus=stimulus, reason=reason)
            self._events.publish(ClusterEventData(record.at, "transition", f"{member_id}: {record.from_state} → "
                                                  f"{to_state.value} ({reason})", member_id,
                                                  {"from": record.from_state, "to": to_state.value,
                                                   "stimulus": stimulus}))

    def _put(self, record: MemberRecord) -> None:
        """The one place a record is stored in memory: keeps the JOINING index in step."""
        self._members[record.member_id] = record
        if record.state == MemberState.JOINING:
            self._joining.add(record.member_id)
        else:
            self._joining.discard(record.member_id)

    def _put_unflushed(self, record: MemberRecord) -> MemberRecord:
        """In memory now, in SQLite with the next heartbeat flush (no commit of its own)."""
        self._put(record)
        self._dirty.add(record.member_id)
        return record

    def update(self, member_id: str, **changes: object) -> MemberRecord:
        """Persist non-lifecycle changes (drain progress, SGE configuration flag)."""
        updated = self._members[member_id].with_changes(**changes)
        self._store.save_member(updated)
        self._put(updated)
        self._dirty.discard(member_id)
        return updated

    def request(self, member_id: str, hostname: str, ip: str, stimulus: str, reason: str,
                spot: bool = False) -> MemberRecord:
        return self.transition(member_id, MemberEvent.LAUNCH_REQUESTED, stimulus, reason, hostname=hostname,
                               ip=ip, spot=spot)

    def register(self, node: NodeRegistration) -> MemberRecord:
        """An agent announced itself: a new member, or an existing one coming back."""
        now = self._clock()
        self._last_seen[node.node_id] = now
        current = self._members.get(node.node_id)
        details = {"hostname": node.hostname, "ip": node.ip, "agent_version": node.agent_version,
                   "capacity": node.capacity, "role": node.role, "last_heartbeat": now}
        if current is not None and current.state in (MemberState.TERMINATED, MemberState.DRAINED):
            raise RegistrationRefused(
                f"member {node.node_id} was {current.state.value.lower()}; it cannot rejoin under the same id "
                "(start a new node)")
        if current is not None and current.state in (MemberState.READY, MemberState.DRAINING,
                                                      MemberState.INTERRUPTED):
            # An agent (or manager) restart, or a reconnect: same member, same state. Every session of a
            # real agent starts with Register; with the same name, address and role what changes is what a
            # heartbeat carries, so it is written with the next heartbeat flush, not by a commit of its own
            # (10,000 agents reconnecting to a restarted manager would queue 10,000 commits on the loop).
            if (current.hostname, current.ip, current.role) == (node.hostname, node.ip, node.role):
                return self._put_unflushed(current.with_changes(**details))
            return self.update(node.node_id, **details)
        if current is None or not current.joined_at:
            details["joined_at"] = now
        return self.transition(node.node_id, MemberEvent.AGENT_REGISTERED, f"agent:{node.hostname}",
                               "agent registered", **details)

    def on_heartbeat(self, member_id: str, beat: HeartbeatData) -> MemberRecord | None:
        current = self._members.get(member_id)
        if current is None:
            return None
        now = self._clock()
        self._last_seen[member_id] = now
        return self._put_unflushed(current.with_changes(
            capacity=beat.capacity, running_jobs=beat.running_jobs, mounts=beat.mounts, last_heartbeat=now,
            agent_version=beat.agent_version or current.agent_version))

    def _take_dirty(self) -> list[MemberRecord]:
        dirty = [self._members[m] for m in self._dirty if m in self._members]
        self._dirty.clear()
        return dirty

    def flush(self) -> int:
        """Persist heartbeat-derived fields of members changed since the last flush (at shutdown)."""
        dirty = self._take_dirty()
        if dirty:
            self._store.save_heartbeats(dirty)
        return len(dirty)

    async def flush_in_background(self) -> int:
        """The same off the event loop: heartbeats keep being served while SQLite writes."""
        dirty = self._take_dirty()
        if dirty:
            try:
                await asyncio.to_thread(self._store.save_heartbeats, dirty)
            except BaseException:
                # not written: mark them again so the next flush retries (unless newer beats did already)
                self._dirty.update(m.member_id for m in dirty)
                raise
        return len(dirty)

    def expire(self, lost_after_s: float, join_timeout_s: float) -> list[MemberRecord]:
        """Passive transitions: members silent for too long become LOST."""
        now = self._clock()
        lost: list[MemberRecord] = []
        for member in list(self._members.values()):
            seen = self._last_seen.get(member.member_id, member.state_since)
            if member.state in HEARTBEATING_STATES and member.state != MemberState.INTERRUPTED:
                if now - seen > lost_after_s:
                    lost.append(self.transition(member.member_id, MemberEvent.HEARTBEAT_TIMEOUT,
                                                "heartbeat-timeout",
                                                f"no heartbeat for {now - seen:.0f}s (limit {lost_after_s:.0f}s)"))
            elif member.state == MemberState.REQUESTED and now - member.state_since > join_timeout_s:
                lost.append(self.transition(member.member_id, MemberEvent.HEARTBEAT_TIMEOUT, "join-timeout",
                                            f"agent did not register within {join_timeout_s:.0f}s of launch"))
        return lost
