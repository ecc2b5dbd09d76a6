"""The SGE autoscaler's decision: `plan(snapshot, config, now) -> Decision`.

Pure: no I/O, no clock reads (`now` is an argument), no randomness; the same inputs always give
the same decision. The rules, from the seed and issue 5:

- One operation at a time. While the snapshot's in-flight operation has not stabilised (launched
  members READY and seen by SGE, removed ones gone), nothing else is decided; after
  `stabilise_timeout_s` it is closed anyway (its members still count towards max).
- Members in any state but TERMINATED count towards the ceiling (max, or N in static mode), so odd
  states never let the cluster grow past it. LOST and INTERRUPTED members are no capacity; the next
  operation retires them (and, in static mode, replaces them).
- Static mode holds exactly N live members.
- Dynamic mode: demand (tasks that could run, see `demand`) is packed first-fit decreasing onto the
  free space of the members SGE can use now (in its fill order), then onto the members on their way
  (REQUESTED, JOINING, READY not yet in qhost: empty members of the model), then onto new members.
  The new members needed are launched in one operation (a burst is met at once), clamped so the
  cluster stays within [min, max].
- A member is removed only when it runs no job and is at least `min_age_s` old; in dynamic mode it
  must also have been idle for `idle_s` and hold none of the pending demand in the packing (so what
  remains still fits the demand), and never below min.
- Safety brake: after `max_consecutive_failures` failed launches in a row, no launch until
  `brake_backoff_s` has passed since the last failure; then one try is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from manager.autoscaler.demand import Demand, summarise
from manager.autoscaler.model import (
    DEAD_STATES,
    LEAVING_STATES,
    LIVE_STATES,
    READY,
    TERMINATED,
    Action,
    Decision,
    MemberView,
    OperationInFlight,
    ScalerConfig,
    Shape,
    Snapshot,
    format_memory,
    usable_capacity,
)
from manager.autoscaler.packing import pack

_MAX_LISTED = 5  # ids named in a reason before "and N more"


@dataclass(frozen=True)
class _Census:
    live: tuple[MemberView, ...]  # REQUESTED, JOINING, READY: capacity now or soon
    dead: tuple[MemberView, ...]  # LOST, INTERRUPTED: to retire
    leaving: tuple[MemberView, ...]  # DRAINING, DRAINED: on their way out

    @classmethod
    def of(cls, members: Sequence[MemberView]) -> _Census:
        return cls(
            live=tuple(m for m in members if m.state in LIVE_STATES),
            dead=tuple(m for m in members if m.state in DEAD_STATES),
            leaving=tuple(m for m in members if m.state in LEAVING_STATES),
        )

    @property
    def counted_after_retiring(self) -> int:
        """Members counting towards the ceiling once the dead ones are retired."""
        return len(self.live) + len(self.leaving)


def plan(snapshot: Snapshot, config: ScalerConfig, now: float) -> Decision:
    capacity = usable_capacity(config)
    demand = summarise(snapshot.pending, capacity)
    census = _Census.of(snapshot.members)
    base = Decision(
        action=Action.NONE,
        reason="",
        target_members=len(census.live),
        pending_by_shape=demand.by_shape,
        ignored=demand.ignored,
        not_demand=demand.not_demand,
    )
    if snapshot.in_flight is not None:
        waiting = _unsettled(snapshot.in_flight, snapshot.members)
        age = now - snapshot.in_flight.started_at
        # Absolute times, not "N s ago": the reason stays the same from one pass to the next.
        status = f"the {snapshot.in_flight.kind} operation started at {_iso(snapshot.in_flight.started_at)}"
        if waiting and age < config.stabilise_timeout_s:
            return replace(
                base, reason=f"one operation at a time: {status} has not stabilised ({_listed(waiting)})"
            )
        base = replace(base, op_settled=True, op_timed_out=bool(waiting))
        if waiting:
            # Closed without stabilising: decide on, but say so in whatever is decided.
            note = (
                f"{status} did not stabilise within {config.stabilise_timeout_s:.0f}s "
                f"({_listed(waiting)}); closing it. "
            )
            decision = _plan_mode(base, census, demand, snapshot, config, capacity, now)
            return replace(decision, reason=note + decision.reason)
    return _plan_mode(base, census, demand, snapshot, config, capacity, now)


def _plan_mode(
    base: Decision,
    census: _Census,
    demand: Demand,
    snapshot: Snapshot,
    config: ScalerConfig,
    capacity: Shape,
    now: float,
) -> Decision:
    if config.mode == "static":
        decision = _plan_static(base, census, snapshot, config, now)
    else:
        decision = _plan_dynamic(base, census, demand, snapshot, config, capacity, now)
    if not demand.ignored:
        return decision
    # Said in every reason, so `cluster status` answers "why does my job never start?".
    ids = [str(job.job_id) for job in demand.ignored]
    note = (
        f"; {len(ids)} jobs ignored, larger than a member ({capacity[0]} cores, "
        f"{format_memory(capacity[1])}): {_listed(ids)}"
    )
    return replace(decision, reason=decision.reason + note)


def _unsettled(op: OperationInFlight, members: Sequence[MemberView]) -> list[str]:
    """What the in-flight operation still waits for; empty when it has stabilised.

    A launched member is settled once READY and in SGE, or once it left the path to READY (LOST,
    TERMINATED, ...: the loop counts that as a failed launch). A removed member is settled once
    TERMINATED or no longer in the registry.
    """
    by_id = {m.member_id: m for m in members}
    waiting: list[str] = []
    if op.kind != "down" and not op.member_ids:
        waiting.append("no launched member ids recorded yet")
    for member_id in op.member_ids:
        member = by_id.get(member_id)
        if member is None or member.state not in LIVE_STATES:
            continue
        if member.state != READY:
            waiting.append(f"{member_id} {member.state}")
        elif not member.in_sge:
            waiting.append(f"{member_id} READY but not yet in qhost")
    for member_id in op.removed_ids:
        member = by_id.get(member_id)
        if member is not None and member.state != TERMINATED:
            waiting.append(f"{member_id} still {member.state}")
    return waiting


def _braked(snapshot: Snapshot, config: ScalerConfig, now: float) -> str | None:
    """Why launching is stopped, or None when a launch may be tried."""
    history = snapshot.history
    if history.consecutive_failures < config.max_consecutive_failures or history.last_failure_at is None:
        return None
    if now - history.last_failure_at >= config.brake_backoff_s:
        return None
    return (
        f"launches braked after {history.consecutive_failures} consecutive failed launches "
        f"(last at {_iso(history.last_failure_at)}); next try at "
        f"{_iso(history.last_failure_at + config.brake_backoff_s)}"
    )


def _removable(member: MemberView, config: ScalerConfig, now: float) -> bool:
    """May leave at all: READY, running no job, and past the minimum age."""
    return (
        member.state == READY
        and member.running_jobs == 0
        and member.joined_at is not None
        and now - member.joined_at >= config.min_age_s
    )


def _idle_long_enough(member: MemberView, config: ScalerConfig, now: float) -> bool:
    return member.idle_since is not None and now - member.idle_since >= config.idle_s


def _removal_order(members: Sequence[MemberView], placed: Sequence[int] | None = None) -> list[MemberView]:
    """Preferred removal order: members holding no packed demand first, then the longest idle, then
    the latest in SGE's fill order (filled last, so the most likely to stay empty)."""
    positions = {m.member_id: i for i, m in enumerate(members)}

    def key(member: MemberView) -> tuple[bool, float, int]:
        index = positions[member.member_id]
        holds_demand = placed is not None and placed[index] > 0
        idle_since = member.idle_since if member.idle_since is not None else math.inf
        return (holds_demand, idle_since, -index)

    return sorted(members, key=key)


