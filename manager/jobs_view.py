"""What the reconciler last saw of SGE's jobs, kept for readers (the web page): running and pending
jobs, and which pending jobs the autoscaler ignores and why. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manager.autoscaler.model import IgnoredJob


@dataclass(frozen=True)
class JobsView:
    at: float = 0.0
    jobs: tuple[Any, ...] = ()  # manager.sge.model.SgeJob
    ignored: tuple[IgnoredJob, ...] = ()

    @property
    def running_tasks(self) -> int:
        return sum(1 for j in self.jobs if j.running)

    @property
    def pending_cores(self) -> int:
        """Cores the pending tasks ask for (SGE's default of 1 core when a job requests none)."""
        return sum(j.pending_task_count * max(j.requested_cores or 1, 1) for j in self.jobs if j.pending)

    def as_dicts(self) -> dict[str, Any]:
        reasons = {i.job_id: i.message for i in self.ignored}
        out: dict[str, Any] = {"at": self.at, "running": [], "pending": []}
        for j in self.jobs:
            row = {"job_id": j.job_id, "task_id": j.task_id, "name": j.name, "owner": j.owner, "state": j.state,
                   "cores": j.requested_cores, "memory_bytes": j.requested_mem_bytes, "host": j.host or ""}
            if j.running:
                out["running"].append(row)
            elif j.pending:
                row["tasks"] = j.pending_task_count
                row["ignored"] = reasons.get(j.job_id, "") or not_demand(j)
                out["pending"].append(row)
        return out



def not_demand(job: Any) -> str:
    """Why the autoscaler does not count a pending job as demand ('' when it does), the same
    conditions manager.autoscaler.model.PendingJob.hold applies."""
    from manager.spark.slots import is_no_scale

    if job.error:
        return "in error state (Eqw): not demand until `qmod -cj` clears it"
    if job.held:
        return "on hold: not demand until released (qrls)"
    if job.waiting_on_dependency:
        return "waiting for the jobs it depends on (-hold_jid): not demand yet"
    if is_no_scale(job.name):
        return "Spark Remote slot: uses members that exist, never grows the cluster"
    return ""
