"""The chaos soak's figures from what it observed (pure; benchmarks/chaos.py does the I/O).

Every task writes `<results>/<job>.<task>.<host>.<pid>`: a line with its key and a deterministic body,
then the sha256 of that line. A file whose checksum does not match is a torn result; two valid files
of one task with different bodies are a task "run twice with different results".
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Result:
    key: str  # "<job>.<task>"
    body: str
    valid: bool


def parse_result(path: Path) -> Result:
    key = ".".join(path.name.split(".")[:2])
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return Result(key, "", False)
    if len(lines) != 2:
        return Result(key, "\n".join(lines), False)
    return Result(key, lines[0], hashlib.sha256((lines[0] + "\n").encode()).hexdigest() == lines[1])


@dataclass
class Summary:
    minutes: float
    seed: int
    tasks_submitted: int
    finished_ok: int
    lost: int
    run_twice_different: int
    torn_results: int
    members_leaked: int
    mounts_stale: int
    queues_disabled: int
    faults: dict[str, int] = field(default_factory=dict)
    recovery_s: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.run_twice_different or self.members_leaked or self.mounts_stale
                    or self.queues_disabled)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def task_outcomes(submitted: Iterable[str], results: Iterable[Result]) -> tuple[int, int, int, list[str]]:
    """(finished ok, run twice with different results, torn, lost keys) for the submitted task keys."""
    bodies: dict[str, set[str]] = {}
    torn = 0
    for result in results:
        if result.valid:
            bodies.setdefault(result.key, set()).add(result.body)
        else:
            torn += 1
    wanted = set(submitted)
    ok = sum(1 for key in wanted if bodies.get(key))
    twice = sum(1 for key in wanted if len(bodies.get(key, ())) > 1)
    lost = sorted(key for key in wanted if not bodies.get(key))
    return ok, twice, torn, lost


def recovery_figures(samples: Mapping[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50 / max / count of the recovery times per kind of fault (a failed recovery counts as inf)."""
    return {kind: {"n": len(times), "p50_s": round(statistics.median(times), 2), "max_s": round(max(times), 2)}
            for kind, times in sorted(samples.items()) if times}


def leaked(provider_ids: set[str], registry_ids: set[str]) -> list[str]:
    """Provider nodes the registry does not know, and live registry members without a node."""
    return sorted(f"{node} (provider only)" for node in provider_ids - registry_ids) + \
        sorted(f"{member} (registry only)" for member in registry_ids - provider_ids)
