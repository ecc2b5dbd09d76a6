"""The autoscaler's inputs and output as typed, immutable data; pure (no I/O).

The manager's control loop builds a `Snapshot` from what it observed (member registry, `qstat`,
`qhost`, its own in-flight operation and launch history), hands it with the `ScalerConfig` and the
current time to `manager.autoscaler.plan.plan`, and carries out the returned `Decision`.

Units: cores are SGE `static_cores` units (whole cores), memory is bytes with SGE's meaning of the
suffixes (2G = 2 * 1024**3). Every value is validated when it is built, so the planner can trust it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

GIB = 1024**3
DEFAULT_JOB_CORES = 1  # SGE complex static_cores default (seed: "static_cores (default: 1)")
DEFAULT_JOB_MEMORY_BYTES = 2 * GIB  # SGE complex static_mem default (seed: "static_mem (default: 2G)")
HARD_LIMIT = 50  # seed: "up to a predefined maximum (with a hard limit of 50)"

# Member lifecycle states (the manager's state machine, see DESIGN.md). Kept as plain strings so the
# planner depends on no other manager module.
REQUESTED, JOINING, READY = "REQUESTED", "JOINING", "READY"
DRAINING, DRAINED, TERMINATED = "DRAINING", "DRAINED", "TERMINATED"
LOST, INTERRUPTED = "LOST", "INTERRUPTED"
# Members that are, or are about to be, capacity for jobs.
LIVE_STATES = frozenset({REQUESTED, JOINING, READY})
# Members that died under us: replaced (static) and retired by the next operation.
DEAD_STATES = frozenset({LOST, INTERRUPTED})
# Members already on their way out.
LEAVING_STATES = frozenset({DRAINING, DRAINED})
MEMBER_STATES = LIVE_STATES | DEAD_STATES | LEAVING_STATES | {TERMINATED}

Shape = tuple[int, int]  # (cores, memory_bytes) of one task
TaskRange = tuple[int, int, int]  # SGE "start-stop:step", stop inclusive


class ScalerConfigError(ValueError):
    """The scaler configuration is inconsistent; the message lists every problem found."""


def format_memory(n_bytes: int) -> str:
    """Bytes in SGE's notation ("2G", "1.5G", "512M") for messages people read."""
    for suffix, unit in (("T", 1024**4), ("G", GIB), ("M", 1024**2), ("K", 1024)):
        if n_bytes >= unit:
            value = n_bytes / unit
            return f"{value:.0f}{suffix}" if value == int(value) else f"{value:.1f}{suffix}"
    return f"{n_bytes}B"


