"""Executor defaults that fit the cluster's members (pure).

The seed's executor is 4 cores / 4g (`spark.task.cpus 1`, `spark.executor.cores 4`,
`spark.executor.memory 4g`); a member runs as many as its usable capacity allows. A member smaller
than that gets an executor of its own size, and the written file says why.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED_EXECUTOR_CORES = 4
SEED_EXECUTOR_MEMORY_MB = 4096
MIN_EXECUTOR_MEMORY_MB = 512  # below this a JVM executor with a Python worker does not run reliably
MEMORY_STEP_MB = 128
MIB = 1024**2


@dataclass(frozen=True)
class ExecutorSize:
    cores: int
    memory_mb: int
    per_member: int  # executors one member runs at once
    note: str = ""  # why this is not the seed's default ("" when it is)

    @property
    def memory(self) -> str:
        return f"{self.memory_mb // 1024}g" if self.memory_mb % 1024 == 0 else f"{self.memory_mb}m"


def executor_size(usable_cores: int, usable_memory_bytes: int) -> ExecutorSize:
    """The seed's executor, shrunk to fit a member with this usable capacity."""
    if usable_cores < 1:
        raise ValueError(f"a member needs at least 1 usable core for Spark (got {usable_cores})")
    usable_mb = usable_memory_bytes // MIB
    cores = min(SEED_EXECUTOR_CORES, usable_cores)
    per_member = max(usable_cores // cores, 1)
    memory_mb = min(SEED_EXECUTOR_MEMORY_MB, usable_mb // per_member)
    memory_mb -= memory_mb % MEMORY_STEP_MB
    if memory_mb < MIN_EXECUTOR_MEMORY_MB:
        raise ValueError(f"a member's usable memory ({usable_mb} MiB) leaves less than "
                         f"{MIN_EXECUTOR_MEMORY_MB} MiB per executor; choose a larger resource model")
    size = ExecutorSize(cores, memory_mb, per_member)
    if cores == SEED_EXECUTOR_CORES and memory_mb == SEED_EXECUTOR_MEMORY_MB:
        return size
    return ExecutorSize(cores, memory_mb, per_member, note=(
        f"members offer {usable_cores} usable core(s) and {usable_mb} MiB, less than the default executor "
        f"of {SEED_EXECUTOR_CORES} cores / {SEED_EXECUTOR_MEMORY_MB // 1024}g, so executors are "
        f"{cores} core(s) / {size.memory} ({per_member} per member)"))


def fits(cores: int, memory_mb: int, usable_cores: int, usable_memory_bytes: int) -> int:
    """How many executors of this shape one member holds (0: bigger than a member)."""
    if cores < 1 or memory_mb < 1:
        return 0
    return min(usable_cores // cores, (usable_memory_bytes // MIB) // memory_mb)
