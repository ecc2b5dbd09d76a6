"""What the manager knows about Sun Grid Engine: jobs and exec hosts as immutable values."""

from __future__ import annotations

from dataclasses import dataclass

TaskRange = tuple[int, int, int]  # (start, stop, step), stop inclusive as SGE writes it: 5-40:1


class SgeError(Exception):
    """An SGE command failed or refused; `stderr` is what SGE said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr

    def __str__(self) -> str:
        return f"{self.message}: {self.stderr.strip()}" if self.stderr.strip() else self.message


def range_task_count(task_range: TaskRange) -> int:
    start, stop, step = task_range
    return 0 if stop < start else (stop - start) // step + 1


@dataclass(frozen=True)
class SgeJob:
    """One line of `qstat -r`: a running task (or running non-array job), or a pending job whose
    remaining array tasks are kept as ranges, never expanded."""

    job_id: int
    name: str
    owner: str
    state: str  # SGE's state letters: qw, hqw, r, t, Eqw, dr, ...
    requested_cores: int | None = None  # -l static_cores=..., None when not requested
    requested_mem_bytes: int | None = None  # -l static_mem=..., None when not requested
    pending_tasks: tuple[TaskRange, ...] = ()  # array jobs only
    predecessors: tuple[int, ...] = ()  # -hold_jid jobs not yet finished
    host: str | None = None  # running: the exec host
    task_id: int | None = None  # running array task

    @property
    def held(self) -> bool:
        return "h" in self.state

    @property
    def error(self) -> bool:
        return "E" in self.state

    @property
    def running(self) -> bool:
        return self.host is not None and ("r" in self.state or "t" in self.state)

    @property
    def pending(self) -> bool:
        return "qw" in self.state

    @property
    def waiting_on_dependency(self) -> bool:
        return bool(self.predecessors)

    @property
    def is_array(self) -> bool:
        return bool(self.pending_tasks) or self.task_id is not None

    @property
    def pending_task_count(self) -> int:
        """Tasks this pending line stands for (1 for a plain job)."""
        if not self.pending:
            return 0
        return sum(range_task_count(r) for r in self.pending_tasks) if self.pending_tasks else 1


@dataclass(frozen=True)
class SgeHost:
    """An exec host as qhost and qstat -f show it."""

    name: str
    reachable: bool  # execd reports load and its queue instance is not in state 'u'
    static_cores: int | None  # configured complex_values (None when not set)
    static_mem_bytes: int | None
    static_cores_free: int | None  # what is left for new jobs (qhost -F)
    static_mem_free_bytes: int | None
    slots_used: int
    slots_total: int
    running_tasks: int
    queue_state: str = ""  # qstat -f states of all.q@host: d (disabled), u (unknown), a, E ...

    @property
    def disabled(self) -> bool:
        return "d" in self.queue_state
