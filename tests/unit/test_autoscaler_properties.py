"""Property-based tests of the autoscaler's decision (hypothesis, a few hundred cases each).

Carrying a decision out is simulated the way the cluster would: removed members disappear, new
members join READY with all their capacity free, members on their way become READY, and SGE places
the pending tasks one by one on the first member with room, in fill order. The placement here is a
deliberately naive task-by-task reference, independent of the planner's bulk arithmetic.
"""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from manager.autoscaler import (
    Action,
    LaunchHistory,
    MemberView,
    OperationInFlight,
    OpKind,
    PendingJob,
    ScalerConfig,
    Snapshot,
    plan,
    usable_capacity,
)
from manager.autoscaler.model import DEAD_STATES, LIVE_STATES, MEMBER_STATES, TERMINATED
from manager.autoscaler.packing import ffd_order, fits, pack

GIB = 1024**3
MIB = 1024**2
NOW = 1_000_000.0
# AUTOSCALER_EXAMPLES=5000 for a deeper search than the quick default.
CASES = settings(
    max_examples=int(os.environ.get("AUTOSCALER_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Mostly READY members, every other state now and then.
STATE_WEIGHTS = ["READY"] * 6 + sorted(MEMBER_STATES - {"READY"})
MEMORY_CHOICES = [0, 512 * MIB, GIB, 2 * GIB, 3 * GIB, 4 * GIB, 8 * GIB, 64 * GIB]


@st.composite
def configs(draw: st.DrawFn, mode: str | None = None) -> ScalerConfig:
    hard_limit = draw(st.integers(1, 50))
    maximum = draw(st.integers(0, min(hard_limit, 12)))
    return ScalerConfig(
        mode=mode or draw(st.sampled_from(["dynamic", "dynamic", "static"])),  # type: ignore[arg-type]
        member_cores=draw(st.integers(3, 16)),
        member_memory_bytes=draw(st.sampled_from([4, 8, 16, 32])) * GIB,
        headroom_cores=draw(st.integers(0, 1)),
        headroom_memory_bytes=draw(st.sampled_from([0, 512 * MIB])),
        dedicated_manager=draw(st.booleans()),
        static_members=draw(st.integers(0, min(hard_limit, 12))),
        min_members=draw(st.integers(0, maximum)),
        max_members=maximum,
        hard_limit=hard_limit,
        min_age_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        idle_s=draw(st.sampled_from([0.0, 120.0, 300.0])),
        max_consecutive_failures=draw(st.integers(1, 4)),
        brake_backoff_s=draw(st.sampled_from([0.0, 60.0, 600.0])),
    )


@st.composite
def members(draw: st.DrawFn, config: ScalerConfig) -> tuple[MemberView, ...]:
    cores, memory = usable_capacity(config)
    count = draw(st.integers(0, 10))
    result = []
    for index in range(count):
        state = draw(st.sampled_from(STATE_WEIGHTS))
        in_sge = (state == "READY" and draw(st.booleans())) or state in ("DRAINING", "LOST", "INTERRUPTED")
        busy = in_sge and draw(st.booleans())
        age = draw(st.sampled_from([0.0, 30.0, 200.0, 299.0, 300.0, 1000.0, 5000.0]))
        joined_at = None if state == "REQUESTED" else NOW - age
        idle_for = draw(st.sampled_from([0.0, 100.0, 119.0, 120.0, 300.0, 5000.0]))
        used = draw(st.integers(1, 100)) if busy else 0  # percent of the member in use
        free_cores = min(cores - 1, cores * (100 - used) // 100) if busy else cores
        free_memory = memory * (100 - used) // 100
        result.append(
            MemberView(
                member_id=f"m{index:02d}",
                state=state,
                capacity_cores=cores,
                capacity_memory_bytes=memory,
                free_cores=free_cores,
                free_memory_bytes=free_memory,
                running_jobs=draw(st.integers(1, 5)) if busy else 0,
                joined_at=joined_at,
                idle_since=None if busy or joined_at is None else max(joined_at, NOW - idle_for),
                in_sge=in_sge,
            )
        )
    return tuple(result)


@st.composite
def jobs(draw: st.DrawFn, config: ScalerConfig, blocked: bool = True) -> tuple[PendingJob, ...]:
    cores, _ = usable_capacity(config)
    count = draw(st.integers(0, 7))
    result = []
    for job_id in range(1, count + 1):
        start = draw(st.integers(1, 50))
        hold = draw(st.integers(0, 12)) if blocked else 12  # 0: held, 1: dependency, 2: error
        result.append(
            PendingJob(
                job_id=job_id,
                cores=draw(st.integers(1, cores + 2)),  # some oversize
                memory_bytes=draw(st.sampled_from(MEMORY_CHOICES)),
                task_ranges=((start, start + draw(st.integers(0, 60)), draw(st.integers(1, 3))),),
                held=hold == 0,
                waiting_on_dependency=hold == 1,
                error=hold == 2,
            )
        )
    return tuple(result)


@st.composite
def histories(draw: st.DrawFn) -> LaunchHistory:
    failures = draw(st.sampled_from([0, 0, 0, 1, 3, 5]))
    return LaunchHistory(failures, NOW - draw(st.sampled_from([0.0, 30.0, 1000.0])) if failures else None)


@st.composite
def cases(draw: st.DrawFn, mode: str | None = None) -> tuple[ScalerConfig, Snapshot]:
    config = draw(configs(mode))
    snapshot = Snapshot(members=draw(members(config)), pending=draw(jobs(config)), history=draw(histories()))
    return config, snapshot


@st.composite
def quiet_cases(draw: st.DrawFn) -> tuple[ScalerConfig, Snapshot]:
    """Dynamic clusters of READY members, idle ones removable at once, with a little demand that
    fits: scale-down territory, where keeping the members the demand needs matters."""
    config = replace(draw(configs("dynamic")), min_age_s=0.0, idle_s=0.0)
    cluster = tuple(
        replace(m, state="READY", in_sge=True, joined_at=m.joined_at or NOW - 60,
                idle_since=None if m.running_jobs else (m.idle_since or NOW - 60))
        for m in draw(members(config))
    )
    small = tuple(replace(j, task_ranges=((1, 1 + j.tasks % 4, 1),)) for j in draw(jobs(config, blocked=False)))
    return config, Snapshot(members=cluster, pending=small)


@st.composite
def launching_cases(draw: st.DrawFn) -> tuple[ScalerConfig, Snapshot]:
    """Dynamic clusters under their max with demand: mostly decisions to launch."""
    drawn = draw(configs("dynamic"))
    config = replace(drawn, min_members=0, max_members=max(2, drawn.max_members),
                     hard_limit=max(12, drawn.hard_limit))
    cluster = draw(members(config))[: draw(st.integers(0, config.max_members - 1))]
    return config, Snapshot(members=cluster, pending=draw(jobs(config, blocked=False)))


# --- helpers: what a decision does to the cluster -----------------------------------------------


def counted(members: tuple[MemberView, ...]) -> int:
    return sum(1 for m in members if m.state != TERMINATED)


def live(members: tuple[MemberView, ...]) -> int:
    return sum(1 for m in members if m.state in LIVE_STATES)


def runnable_tasks(snapshot: Snapshot, config: ScalerConfig) -> dict[tuple[int, int], int]:
    cores, memory = usable_capacity(config)
    demand: dict[tuple[int, int], int] = {}
    for job in snapshot.pending:
        if job.hold is None and job.cores <= cores and job.memory_bytes <= memory:
            demand[job.shape] = demand.get(job.shape, 0) + job.tasks
    return demand


def place_task_by_task(
    demand: dict[tuple[int, int], int], free: list[list[int]], capacity: tuple[int, int], new_allowed: int | None
) -> tuple[list[int], int, dict[tuple[int, int], int]]:
    """Naive first-fit decreasing, one task at a time. Returns tasks per member (the given ones
    followed by the new ones), the number of new members opened, and what could not be placed."""
    tasks = [0] * len(free)
    opened = 0
    left: dict[tuple[int, int], int] = {}
    for shape in ffd_order(demand, capacity):
        for _ in range(demand[shape]):
            target = next((i for i, space in enumerate(free) if fits(space[0], space[1], shape) >= 1), None)
            if target is None:
                if new_allowed is not None and opened >= new_allowed:
                    left[shape] = left.get(shape, 0) + 1
                    continue
                free.append(list(capacity))
                tasks.append(0)
                opened += 1
                target = len(free) - 1
            free[target][0] -= shape[0]
            free[target][1] -= shape[1]
            tasks[target] += 1
    return tasks, opened, left


def carry_out(
    snapshot: Snapshot, config: ScalerConfig, decision_add: int, remove: tuple[str, ...], *, arrive: bool
) -> tuple[Snapshot, list[int]]:
    """The cluster after the decision and after SGE placed what it could. With `arrive`, members
    that were on their way (REQUESTED, JOINING, READY not yet in qhost) have joined too. Returns the
    new snapshot and the tasks each new member received."""
    capacity = usable_capacity(config)
    kept = [m for m in snapshot.members if m.member_id not in remove]
    arrived = []
    for member in kept:
        on_its_way = member.state in LIVE_STATES and not (member.state == "READY" and member.in_sge)
        if arrive and on_its_way:
            member = replace(member, state="READY", in_sge=True, free_cores=capacity[0],
                             free_memory_bytes=capacity[1], running_jobs=0,
                             joined_at=member.joined_at or NOW, idle_since=member.idle_since or NOW)
        arrived.append(member)
    for index in range(decision_add):
        arrived.append(MemberView(f"new{index:02d}", "READY", capacity[0], capacity[1], capacity[0],
                                  capacity[1], joined_at=NOW, idle_since=NOW, in_sge=True))
    # SGE's order, as the planner assumes it: members it could use at planning time, then the ones
    # that arrived since, then the new ones.
    usable_before = {m.member_id for m in snapshot.members if m.state == "READY" and m.in_sge}
    schedulable = sorted(
        (m for m in arrived if m.state == "READY" and m.in_sge),
        key=lambda m: (m.member_id not in usable_before, m.member_id.startswith("new")),
    )
    free = [[m.free_cores, m.free_memory_bytes] for m in schedulable]
    tasks, opened, left = place_task_by_task(runnable_tasks(snapshot, config), free, capacity, new_allowed=0)
    assert opened == 0
    placed = dict(zip((m.member_id for m in schedulable), zip(tasks, free, strict=True), strict=True))
    after = []
    for member in arrived:
        count, space = placed.get(member.member_id, (0, [0, 0]))
        if count:
            member = replace(member, free_cores=space[0], free_memory_bytes=space[1],
                             running_jobs=member.running_jobs + count, idle_since=None)
        after.append(member)
    still_pending = tuple(
        PendingJob(1000 + i, cores=shape[0], memory_bytes=shape[1], task_count=n)
        for i, (shape, n) in enumerate(sorted(left.items()))
    )
    blocked = tuple(j for j in snapshot.pending if j.hold is not None or j.shape[0] > capacity[0]
                    or j.memory_bytes > capacity[1])
    new_tasks = [placed[m.member_id][0] for m in after if m.member_id.startswith("new")]
    return Snapshot(members=tuple(after), pending=blocked + still_pending, history=snapshot.history), new_tasks


# --- properties ---------------------------------------------------------------------------------


@CASES
@given(cases())
def test_never_above_max_nor_below_min(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    decision = plan(snapshot, config, NOW)
    by_id = {m.member_id: m for m in snapshot.members}
    assert len(set(decision.remove_ids)) == len(decision.remove_ids)
    assert set(decision.remove_ids) <= set(by_id)
    removed_live = sum(1 for i in decision.remove_ids if by_id[i].state in LIVE_STATES)
    after_counted = counted(snapshot.members) - len(decision.remove_ids) + decision.add_count
    after_live = live(snapshot.members) - removed_live + decision.add_count
    assert decision.add_count >= 0
    assert decision.target_members == after_live
    if decision.add_count:
        assert after_counted <= config.ceiling <= config.hard_limit
    else:
        assert after_counted <= max(counted(snapshot.members), config.ceiling)
    if removed_live:
        assert after_live >= config.floor


@CASES
@given(cases())
def test_never_removes_a_young_or_busy_member(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    decision = plan(snapshot, config, NOW)
    by_id = {m.member_id: m for m in snapshot.members}
    dead = sum(1 for m in snapshot.members if m.state in DEAD_STATES)
    event(f"removes {sum(by_id[i].state in LIVE_STATES for i in decision.remove_ids)} live members")
    for member_id in decision.remove_ids:
        member = by_id[member_id]
        if member.state in DEAD_STATES:
            continue  # LOST/INTERRUPTED: retired, their jobs are rescheduled by the drain
        assert member.state == "READY", member
        assert member.running_jobs == 0, member
        assert member.joined_at is not None and NOW - member.joined_at >= config.min_age_s, member
        if config.mode == "dynamic" and counted(snapshot.members) - dead <= config.max_members:
            # Not above a lowered max: only members idle for idle_s go.
            assert member.idle_since is not None and NOW - member.idle_since >= config.idle_s, member


@CASES
@given(cases(mode="static"))
def test_static_mode_reaches_exactly_n_live_members(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    kept: list[MemberView] = []
    for m in snapshot.members:
        full = m.state in LIVE_STATES and live(tuple(kept)) >= config.static_members
        if full or m.state in ("DRAINING", "DRAINED"):
            continue
        kept.append(m)
    snapshot = replace(snapshot, history=LaunchHistory(), members=tuple(kept))
    decision = plan(snapshot, config, NOW)
    removed_live = sum(1 for m in snapshot.members if m.member_id in decision.remove_ids and m.state in LIVE_STATES)
    assert removed_live == 0
    assert live(snapshot.members) + decision.add_count == config.static_members
    assert {m.member_id for m in snapshot.members if m.state in DEAD_STATES} == set(decision.remove_ids)


@CASES
@given(cases())
def test_no_launch_while_braked(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    history = snapshot.history
    braked = (
        history.consecutive_failures >= config.max_consecutive_failures
        and history.last_failure_at is not None
        and NOW - history.last_failure_at < config.brake_backoff_s
    )
    decision = plan(snapshot, config, NOW)
    event(f"braked={braked} action={decision.action}")
    if braked:
        assert decision.add_count == 0
        assert decision.action in (Action.BRAKE, Action.NONE, Action.SCALE_DOWN)


@CASES
@given(cases(), st.data())
def test_oversize_and_blocked_jobs_never_change_the_decision(
    case: tuple[ScalerConfig, Snapshot], data: st.DataObject
) -> None:
    config, snapshot = case
    cores, memory = usable_capacity(config)
    extra = (
        PendingJob(9001, cores=cores + data.draw(st.integers(1, 64)), task_count=data.draw(st.integers(1, 10**6))),
        PendingJob(9002, memory_bytes=memory + data.draw(st.integers(1, 64)) * GIB, task_count=500),
        PendingJob(9003, task_count=10**5, held=True),
        PendingJob(9004, task_count=10**5, waiting_on_dependency=True),
        PendingJob(9005, task_count=10**5, error=True),
    )
    before = plan(snapshot, config, NOW)
    after = plan(replace(snapshot, pending=snapshot.pending + extra), config, NOW)
    assert (after.action, after.add_count, after.remove_ids) == (before.action, before.add_count, before.remove_ids)
    assert {9001, 9002} <= {j.job_id for j in after.ignored}


@CASES
@given(st.one_of(cases(), quiet_cases()))
def test_carried_out_decision_is_not_followed_by_another_change(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    decision = plan(snapshot, config, NOW)
    event(f"decision {decision.action}")
    # Members on their way stay so: only the decision's own effect is carried out.
    after, _ = carry_out(snapshot, config, decision.add_count, decision.remove_ids, arrive=False)
    again = plan(after, config, NOW)
    assert (again.add_count, again.remove_ids) == (0, ()), (decision.reason, again.reason)


@CASES
@given(launching_cases())
def test_scale_up_fits_the_demand_and_leaves_no_new_member_empty(case: tuple[ScalerConfig, Snapshot]) -> None:
    config, snapshot = case
    decision = plan(snapshot, config, NOW)
    event(f"decision {decision.action}")
    assume(decision.add_count > 0)
    after, new_tasks = carry_out(snapshot, config, decision.add_count, decision.remove_ids, arrive=True)
    assert len(new_tasks) == decision.add_count
    assert all(tasks >= 1 for tasks in new_tasks), new_tasks
    if decision.add_count == decision.needed_members:
        assert runnable_tasks(after, config) == {}  # everything runnable got a place


@CASES
@given(cases(), st.sampled_from(["REQUESTED", "JOINING", "READY-not-in-sge", "DRAINING"]))
def test_nothing_is_decided_while_an_operation_has_not_stabilised(
    case: tuple[ScalerConfig, Snapshot], pending_state: str
) -> None:
    config, snapshot = case
    state = pending_state.removesuffix("-not-in-sge")
    op_member = MemberView("op-member", state, joined_at=NOW, in_sge=False)
    kind = OpKind.DOWN if state == "DRAINING" else OpKind.UP
    op = OperationInFlight(kind=kind, started_at=NOW - 10, target=1,
                           member_ids=() if kind == OpKind.DOWN else ("op-member",),
                           removed_ids=("op-member",) if kind == OpKind.DOWN else ())
    decision = plan(replace(snapshot, members=(*snapshot.members, op_member), in_flight=op), config, NOW)
    assert (decision.action, decision.add_count, decision.remove_ids) == (Action.NONE, 0, ())
    assert "one operation at a time" in decision.reason


@CASES
@given(
    st.dictionaries(
        st.tuples(st.integers(1, 6), st.sampled_from(MEMORY_CHOICES[:-1])), st.integers(1, 80), max_size=5
    ),
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 16)), max_size=6),
    st.integers(6, 8),
)
def test_bulk_packing_equals_task_by_task_first_fit_decreasing(
    demand: dict[tuple[int, int], int], members_free: list[tuple[int, int]], member_cores: int
) -> None:
    capacity = (member_cores, 8 * GIB)
    free = [(cores, gib * GIB // 2) for cores, gib in members_free]
    bulk = pack(demand, free, capacity)
    tasks, opened, left = place_task_by_task(demand, [list(f) for f in free], capacity, new_allowed=None)
    assert left == {}
    assert bulk.placed == tuple(tasks[: len(free)])
    assert bulk.new_members == opened
    assert bulk.tasks_on_new == sum(tasks[len(free):])
