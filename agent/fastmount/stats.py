"""Counters of one mount worker, published to a JSON file the supervising agent reads."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Counters:
    bytes_read: int = 0
    errors: int = 0
    opens: int = 0


def write_stats(path: Path, counters: Counters, pid: int, engine: str, inodes: int | None = None) -> None:
    """Replace the stats file atomically, so a reader never sees half a file. `inodes`: how many inodes
    the worker remembers for the kernel now (a gauge, not a counter; the native engine's)."""
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    gauges = {} if inodes is None else {"inodes": inodes}
    tmp.write_text(json.dumps({**asdict(counters), **gauges, "pid": pid, "engine": engine}))
    os.replace(tmp, path)


def read_stats(path: Path) -> Counters | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        return Counters(bytes_read=int(raw["bytes_read"]), errors=int(raw["errors"]), opens=int(raw["opens"]))
    except (KeyError, TypeError, ValueError):
        return None