def _plan_static(
    base: Decision, census: _Census, snapshot: Snapshot, config: ScalerConfig, now: float
) -> Decision:
    wanted = config.static_members
    live = len(census.live)
    dead_ids = tuple(m.member_id for m in census.dead)
    policy = f"static mode holds {wanted} members, {live} live"
    if live > wanted:
        ordered = _removal_order(census.live)
        chosen = tuple(m.member_id for m in ordered if _removable(m, config, now))[: live - wanted]
        return _removal(base, census, dead_ids, chosen, policy, "the others run jobs or are younger "
                        f"than the minimum age of {config.min_age_s:.0f}s")
    # Draining members still count, so the cluster never holds more than N members at once.
    add = max(0, wanted - live - len(census.leaving))
    if add == 0:
        if live < wanted:
            policy += f"; waiting for {len(census.leaving)} leaving members before launching"
        return _removal(base, census, dead_ids, (), policy, "")
    brake = _braked(snapshot, config, now)
    if brake is not None:
        return _braked_decision(base, census, dead_ids, f"{policy}; wants {add} more, but {brake}")
    return replace(
        base,
        action=Action.REPLACE if dead_ids else Action.SCALE_UP,
        reason=f"{policy}: launching {add}" + (f", retiring {_listed(list(dead_ids))}" if dead_ids else ""),
        add_count=add,
        remove_ids=dead_ids,
        needed_members=add,
        target_members=live + add,
    )


