"""The scaler-log record: one JSON line a person can read to see why the scaler did what it did."""

from __future__ import annotations

import json

from manager.autoscaler import (
    MemberView,
    OperationInFlight,
    OpKind,
    PendingJob,
    ScalerConfig,
    Snapshot,
    plan,
    scaler_log_record,
)

GIB = 1024**3
NOW = 1_764_057_600.0  # 2025-11-25T08:00:00Z


def test_record_explains_a_scale_up_with_shapes_members_and_ignored_jobs() -> None:
    cfg = ScalerConfig(mode="dynamic", member_cores=8, member_memory_bytes=32 * GIB, max_members=5)
    members = (MemberView("m1", "READY", 7, 32 * GIB, 1, 4 * GIB, running_jobs=3, joined_at=NOW - 900,
                          in_sge=True),)
    pending = (
        PendingJob(40, cores=2, memory_bytes=4 * GIB, task_ranges=((1, 10, 1),)),
        PendingJob(41, task_count=3),
        PendingJob(42, name="huge", cores=64),
        PendingJob(43, held=True),
    )
    snapshot = Snapshot(members=members, pending=pending)
    decision = plan(snapshot, cfg, NOW)
    record = json.loads(json.dumps(scaler_log_record(decision, snapshot, NOW)))  # JSON-able as is
    assert record["time"] == "2025-11-25T08:00:00.000Z"
    assert record["decision"] == "scale-up"
    # 10 two-core tasks: 3 per 7-core member -> 4 members; the 1-core tasks fill m1 and the gaps.
    assert record["count"] == decision.add_count == 4
    assert record["reason"] == decision.reason
    assert record["pending_tasks"] == 13
    assert record["pending_by_shape"] == [
        {"cores": 2, "memory": "4G", "memory_bytes": 4 * GIB, "tasks": 10},
        {"cores": 1, "memory": "2G", "memory_bytes": 2 * GIB, "tasks": 3},
    ]
    assert record["members"] == [
        {"id": "m1", "state": "READY", "free_cores": 1, "free_memory": "4G", "running_jobs": 3}
    ]
    assert record["ignored_jobs"] == ["ignored job 42 (huge): wants 64 cores, member capacity 7"]
    assert record["not_demand"] == {"held (hqw)": {"jobs": 1, "ids": [43]}}
    assert record["in_flight"] is None


def test_ignored_jobs_already_logged_are_not_repeated() -> None:
    cfg = ScalerConfig(mode="dynamic", member_cores=4, member_memory_bytes=8 * GIB, max_members=2)
    snapshot = Snapshot(pending=(PendingJob(7, cores=10), PendingJob(8, cores=11)))
    decision = plan(snapshot, cfg, NOW)
    record = scaler_log_record(decision, snapshot, NOW, already_logged={7})
    assert record["ignored_jobs"] == ["ignored job 8: wants 11 cores, member capacity 3"]
    assert record["ignored_total"] == 2


def test_record_shows_the_operation_being_waited_for() -> None:
    cfg = ScalerConfig(mode="dynamic", member_cores=4, member_memory_bytes=8 * GIB, max_members=2)
    op = OperationInFlight(kind=OpKind.UP, started_at=NOW - 20, target=1, member_ids=("n1",))
    snapshot = Snapshot(members=(MemberView("n1", "JOINING"),), in_flight=op)
    record = scaler_log_record(plan(snapshot, cfg, NOW), snapshot, NOW)
    assert record["decision"] == "none"
    assert record["reason"].startswith("one operation at a time")
    assert record["in_flight"] == {"kind": "up", "member_ids": ["n1"], "removed_ids": [], "settled": False}
