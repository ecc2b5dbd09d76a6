"""What Spark applications want → how many executor-slot jobs each should have in SGE (pure).

Every executor is one SGE job ("slot") requesting the executor's cores and memory as
`static_cores`/`static_mem`, named `spark-<kind>-<app id>`. A Remote - Dynamic application's
pending slots are ordinary SGE demand for the autoscaler's `plan()`; a Remote application's are
marked no-scale (they may use members that exist, never ask for more).

No I/O: the broker observes (master JSON, driver metrics, qstat), calls `plan_slots`, and acts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PREFIX = "spark-"
KINDS = ("remote", "dynamic")


def slot_job_name(kind: str, app_id: str) -> str:
    return f"{PREFIX}{kind}-{app_id}"


def parse_slot_job_name(name: str) -> tuple[str, str] | None:
    """(kind, app id) of a slot job's name, None for any other job."""
    if not name.startswith(PREFIX):
        return None
    kind, _, app_id = name[len(PREFIX):].partition("-")
    return (kind, app_id) if kind in KINDS and app_id else None


def is_no_scale(job_name: str) -> bool:
    parsed = parse_slot_job_name(job_name)
    return parsed is not None and parsed[0] == "remote"


@dataclass(frozen=True)
class AppWant:
    app_id: str
    name: str
    kind: str  # remote | dynamic
    cores: int
    memory_mb: int
    wanted: int | None  # executors it wants now; None: unknown this pass (leave its slots alone)
    user: str = ""  # the unix account its executor slots run as (the kernel's user)

    def describe(self) -> str:
        memory = f"{self.memory_mb // 1024}g" if self.memory_mb % 1024 == 0 else f"{self.memory_mb}m"
        label = f"{self.app_id} ({self.name})" if self.name else self.app_id
        return f"app {label} wants {self.wanted} executors of {self.cores} cores / {memory}"


@dataclass(frozen=True)
class SlotCount:
    running: int = 0
    pending: int = 0


@dataclass(frozen=True)
class SlotAction:
    app_id: str
    kind: str
    submit: int = 0  # new slots to submit
    cancel_pending: int = 0  # pending slots to delete


def remote_wanted(cores: int, memory_mb: int, members: Iterable[tuple[int, int]]) -> int:
    """A Remote application uses what exists: as many executors as the members' capacities hold
    (members as (usable cores, usable memory MiB))."""
    if cores < 1 or memory_mb < 1:
        return 0
    return sum(min(c // cores, m // memory_mb) for c, m in members)


def plan_slots(wants: Iterable[AppWant], slots: Mapping[str, SlotCount]) -> list[SlotAction]:
    """Submit what is missing, cancel pending slots nobody wants any more (running ones end by
    themselves once their executor is released). Applications that are gone (slots but no want)
    lose their pending slots."""
    actions: list[SlotAction] = []
    known = set()
    for want in wants:
        known.add(want.app_id)
        if want.wanted is None:
            continue
        have = slots.get(want.app_id, SlotCount())
        total = have.running + have.pending
        if want.wanted > total:
            actions.append(SlotAction(want.app_id, want.kind, submit=want.wanted - total))
        elif want.wanted < total and have.pending:
            actions.append(SlotAction(want.app_id, want.kind, cancel_pending=min(have.pending, total - want.wanted)))
    for app_id, have in sorted(slots.items()):
        if app_id not in known and have.pending:
            actions.append(SlotAction(app_id, "", cancel_pending=have.pending))
    return actions
