"""Pending jobs → demand: the tasks that could run now, counted by shape (cores, memory per task).

Rules (seed and issue 5):
- Only what could run is demand. Held jobs (`hqw`), jobs waiting on an unfinished dependency
  (`-hold_jid`) and jobs in error state (`Eqw`) are set aside with the reason, because scaling for
  them starts members nobody uses.
- A job whose task needs more than one member of the resource model can offer is ignored: it would
  wait forever on any number of members, so it never causes a scale-up. It is reported with a message
  a person can act on ("ignored job 42: wants 64 cores, member capacity 7").
- Array jobs are counted by arithmetic on their task ranges, never expanded task by task.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from manager.autoscaler.model import IgnoredJob, JobHold, PendingJob, Shape, format_memory


@dataclass(frozen=True)
class Demand:
    by_shape: dict[Shape, int]  # runnable tasks that fit a member, by per-task shape
    ignored: tuple[IgnoredJob, ...]
    not_demand: dict[JobHold, tuple[int, ...]]

    @property
    def tasks(self) -> int:
        return sum(self.by_shape.values())


def oversize_message(job: PendingJob, capacity: Shape) -> str | None:
    """Why `job` can never start on a member of this capacity, or None when it fits."""
    cores, memory = capacity
    wants: list[str] = []
    if job.cores > cores:
        wants.append(f"{job.cores} cores, member capacity {cores}")
    if job.memory_bytes > memory:
        wants.append(
            f"{format_memory(job.memory_bytes)} memory per task, member capacity {format_memory(memory)}"
        )
    if not wants:
        return None
    label = f" ({job.name})" if job.name else ""
    return f"ignored job {job.job_id}{label}: wants " + " and ".join(wants)


def summarise(pending: Iterable[PendingJob], capacity: Shape) -> Demand:
    by_shape: dict[Shape, int] = {}
    ignored: list[IgnoredJob] = []
    set_aside: dict[JobHold, list[int]] = {}
    for job in pending:
        hold = job.hold
        if hold is not None:
            set_aside.setdefault(hold, []).append(job.job_id)
            continue
        tasks = job.tasks
        if tasks == 0:
            continue
        message = oversize_message(job, capacity)
        if message is not None:
            ignored.append(IgnoredJob(job.job_id, message))
            continue
        by_shape[job.shape] = by_shape.get(job.shape, 0) + tasks
    return Demand(
        by_shape=by_shape,
        ignored=tuple(ignored),
        not_demand={hold: tuple(ids) for hold, ids in set_aside.items()},
    )
