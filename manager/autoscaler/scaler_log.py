"""One decision → one JSON-able record, written by the control loop as a line of
/data/logs/sge-scaler.log (the seed: "The operation of the auto scaler can be monitored in the log file").

A person reading the log must see why the scaler did what it did: the pending tasks by shape, the
members with their free space, the decision and its reason, and the jobs it ignores. Oversize jobs
are to be logged once each: the loop passes the ids it already logged in `already_logged`.

Pure: `now` is an argument; the conversion to ISO 8601 reads no clock.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from manager.autoscaler.model import Decision, Snapshot, format_memory

_MAX_IDS_PER_HOLD = 20  # enough to find the jobs with qstat, bounded for 10k held jobs


def scaler_log_record(
    decision: Decision, snapshot: Snapshot, now: float, *, already_logged: Collection[int] = ()
) -> dict[str, Any]:
    pending = [
        {"cores": cores, "memory": format_memory(memory), "memory_bytes": memory, "tasks": tasks}
        for (cores, memory), tasks in sorted(decision.pending_by_shape.items(), reverse=True)
    ]
    members = [
        {
            "id": m.member_id,
            "state": m.state,
            "free_cores": m.free_cores,
            "free_memory": format_memory(m.free_memory_bytes),
            "running_jobs": m.running_jobs,
        }
        for m in snapshot.members
    ]
    not_demand = {
        str(hold): {"jobs": len(ids), "ids": list(ids[:_MAX_IDS_PER_HOLD])}
        for hold, ids in decision.not_demand.items()
    }
    return {
        "time": datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "decision": str(decision.action),
        "count": decision.add_count,
        "ids": list(decision.remove_ids),
        "reason": decision.reason,
        "needed_members": decision.needed_members,
        "target_members": decision.target_members,
        "pending_tasks": sum(decision.pending_by_shape.values()),
        "pending_by_shape": pending,
        "members": members,
        "ignored_jobs": [job.message for job in decision.ignored if job.job_id not in already_logged],
        "ignored_total": len(decision.ignored),
        "not_demand": not_demand,
        "in_flight": None if snapshot.in_flight is None else {
            "kind": str(snapshot.in_flight.kind),
            "member_ids": list(snapshot.in_flight.member_ids),
            "removed_ids": list(snapshot.in_flight.removed_ids),
            "settled": decision.op_settled,
        },
    }
