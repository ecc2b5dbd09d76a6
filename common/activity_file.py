"""The activity log file (`/data/logs/activity.log`): one JSON object a line, appended, never rewritten.

Shared by the manager (user actions) and every node's egress guard (refused connections): each entry
is one `write()` on a file opened with O_APPEND, so writers on different nodes never interleave
within a line. Only the manager rotates, by renaming whole files (`activity.log.1` … `.N`) once the
live file passes its bound; entries are never edited. A query reads the kept files oldest first.
"""

from __future__ import annotations

import calendar
import json
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_BYTES = 16 << 20  # the live file's bound before it is rotated
KEEP_FILES = 8  # rotated files kept beside the live one: at most ~144 MiB in all
MAX_ENTRY_BYTES = 4000  # one write() below the page size: appends from several nodes stay whole lines


def entry(user: str, action: str, result: str, at: float | None = None, **details: Any) -> dict[str, Any]:
    return {"time": time.strftime(TIME_FORMAT, time.gmtime(time.time() if at is None else at)), "user": user,
            "action": action, "result": result, **details}


def append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True)
    if len(line.encode()) > MAX_ENTRY_BYTES:
        line = json.dumps({**{k: record[k] for k in ("time", "user", "action", "result") if k in record},
                           "truncated": line[:MAX_ENTRY_BYTES // 2]}, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def rotate_if_needed(path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> bool:
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for index in range(keep, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if index == keep:
            older.unlink(missing_ok=True)
        elif older.exists():
            older.rename(path.with_name(f"{path.name}.{index + 1}"))
    path.rename(path.with_name(f"{path.name}.1"))
    return True


def entry_time(record: dict[str, Any]) -> float:
    try:
        return float(calendar.timegm(time.strptime(str(record.get("time", "")), TIME_FORMAT)))
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class ActivityQuery:
    since_unix: float = 0.0
    user: str = ""
    action: str = ""  # the action, or its leading words: "cluster" matches "cluster scale"
    limit: int = 1000

    def matches(self, record: dict[str, Any]) -> bool:
        if self.user and record.get("user") != self.user:
            return False
        if self.action:
            action = str(record.get("action", ""))
            if action != self.action and not action.startswith(self.action + " "):
                return False
        return not self.since_unix or entry_time(record) >= self.since_unix


def _kept_files(path: Path, keep: int) -> list[Path]:
    rotated = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)]
    return [p for p in (*rotated, path) if p.exists()]


def _records(files: list[Path]) -> Iterator[dict[str, Any]]:
    for file in files:
        try:
            with file.open(errors="replace") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash mid-write: skip it, keep the rest
                    if isinstance(record, dict):
                        yield record
        except FileNotFoundError:
            continue  # rotated away while we read


def query(path: Path, q: ActivityQuery, keep: int = KEEP_FILES) -> list[dict[str, Any]]:
    """Matching entries, oldest first; the newest `q.limit` of them."""
    newest: deque[dict[str, Any]] = deque(maxlen=max(q.limit, 1))
    for record in _records(_kept_files(path, keep)):
        if q.matches(record):
            newest.append(record)
    return list(newest)