def _plan_dynamic(
    base: Decision,
    census: _Census,
    demand: Demand,
    snapshot: Snapshot,
    config: ScalerConfig,
    capacity: Shape,
    now: float,
) -> Decision:
    live = len(census.live)
    dead_ids = tuple(m.member_id for m in census.dead)
    # SGE places pending tasks on the members it can use now, in fill order; members on their way
    # get what is left, then new members.
    order = sorted(range(live), key=lambda index: not _usable_now(census.live[index]))
    packing = pack(demand.by_shape, [_free_space(census.live[index], capacity) for index in order], capacity)
    placed = [0] * live
    for position, index in enumerate(order):
        placed[index] = packing.placed[position]
    needed = packing.new_members
    base = replace(base, needed_members=needed)
    counted = census.counted_after_retiring
    span = f"dynamic mode [{config.min_members}, {config.max_members}], {live} live"
    idle = _idle_surplus(census, placed, config, now)
    if counted > config.max_members:
        # The max was lowered: surplus members go even if not idle for long (but never one running a
        # job or younger than the minimum age); idle ones go as usual, so the next pass has no more.
        excess = min(counted - config.max_members, max(0, live - config.min_members))
        forced = [
            m.member_id for m in _removal_order(census.live, placed)
            if _removable(m, config, now) and m.member_id not in idle
        ]
        chosen = idle + tuple(forced[: max(0, excess - len(idle))])
        return _removal(base, census, dead_ids, chosen, f"{span}: {counted} members exceed max",
                        "the others run jobs or are younger than the minimum age")
    want_for_min = max(0, config.min_members - live)
    want = max(needed, want_for_min)
    if want > 0:
        room = max(0, config.max_members - counted)
        add = min(want, room)
        why = (
            f"{demand.tasks} pending tasks need {needed} more members beyond the free capacity"
            if needed >= want_for_min
            else f"min {config.min_members} needs {want_for_min} more"
        )
        if add == 0:
            return _removal(base, census, dead_ids, (), f"{span}: {why}, but at max ({counted} members "
                            "counted, including joining and leaving ones)", "")
        brake = _braked(snapshot, config, now)
        if brake is not None:
            return _braked_decision(base, census, dead_ids, f"{span}: {why}, but {brake}")
        clamp = f", clamped to max {config.max_members}" if add < want else ""
        return replace(
            base,
            action=Action.REPLACE if dead_ids else Action.SCALE_UP,
            reason=f"{span}: {why}; launching {add}{clamp}"
            + (f", retiring {_listed(list(dead_ids))}" if dead_ids else ""),
            add_count=add,
            remove_ids=dead_ids,
            target_members=live + add,
        )
    fits = (f"{demand.tasks} pending tasks fit the free capacity" if demand.tasks else "no pending demand")
    at_min = live - len(idle) <= config.min_members
    return _removal(
        base, census, dead_ids, idle, f"{span}: {fits}",
        f"min is {config.min_members}" if at_min else
        f"every other member runs jobs, holds pending demand, has been idle less than {config.idle_s:.0f}s "
        f"or is younger than {config.min_age_s:.0f}s",
    )


def _idle_surplus(
    census: _Census, placed: Sequence[int], config: ScalerConfig, now: float
) -> tuple[str, ...]:
    """Members to scale down: idle long enough, past the minimum age, holding none of the pending
    demand in the packing (so the rest still fits it), never taking the cluster below min."""
    candidates = [
        m for m, tasks in zip(census.live, placed, strict=True)
        if tasks == 0 and _removable(m, config, now) and _idle_long_enough(m, config, now)
    ]
    surplus = max(0, len(census.live) - config.min_members)
    return tuple(m.member_id for m in _removal_order(candidates)[:surplus])


def _usable_now(member: MemberView) -> bool:
    """SGE can place tasks on it now: READY and reporting in qhost."""
    return member.state == READY and member.in_sge


def _free_space(member: MemberView, capacity: Shape) -> Shape:
    """Free space a member offers: what SGE reports for a member it can use, a whole member of the
    resource model for one still on its way (no job can be on it yet)."""
    if _usable_now(member):
        return (member.free_cores, member.free_memory_bytes)
    return capacity


def _removal(
    base: Decision,
    census: _Census,
    dead_ids: tuple[str, ...],
    chosen: tuple[str, ...],
    context: str,
    why_not_more: str,
) -> Decision:
    """A scale-down of `chosen` live members plus the dead ones, or nothing when both are empty."""
    remove = dead_ids + chosen
    if not remove:
        note = f"; nothing to remove ({why_not_more})" if why_not_more else ""
        return replace(base, action=Action.NONE, reason=context + note)
    parts = []
    if chosen:
        parts.append(f"removing idle {_listed(list(chosen))}")
    if dead_ids:
        parts.append(f"retiring {_listed(list(dead_ids))} (LOST/INTERRUPTED)")
    return replace(
        base,
        action=Action.SCALE_DOWN,
        reason=f"{context}: " + ", ".join(parts),
        remove_ids=remove,
        target_members=len(census.live) - len(chosen),
    )


def _braked_decision(base: Decision, census: _Census, dead_ids: tuple[str, ...], reason: str) -> Decision:
    """The brake stops launches only: dead members are still retired meanwhile."""
    if dead_ids:
        return _removal(base, census, dead_ids, (), reason, "")
    return replace(base, action=Action.BRAKE, reason=reason)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")
