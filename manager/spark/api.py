"""Reading Spark's own JSON: the master's `/json/` (workers, applications) and a driver's
`/metrics/json/` (what a dynamic-allocation application asks for). Blocking urllib with a timeout;
callers run it in a worker thread."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 3.0
TARGET_GAUGE = "ExecutorAllocationManager.executors.numberTargetExecutors"


class SparkUnavailable(Exception):
    """Spark's HTTP endpoint did not answer in time or answered nonsense."""


@dataclass(frozen=True)
class Worker:
    worker_id: str
    host: str
    state: str
    cores: int
    cores_used: int
    memory_mb: int
    memory_used_mb: int


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    user: str
    state: str
    cores_granted: int
    memory_per_executor_mb: int


@dataclass(frozen=True)
class MasterState:
    url: str
    status: str
    workers: tuple[Worker, ...]
    apps: tuple[App, ...]


def get_json(url: str, timeout_s: float = TIMEOUT_S) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        raise SparkUnavailable(f"{url}: {exc}") from exc


def master_state(ui_url: str, timeout_s: float = TIMEOUT_S) -> MasterState:
    raw = get_json(ui_url.rstrip("/") + "/json/", timeout_s)
    workers = tuple(
        Worker(worker_id=w.get("id", ""), host=w.get("host", ""), state=w.get("state", ""),
               cores=int(w.get("cores", 0)), cores_used=int(w.get("coresused", 0)),
               memory_mb=int(w.get("memory", 0)), memory_used_mb=int(w.get("memoryused", 0)))
        for w in raw.get("workers", []))
    apps = tuple(
        App(app_id=a.get("id", ""), name=a.get("name", ""), user=a.get("user", ""), state=a.get("state", ""),
            cores_granted=int(a.get("cores", 0)), memory_per_executor_mb=int(a.get("memoryperexecutor", 0)))
        for a in raw.get("activeapps", []))
    return MasterState(url=raw.get("url", ""), status=raw.get("status", ""), workers=workers, apps=apps)


def target_executors(driver_ui_url: str, timeout_s: float = TIMEOUT_S) -> int | None:
    """What a dynamic-allocation driver currently asks for (None: not exposed, e.g. allocation off)."""
    raw = get_json(driver_ui_url.rstrip("/") + "/metrics/json/", timeout_s)
    for name, gauge in raw.get("gauges", {}).items():
        if name.endswith(TARGET_GAUGE):
            return int(gauge.get("value", 0))
    return None
