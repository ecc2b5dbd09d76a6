"""Table tests of the autoscaler's decision, one per rule of the seed and issue 5."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from manager.autoscaler import (
    Action,
    JobHold,
    LaunchHistory,
    MemberView,
    OperationInFlight,
    OpKind,
    PendingJob,
    ScalerConfig,
    ScalerConfigError,
    Snapshot,
    plan,
    usable_capacity,
)

GIB = 1024**3
NOW = 100_000.0
OLD = NOW - 3600  # joined an hour ago: past any minimum age


def config(**overrides: object) -> ScalerConfig:
    values: dict[str, object] = {
        "mode": "dynamic",
        "member_cores": 4,
        "member_memory_bytes": 16 * GIB,
        "min_members": 0,
        "max_members": 10,
        "min_age_s": 300.0,
        "idle_s": 300.0,
    }
    values.update(overrides)
    return ScalerConfig(**values)  # type: ignore[arg-type]


def member(
    member_id: str,
    state: str = "READY",
    *,
    cores: int = 3,
    memory: int = 16 * GIB,
    free_cores: int | None = None,
    free_memory: int | None = None,
    running: int = 0,
    joined_at: float | None = OLD,
    idle_since: float | None = None,
    in_sge: bool = True,
) -> MemberView:
    if idle_since is None and running == 0:
        idle_since = joined_at
    return MemberView(
        member_id=member_id,
        state=state,
        capacity_cores=cores,
        capacity_memory_bytes=memory,
        free_cores=cores if free_cores is None else free_cores,
        free_memory_bytes=memory if free_memory is None else free_memory,
        running_jobs=running,
        joined_at=joined_at,
        idle_since=idle_since if running == 0 else None,
        in_sge=in_sge,
    )


def busy(member_id: str, **kw: object) -> MemberView:
    """A member fully used by running jobs."""
    return member(member_id, free_cores=0, free_memory=0, running=3, **kw)  # type: ignore[arg-type]


def array(job_id: int, tasks: int, **kw: object) -> PendingJob:
    return PendingJob(job_id=job_id, task_ranges=((1, tasks, 1),), **kw)  # type: ignore[arg-type]


# --- capacity: the seed's reserved-core example ------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "headroom", "dedicated", "usable"),
    [
        (4, 0, False, 3),  # seed: each member reserves 1 core for the cluster manager
        (4, 0, True, 4),  # dedicated manager: nothing reserved
        (8, 1, False, 6),  # headroom and the reserved core both come off
        (8, 1, True, 7),
    ],
)
def test_usable_capacity_subtracts_headroom_and_reserved_core(
    cores: int, headroom: int, dedicated: bool, usable: int
) -> None:
    cfg = config(member_cores=cores, headroom_cores=headroom, dedicated_manager=dedicated,
                 headroom_memory_bytes=GIB)
    assert usable_capacity(cfg) == (usable, 15 * GIB)


@pytest.mark.parametrize(("tasks", "action", "added"), [(6, Action.NONE, 0), (7, Action.SCALE_UP, 1)])
def test_two_four_core_members_without_dedicated_manager_run_six_tasks(
    tasks: int, action: Action, added: int
) -> None:
    # Seed: "2 nodes of standard-medium (4 cores) and no dedicated cluster manager ... only 6 (2x3) cores".
    snapshot = Snapshot(members=(member("m1"), member("m2")), pending=(array(1, tasks, cores=1),))
    decision = plan(snapshot, config(), NOW)
    assert (decision.action, decision.add_count) == (action, added)


# --- job requests: SGE complex defaults ---------------------------------------------------------


def test_unrequested_cores_and_memory_default_to_one_core_and_2g() -> None:
    job = PendingJob.from_request(7, cores=None, memory_bytes=None)
    assert (job.cores, job.memory_bytes) == (1, 2 * GIB)
    explicit = PendingJob.from_request(8, cores=2, memory_bytes=GIB)
    assert (explicit.cores, explicit.memory_bytes) == (2, GIB)


def test_default_2g_memory_limits_tasks_per_member() -> None:
    # 8-core members with 4G: by cores 7 tasks would fit, by the default 2G only 2 do.
    cfg = config(member_cores=8, member_memory_bytes=4 * GIB)
    job = PendingJob.from_request(1, cores=None, memory_bytes=None, task_ranges=((1, 5, 1),))
    decision = plan(Snapshot(pending=(job,)), cfg, NOW)
    assert decision.action == Action.SCALE_UP
    assert decision.add_count == 3
    assert dict(decision.pending_by_shape) == {(1, 2 * GIB): 5}


def test_array_tasks_are_counted_from_ranges() -> None:
    job = PendingJob(1, task_ranges=((1, 100, 1), (200, 300, 10), (5000, 5000, 1)))
    assert job.tasks == 100 + 11 + 1
    huge = array(2, 1_000_000, cores=1, memory_bytes=GIB)
    decision = plan(Snapshot(pending=(huge,)), config(max_members=50), NOW)
    assert decision.pending_by_shape == {(1, GIB): 1_000_000}
    assert decision.needed_members == 333_334  # 3 tasks per member
    assert decision.add_count == 50


# --- oversize jobs ------------------------------------------------------------------------------


def test_oversize_job_is_ignored_with_a_readable_message_and_no_scale_up() -> None:
    cfg = config(member_cores=8)  # 7 usable cores
    pending = (PendingJob(42, name="big", cores=64), PendingJob(43, memory_bytes=64 * GIB))
    decision = plan(Snapshot(pending=pending), cfg, NOW)
    assert decision.action == Action.NONE
    assert decision.add_count == 0
    assert [j.message for j in decision.ignored] == [
        "ignored job 42 (big): wants 64 cores, member capacity 7",
        "ignored job 43: wants 64G memory per task, member capacity 16G",
    ]
    assert decision.pending_by_shape == {}
    # `cluster status` shows the reason: it must tell why these jobs never start.
    assert decision.reason.endswith("; 2 jobs ignored, larger than a member (7 cores, 16G): 42, 43")


def test_oversize_job_does_not_hide_the_demand_of_others() -> None:
    pending = (PendingJob(42, cores=64), array(43, 4))
    decision = plan(Snapshot(pending=pending), config(), NOW)
    assert (decision.action, decision.add_count) == (Action.SCALE_UP, 2)
    assert [j.job_id for j in decision.ignored] == [42]


# --- demand is only what could run --------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "hold"),
    [("held", JobHold.HELD), ("waiting_on_dependency", JobHold.DEPENDENCY), ("error", JobHold.ERROR)],
)
def test_held_dependent_and_error_jobs_are_not_demand(flag: str, hold: JobHold) -> None:
    blocked = array(9, 30, **{flag: True})
    decision = plan(Snapshot(pending=(blocked,)), config(), NOW)
    assert decision.action == Action.NONE
    assert decision.not_demand == {hold: (9,)}
    # The same job without the flag is demand: the flag alone made the difference.
    runnable = plan(Snapshot(pending=(array(9, 30),)), config(), NOW)
    assert (runnable.action, runnable.add_count) == (Action.SCALE_UP, 10)


# --- bursts -------------------------------------------------------------------------------------


def test_burst_is_met_in_one_operation() -> None:
    decision = plan(Snapshot(pending=(array(1, 100),)), config(max_members=50), NOW)
    assert (decision.action, decision.add_count, decision.needed_members) == (Action.SCALE_UP, 34, 34)
    assert decision.target_members == 34


def test_burst_is_clamped_to_max_and_says_so() -> None:
    decision = plan(Snapshot(members=(busy("m1"),), pending=(array(1, 100),)), config(max_members=10), NOW)
    assert (decision.add_count, decision.needed_members, decision.target_members) == (9, 34, 10)
    assert "clamped to max 10" in decision.reason


def test_demand_fills_free_capacity_before_new_members() -> None:
    members = (member("m1", free_cores=2, running=1), member("m2", state="JOINING", in_sge=False,
                                                              joined_at=None))
    # m1 takes 2, the joining m2 counts as 3 on its way: 5 tasks fit, the 6th needs a member.
    assert plan(Snapshot(members=members, pending=(array(1, 5),)), config(), NOW).action == Action.NONE
    decision = plan(Snapshot(members=members, pending=(array(1, 6),)), config(), NOW)
    assert (decision.action, decision.add_count) == (Action.SCALE_UP, 1)


def test_mixed_shapes_are_packed_largest_first() -> None:
    # Usable 3 cores: 2-core tasks first (one per member), then 1-core tasks fill the gaps.
    pending = (array(1, 4, cores=1), array(2, 4, cores=2))
    decision = plan(Snapshot(pending=pending), config(), NOW)
    assert decision.add_count == 4


# --- never above max, never below min -----------------------------------------------------------


def test_members_in_every_non_terminated_state_count_towards_max() -> None:
    members = (
        busy("m1"),
        member("m2", state="REQUESTED", joined_at=None, in_sge=False),
        member("m3", state="DRAINING"),
        member("m4", state="TERMINATED"),
    )
    decision = plan(Snapshot(members=members, pending=(array(1, 30),)), config(max_members=3), NOW)
    assert decision.action == Action.NONE
    assert decision.add_count == 0
    assert "at max" in decision.reason


def test_lost_member_is_retired_and_its_place_used_in_one_operation() -> None:
    members = (busy("m1"), busy("m2"), member("m3", state="LOST"))
    decision = plan(Snapshot(members=members, pending=(array(1, 30),)), config(max_members=3), NOW)
    assert (decision.action, decision.add_count, decision.remove_ids) == (Action.REPLACE, 1, ("m3",))


def test_min_members_are_launched_without_demand() -> None:
    decision = plan(Snapshot(), config(min_members=2), NOW)
    assert (decision.action, decision.add_count) == (Action.SCALE_UP, 2)


def test_scale_down_stops_at_min() -> None:
    members = tuple(member(f"m{i}") for i in range(4))
    decision = plan(Snapshot(members=members), config(min_members=3), NOW)
    assert decision.action == Action.SCALE_DOWN
    assert len(decision.remove_ids) == 1
    assert decision.target_members == 3


def test_lowered_max_removes_surplus_idle_members_without_waiting_for_idle_time() -> None:
    members = (busy("m1"), member("m2", idle_since=NOW - 10), member("m3", idle_since=NOW - 20),
               member("m4", idle_since=NOW - 30))
    decision = plan(Snapshot(members=members), config(max_members=2), NOW)
    assert decision.action == Action.SCALE_DOWN
    assert decision.remove_ids == ("m4", "m3")  # longest idle first; m1 runs jobs


# --- scale-down: minimum age, idle time, running jobs, demand -----------------------------------


@pytest.mark.parametrize(("age", "removed"), [(100.0, False), (299.0, False), (300.0, True)])
def test_member_stays_at_least_min_age(age: float, removed: bool) -> None:
    idle_old = member("m1", joined_at=NOW - age, idle_since=NOW - age)
    decision = plan(Snapshot(members=(idle_old,)), config(idle_s=0.0), NOW)
    assert (decision.remove_ids == ("m1",)) is removed


@pytest.mark.parametrize(
    ("idle_for", "removed"), [(0.0, False), (299.0, False), (300.0, True), (5000.0, True)]
)
def test_member_is_removed_only_after_idle_time(idle_for: float, removed: bool) -> None:
    decision = plan(Snapshot(members=(member("m1", idle_since=NOW - idle_for),)), config(), NOW)
    assert (decision.action == Action.SCALE_DOWN) is removed


def test_member_running_a_job_is_never_removed() -> None:
    # Free capacity left, but one job runs: it is not idle.
    running = member("m1", free_cores=2, running=1, idle_since=None)
    decision = plan(Snapshot(members=(running,)), config(idle_s=0.0, min_age_s=0.0), NOW)
    assert decision.action == Action.NONE


def test_scale_down_keeps_the_members_the_pending_demand_needs() -> None:
    # Both idle and old; two pending tasks fit on one of them, so exactly one may go.
    members = (member("m1"), member("m2"))
    decision = plan(Snapshot(members=members, pending=(array(1, 2),)), config(), NOW)
    assert (decision.action, decision.remove_ids) == (Action.SCALE_DOWN, ("m2",))
    full = plan(Snapshot(members=members, pending=(array(1, 4),)), config(), NOW)
    assert full.action == Action.NONE


def test_half_full_cluster_frees_whole_members() -> None:
    # SGE fills members one after another: the first two are busy, the last two went idle.
    members = (busy("m1"), busy("m2"), member("m3", idle_since=NOW - 900), member("m4", idle_since=NOW - 600))
    decision = plan(Snapshot(members=members), config(), NOW)
    assert decision.remove_ids == ("m3", "m4")
    assert decision.target_members == 2


# --- one operation at a time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new_member", "waits"),
    [
        (member("n1", state="REQUESTED", joined_at=None, in_sge=False), True),
        (member("n1", state="JOINING", in_sge=False), True),
        (member("n1", in_sge=False), True),  # READY but qhost does not show it yet
        (member("n1", joined_at=NOW - 5), False),  # READY and in SGE: stabilised
        (member("n1", state="LOST"), False),  # a failed launch also ends the operation
    ],
)
def test_scale_up_must_stabilise_before_the_next_decision(new_member: MemberView, waits: bool) -> None:
    op = OperationInFlight(kind=OpKind.UP, started_at=NOW - 60, target=2, member_ids=("n1",))
    snapshot = Snapshot(members=(busy("m1"), new_member), pending=(array(1, 30),), in_flight=op)
    decision = plan(snapshot, config(), NOW)
    if waits:
        assert decision.action == Action.NONE
        assert decision.reason.startswith("one operation at a time")
        assert "n1" in decision.reason
        assert not decision.op_settled
        # The same wait a pass later reads the same, so it is not logged as a new decision.
        assert plan(snapshot, config(), NOW + 10).reason == decision.reason
    else:
        assert decision.op_settled
        assert decision.action in (Action.SCALE_UP, Action.REPLACE)


def test_scale_down_must_finish_before_the_next_decision() -> None:
    op = OperationInFlight(kind=OpKind.DOWN, started_at=NOW - 30, target=1, removed_ids=("m2",))
    pending = (array(1, 30),)
    draining = Snapshot(members=(busy("m1"), member("m2", state="DRAINING")), pending=pending, in_flight=op)
    assert plan(draining, config(), NOW).action == Action.NONE
    gone = Snapshot(members=(busy("m1"), member("m2", state="TERMINATED")), pending=pending, in_flight=op)
    decision = plan(gone, config(), NOW)
    assert decision.op_settled and decision.action == Action.SCALE_UP


@pytest.mark.parametrize(("age", "closed"), [(1799.0, False), (1800.0, True)])
def test_operation_that_never_stabilises_is_closed_after_the_timeout(age: float, closed: bool) -> None:
    # A launch recorded without member ids (the manager died before the provider answered) and a
    # member stuck JOINING: the scaler must not wait forever, and the stuck member still counts.
    stuck = member("n1", state="JOINING", in_sge=False)
    op = OperationInFlight(kind=OpKind.UP, started_at=NOW - age, target=2)
    snapshot = Snapshot(members=(busy("m1"), stuck), pending=(array(1, 30),), in_flight=op)
    decision = plan(snapshot, config(max_members=3, stabilise_timeout_s=1800.0), NOW)
    assert (decision.op_settled, decision.op_timed_out) == (closed, closed)
    if closed:
        assert "did not stabilise within 1800s" in decision.reason
        assert (decision.action, decision.add_count) == (Action.SCALE_UP, 1)  # m1 + n1 + 1 = max
    else:
        assert decision.action == Action.NONE
        assert "no launched member ids recorded yet" in decision.reason


# --- static mode --------------------------------------------------------------------------------


def test_static_mode_holds_n_members_whatever_the_demand() -> None:
    cfg = config(mode="static", static_members=3)
    members = (busy("m1"), busy("m2"), busy("m3"))
    assert plan(Snapshot(members=members, pending=(array(1, 500),)), cfg, NOW).action == Action.NONE
    idle = tuple(member(f"m{i}") for i in range(3))
    assert plan(Snapshot(members=idle), cfg, NOW).action == Action.NONE


def test_static_mode_starts_n_members() -> None:
    decision = plan(Snapshot(), config(mode="static", static_members=4), NOW)
    assert (decision.action, decision.add_count, decision.target_members) == (Action.SCALE_UP, 4, 4)


@pytest.mark.parametrize("dead_state", ["LOST", "INTERRUPTED"])
def test_static_mode_replaces_dead_members(dead_state: str) -> None:
    members = (member("m1"), member("m2", state=dead_state), member("m3"))
    decision = plan(Snapshot(members=members), config(mode="static", static_members=3), NOW)
    assert (decision.action, decision.add_count, decision.remove_ids) == (Action.REPLACE, 1, ("m2",))


def test_static_mode_replaces_terminated_members() -> None:
    members = (member("m1"), member("m2", state="TERMINATED"))
    decision = plan(Snapshot(members=members), config(mode="static", static_members=2), NOW)
    assert (decision.action, decision.add_count, decision.remove_ids) == (Action.SCALE_UP, 1, ())


def test_static_mode_waits_for_leaving_members_before_replacing() -> None:
    members = (member("m1"), member("m2", state="DRAINING"))
    decision = plan(Snapshot(members=members), config(mode="static", static_members=2), NOW)
    assert decision.action == Action.NONE
    assert "leaving" in decision.reason


def test_static_mode_lowered_removes_only_idle_old_members() -> None:
    members = (busy("m1"), member("m2", joined_at=NOW - 10), member("m3"))
    decision = plan(Snapshot(members=members), config(mode="static", static_members=1), NOW)
    assert decision.remove_ids == ("m3",)  # m1 runs jobs, m2 is younger than the minimum age


# --- safety brake -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "since_last", "braked"),
    [(2, 10.0, False), (3, 10.0, True), (3, 299.0, True), (3, 300.0, False), (7, 100.0, True)],
)
def test_brake_after_consecutive_failed_launches(failures: int, since_last: float, braked: bool) -> None:
    history = LaunchHistory(consecutive_failures=failures, last_failure_at=NOW - since_last)
    cfg = config(max_consecutive_failures=3, brake_backoff_s=300.0)
    decision = plan(Snapshot(pending=(array(1, 6),), history=history), cfg, NOW)
    if braked:
        assert (decision.action, decision.add_count) == (Action.BRAKE, 0)
        assert f"after {failures} consecutive failed launches" in decision.reason
        next_try = datetime.fromtimestamp(NOW - since_last + 300, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert f"next try at {next_try}" in decision.reason
    else:
        assert (decision.action, decision.add_count) == (Action.SCALE_UP, 2)


def test_brake_still_retires_dead_members() -> None:
    history = LaunchHistory(consecutive_failures=5, last_failure_at=NOW)
    members = (busy("m1"), member("m2", state="LOST"))
    decision = plan(Snapshot(members=members, pending=(array(1, 6),), history=history), config(), NOW)
    assert (decision.action, decision.add_count, decision.remove_ids) == (Action.SCALE_DOWN, 0, ("m2",))
    assert "braked" in decision.reason


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_members": 5, "max_members": 3}, "min_members (5) must not exceed max_members (3)"),
        ({"max_members": 51}, "max_members (51) must not exceed the hard limit (50)"),
        ({"max_members": 6, "hard_limit": 5}, "max_members (6) must not exceed the hard limit (5)"),
        ({"mode": "static", "static_members": 51}, "static_members must be between 0 and the hard limit 50"),
        ({"member_cores": 1}, "leaves 0 cores for jobs"),
        ({"mode": "elastic"}, "mode must be 'static' or 'dynamic'"),
        ({"idle_s": -1.0}, "idle_s must not be negative"),
        ({"max_consecutive_failures": 0}, "max_consecutive_failures must be at least 1"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_message(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ScalerConfigError, match="invalid scaler configuration") as error:
        config(**overrides)
    assert message in str(error.value)


def test_hard_limit_is_configurable_for_tests() -> None:
    assert config(max_members=5, hard_limit=5).ceiling == 5


@pytest.mark.parametrize(
    "make",
    [
        lambda: MemberView("m1", state="RUNNING"),
        lambda: MemberView("", state="READY"),
        lambda: MemberView("m1", state="READY", free_cores=-1),
        lambda: PendingJob(1, cores=0),
        lambda: PendingJob(1, task_ranges=((5, 3, 1),)),
        lambda: LaunchHistory(consecutive_failures=2),
        lambda: Snapshot(members=(MemberView("m1", "READY"), MemberView("m1", "JOINING"))),
    ],
)
def test_inconsistent_snapshot_values_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_plan_is_deterministic_and_reads_no_clock() -> None:
    snapshot = Snapshot(members=(member("m1"), busy("m2")), pending=(array(1, 40), PendingJob(2, cores=99)))
    first = plan(snapshot, config(), NOW)
    assert all(plan(snapshot, config(), NOW) == first for _ in range(3))
    # The decision depends on `now` only: the same snapshot 10 minutes earlier keeps m1 (too young).
    assert plan(Snapshot(members=(member("m1"),)), config(), OLD + 100).action == Action.NONE
    assert plan(Snapshot(members=(member("m1"),)), config(), OLD + 400).action == Action.SCALE_DOWN


def test_planning_modules_import_no_io() -> None:
    # DESIGN.md dependency rule: the planner is pure, so it must not even import I/O or clocks.
    import ast
    from pathlib import Path

    import manager.autoscaler as package

    forbidden = {"grpc", "sqlite3", "subprocess", "os", "time", "random", "asyncio", "socket", "pathlib",
                 "shutil", "io", "structlog", "logging"}
    for path in Path(package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
                assert not name.startswith(("manager.", "agent")) or name.startswith("manager.autoscaler"), (
                    f"{path.name} imports {name}: the planner depends on nothing else of the manager"
                )