@dataclass(frozen=True)
class ScalerConfig:
    """The cluster's scaling policy and resource model.

    static: exactly `static_members` members. dynamic: between `min_members` and `max_members`,
    following the demand. `hard_limit` is the product's 50 (lowered only by tests).
    """

    mode: Literal["static", "dynamic"]
    member_cores: int
    member_memory_bytes: int
    static_members: int = 0
    min_members: int = 0
    max_members: int = 0
    hard_limit: int = HARD_LIMIT
    headroom_cores: int = 0
    headroom_memory_bytes: int = 0
    dedicated_manager: bool = False  # False: each member reserves 1 core for scheduling
    min_age_s: float = 300.0  # seed: "Cluster members will remain in the cluster for at least 300 seconds"
    idle_s: float = 300.0
    max_consecutive_failures: int = 3
    brake_backoff_s: float = 300.0
    # An operation that has not stabilised after this long is closed anyway (its members keep
    # counting towards max), so a launch that never reports back cannot stop the scaler for good.
    stabilise_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ScalerConfigError("invalid scaler configuration: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if self.mode not in ("static", "dynamic"):
            problems.append(f"mode must be 'static' or 'dynamic', got {self.mode!r}")
        if self.hard_limit < 1:
            problems.append(f"hard_limit must be at least 1, got {self.hard_limit}")
        if self.mode == "static" and not 0 <= self.static_members <= self.hard_limit:
            problems.append(
                f"static_members must be between 0 and the hard limit {self.hard_limit}, "
                f"got {self.static_members}"
            )
        if self.mode == "dynamic":
            if self.min_members < 0:
                problems.append(f"min_members must not be negative, got {self.min_members}")
            if self.min_members > self.max_members:
                problems.append(
                    f"min_members ({self.min_members}) must not exceed max_members ({self.max_members})"
                )
            if self.max_members > self.hard_limit:
                problems.append(
                    f"max_members ({self.max_members}) must not exceed the hard limit ({self.hard_limit})"
                )
        if self.member_cores < 1:
            problems.append(f"member_cores must be at least 1, got {self.member_cores}")
        if self.member_memory_bytes < 1:
            problems.append(f"member_memory_bytes must be positive, got {self.member_memory_bytes}")
        if self.headroom_cores < 0 or self.headroom_memory_bytes < 0:
            problems.append("headroom_cores and headroom_memory_bytes must not be negative")
        cores, memory = usable_capacity(self)
        if self.member_cores >= 1 and cores < 1:
            reserved = "" if self.dedicated_manager else " minus 1 core reserved for scheduling"
            problems.append(
                f"a member of {self.member_cores} cores minus headroom {self.headroom_cores}{reserved} "
                f"leaves {cores} cores for jobs; choose a larger resource model or less headroom"
            )
        if self.member_memory_bytes >= 1 and memory < 1:
            problems.append(
                f"member memory {format_memory(self.member_memory_bytes)} minus headroom "
                f"{format_memory(self.headroom_memory_bytes)} leaves no memory for jobs"
            )
        for name in ("min_age_s", "idle_s", "brake_backoff_s", "stabilise_timeout_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative, got {getattr(self, name)}")
        if self.max_consecutive_failures < 1:
            problems.append(
                f"max_consecutive_failures must be at least 1, got {self.max_consecutive_failures}"
            )
        return problems

    @property
    def floor(self) -> int:
        """Fewest live members the policy allows."""
        return self.static_members if self.mode == "static" else self.min_members

    @property
    def ceiling(self) -> int:
        """Most members (in any state but TERMINATED) the policy allows."""
        return self.static_members if self.mode == "static" else self.max_members


def usable_capacity(config: ScalerConfig) -> Shape:
    """What one member of the resource model offers to jobs: model - headroom - 1 scheduling core
    when there is no dedicated manager (seed: 2 x 4-core members → 6 usable cores)."""
    reserved = 0 if config.dedicated_manager else 1
    return (
        config.member_cores - config.headroom_cores - reserved,
        config.member_memory_bytes - config.headroom_memory_bytes,
    )


@dataclass(frozen=True)
class MemberView:
    """One member as the planner sees it. `capacity_*` is what SGE has configured for it (already
    usable); `free_*` is what is not consumed by running jobs. Times are Unix seconds."""

    member_id: str
    state: str
    capacity_cores: int = 0
    capacity_memory_bytes: int = 0
    free_cores: int = 0
    free_memory_bytes: int = 0
    running_jobs: int = 0
    joined_at: float | None = None  # None: has not joined yet
    idle_since: float | None = None  # None: busy (or never idle)
    in_sge: bool = False  # the exec host reports in qhost

    def __post_init__(self) -> None:
        if not self.member_id:
            raise ValueError("member_id must not be empty")
        if self.state not in MEMBER_STATES:
            raise ValueError(
                f"member {self.member_id}: unknown state {self.state!r} (one of {sorted(MEMBER_STATES)})"
            )
        numbers = (self.capacity_cores, self.capacity_memory_bytes, self.free_cores, self.free_memory_bytes)
        if min(numbers) < 0 or self.running_jobs < 0:
            raise ValueError(
                f"member {self.member_id}: capacities, free resources and job counts must be >= 0"
            )


class JobHold(StrEnum):
    """Why a pending job is not demand (it could not start even on an empty member)."""

    HELD = "held (hqw)"
    DEPENDENCY = "waiting on a dependency (-hold_jid)"
    ERROR = "in error state (Eqw)"
    NO_SCALE = "a PySpark – Remote executor slot (Remote uses existing members, never grows the cluster)"


@dataclass(frozen=True)
class PendingJob:
    """A pending SGE job; an array job keeps its task ranges, never a list of tasks.

    `cores`/`memory_bytes` are per task. No ranges and no `task_count` means a plain (1-task) job.
    """

    job_id: int
    name: str = ""
    owner: str = ""
    cores: int = DEFAULT_JOB_CORES
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    task_ranges: tuple[TaskRange, ...] = ()
    task_count: int | None = None
    held: bool = False
    waiting_on_dependency: bool = False
    error: bool = False
    no_scale: bool = False  # may use capacity that exists but never asks for more (Spark Remote slots)

    def __post_init__(self) -> None:
        # Every task occupies at least one SGE slot (the queue's slots follow static_cores), so a
        # request of 0 cores still takes one.
        if self.cores < 1:
            raise ValueError(f"job {self.job_id}: cores per task must be at least 1, got {self.cores}")
        if self.memory_bytes < 0:
            raise ValueError(f"job {self.job_id}: memory per task must not be negative")
        if self.task_count is not None and self.task_count < 0:
            raise ValueError(f"job {self.job_id}: task_count must not be negative")
        for start, stop, step in self.task_ranges:
            if start < 1 or stop < start or step < 1:
                raise ValueError(f"job {self.job_id}: bad task range {start}-{stop}:{step}")

    @classmethod
    def from_request(
        cls,
        job_id: int,
        *,
        cores: int | None,
        memory_bytes: int | None,
        name: str = "",
        owner: str = "",
        task_ranges: tuple[TaskRange, ...] = (),
        task_count: int | None = None,
        held: bool = False,
        waiting_on_dependency: bool = False,
        error: bool = False,
        no_scale: bool = False,
    ) -> PendingJob:
        """Apply SGE's complex defaults (1 core, 2G) to what the job requested (None = not requested)."""
        return cls(
            job_id=job_id,
            name=name,
            owner=owner,
            cores=DEFAULT_JOB_CORES if cores is None else max(cores, 1),
            memory_bytes=DEFAULT_JOB_MEMORY_BYTES if memory_bytes is None else memory_bytes,
            task_ranges=task_ranges,
            task_count=task_count,
            held=held,
            waiting_on_dependency=waiting_on_dependency,
            error=error,
            no_scale=no_scale,
        )

    @property
    def tasks(self) -> int:
        """Number of pending tasks, by arithmetic on the ranges (O(ranges), not O(tasks))."""
        if self.task_ranges:
            return sum((stop - start) // step + 1 for start, stop, step in self.task_ranges)
        return 1 if self.task_count is None else self.task_count

    @property
    def shape(self) -> Shape:
        return (self.cores, self.memory_bytes)

    @property
    def hold(self) -> JobHold | None:
        if self.error:
            return JobHold.ERROR
        if self.held:
            return JobHold.HELD
        if self.waiting_on_dependency:
            return JobHold.DEPENDENCY
        if self.no_scale:
            return JobHold.NO_SCALE
        return None


class OpKind(StrEnum):
    UP = "up"
    DOWN = "down"
    REPLACE = "replace"


@dataclass(frozen=True)
class OperationInFlight:
    """The scale operation the loop is carrying out. `member_ids` are the members it launched,
    `removed_ids` the ones it hands to the drain; `target` is the live member count it aims at."""

    kind: OpKind
    started_at: float
    target: int
    member_ids: tuple[str, ...] = ()
    removed_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchHistory:
    """Launch failures since the last successful launch (for the safety brake)."""

    consecutive_failures: int = 0
    last_failure_at: float | None = None

    def __post_init__(self) -> None:
        if self.consecutive_failures < 0:
            raise ValueError("consecutive_failures must not be negative")
        if self.consecutive_failures > 0 and self.last_failure_at is None:
            raise ValueError("last_failure_at is required when there were failures")


@dataclass(frozen=True)
class Snapshot:
    """What the loop observed. `members` are in SGE's fill order (host sequence number): the
    planner packs demand in that order, as SGE will place it."""

    members: tuple[MemberView, ...] = ()
    pending: tuple[PendingJob, ...] = ()
    in_flight: OperationInFlight | None = None
    history: LaunchHistory = field(default_factory=LaunchHistory)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for member in self.members:
            if member.member_id in seen:
                raise ValueError(f"member {member.member_id} appears twice in the snapshot")
            seen.add(member.member_id)


class Action(StrEnum):
    NONE = "none"
    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    REPLACE = "replace"  # retire dead members and launch new ones in one operation
    BRAKE = "brake"  # launches are needed but stopped after repeated failures


@dataclass(frozen=True)
class IgnoredJob:
    """A job too large for any member of the resource model: left pending, never scaled for."""

    job_id: int
    message: str


@dataclass(frozen=True)
class Decision:
    """What to do now. The loop launches `add_count` members and hands `remove_ids` to the drain.

    `needed_members`: new members the pending demand needs (before clamping to max).
    `target_members`: live members once the decision is carried out.
    `op_settled`: the snapshot's in-flight operation has stabilised (or timed out: `op_timed_out`)
    and may be closed.
    """

    action: Action
    reason: str
    add_count: int = 0
    remove_ids: tuple[str, ...] = ()
    needed_members: int = 0
    target_members: int = 0
    pending_by_shape: Mapping[Shape, int] = field(default_factory=dict)
    ignored: tuple[IgnoredJob, ...] = ()
    not_demand: Mapping[JobHold, tuple[int, ...]] = field(default_factory=dict)
    op_settled: bool = False
    op_timed_out: bool = False
