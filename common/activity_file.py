"""The activity log file (`/data/logs/activity.log`): one JSON object a line, appended, never rewritten.

Shared by the manager (user actions) and every node's egress guard (refused connections): each entry
is one `write()` on a file opened with O_APPEND, so writers on different nodes never interleave
within a line. Only the manager rotates, by renaming whole files (`activity.log.1` … `.N`) once the
live file passes its bound; entries are never edited. A query reads the kept files newest first.
"""

from __future__ import annotations

import calendar
import json
import os
import time
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


def _lines_newest_first(files: list[Path]) -> Iterator[str]:
    for file in reversed(files):
        try:
            with file.open(errors="replace") as handle:
                lines = handle.readlines()  # a file is bounded by MAX_BYTES
        except FileNotFoundError:
            continue  # rotated away while we read
        yield from reversed(lines)


def _needles(value: str, prefix: bool = False) -> tuple[str, ...]:
    """Text a line must contain for one of its fields to equal (or, for `prefix`, start with) `value`: its
    JSON encoding as `append` writes it (and without ASCII escapes, for other writers). Checking it
    before parsing skips most lines of a large log cheaply."""
    encoded = {json.dumps(value), json.dumps(value, ensure_ascii=False)}
    return tuple(sorted(e[:-1] if prefix else e for e in encoded))


# Entries from several nodes are appended in about the order they happened: a query for entries since T
# stops reading (newest first) after this many entries in a row older than T by more than the slack (one
# entry from a node with a wrong clock must not cut the answer short).
ORDER_SLACK_S = 300.0
OLDER_IN_A_ROW = 200


def query(path: Path, q: ActivityQuery, keep: int = KEEP_FILES) -> list[dict[str, Any]]:
    """Matching entries, oldest first; the newest `q.limit` of them. Read newest first, so a query stops
    once it has `limit` entries or has gone back past `since`, instead of parsing the whole log (up to
    ~144 MiB) each time."""
    required = [n for n in (_needles(q.user) if q.user else (), _needles(q.action, prefix=True) if q.action else ())
                if n]
    newest: list[dict[str, Any]] = []
    older_in_a_row = 0
    for line in _lines_newest_first(_kept_files(path, keep)):
        if any(not any(n in line for n in alternatives) for alternatives in required):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write: skip it, keep the rest
        if not isinstance(record, dict):
            continue
        if q.since_unix and entry_time(record) < q.since_unix - ORDER_SLACK_S:
            older_in_a_row += 1
            if older_in_a_row >= OLDER_IN_A_ROW:
                break
            continue
        older_in_a_row = 0
        if q.matches(record):
            newest.append(record)
            if len(newest) >= max(q.limit, 1):
                break
    return newest[::-1]
