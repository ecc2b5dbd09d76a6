"""Samples for the web page's plots, kept in SQLite with bounded retention.

Every SAMPLE_INTERVAL_S the manager records members by state, pending demand (cores), running
tasks and usable cores; scale operations come from the decisions table. Retention is RETENTION_S
(48 h, the issue asks for at least 24 h): older samples are pruned at each write, so the table
stays near 48 h / 10 s = 17,280 rows. member_hours() is pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from manager.store import Store

SAMPLE_INTERVAL_S = 10.0
RETENTION_S = 48 * 3600.0
SCALE_ACTIONS = ("scale-up", "scale-down", "replace")


@dataclass(frozen=True)
class Sample:
    at: float
    members: dict[str, int] = field(default_factory=dict)  # state -> count (members only)
    pending_cores: int = 0
    running_tasks: int = 0
    usable_cores: int = 0
    ready_standard: int = 0
    ready_economy: int = 0


class History:
    def __init__(self, store: Store, retention_s: float = RETENTION_S) -> None:
        self._store = store
        self.retention_s = retention_s

    def add(self, sample: Sample) -> None:
        data = json.dumps({k: v for k, v in asdict(sample).items() if k != "at"}, sort_keys=True)
        self._store.execute("INSERT OR REPLACE INTO web_history (at, sample) VALUES (?, ?)", (sample.at, data))
        self._store.execute("DELETE FROM web_history WHERE at < ?", (sample.at - self.retention_s,))

    def since(self, at: float) -> list[Sample]:
        rows = self._store.execute("SELECT at, sample FROM web_history WHERE at >= ? ORDER BY at", (at,))
        return [Sample(at=r["at"], **json.loads(r["sample"])) for r in rows]

    def scale_operations(self, at: float) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(SCALE_ACTIONS))
        rows = self._store.execute(f"SELECT at, action, count, member_ids, reason FROM decisions "
                                   f"WHERE at >= ? AND action IN ({marks}) ORDER BY id", (at, *SCALE_ACTIONS))
        return [{"at": r["at"], "action": r["action"], "count": r["count"],
                 "members": json.loads(r["member_ids"]), "reason": r["reason"]} for r in rows]


def member_hours(samples: Iterable[Sample], max_gap_s: float = 3 * SAMPLE_INTERVAL_S) -> dict[str, float]:
    """READY member-hours by mode: each sample's count holds until the next sample, but never for
    longer than max_gap_s (a manager that was down did not see members, so it does not bill them)."""
    hours = {"standard": 0.0, "economy": 0.0}
    previous: Sample | None = None
    for sample in samples:
        if previous is not None:
            span = min(sample.at - previous.at, max_gap_s) / 3600.0
            hours["standard"] += previous.ready_standard * span
            hours["economy"] += previous.ready_economy * span
        previous = sample
    return hours
