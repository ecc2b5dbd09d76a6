"""The activity/audit log: who did what, when, with what result — one JSON object a line
(file format, rotation and queries: common/activity_file.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import activity_file
from common.logging import get_logger

log = get_logger("activity")


class ActivityLog:
    def __init__(self, path: Path, max_bytes: int = activity_file.MAX_BYTES,
                 keep: int = activity_file.KEEP_FILES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    def record(self, user: str, action: str, result: str, **details: Any) -> None:
        entry = activity_file.entry(user, action, result, **details)
        log.info("activity", **entry)
        try:
            activity_file.rotate_if_needed(self.path, self.max_bytes, self.keep)
            activity_file.append(self.path, entry)
        except OSError as exc:  # the audit trail must not take the manager down; say it loudly
            log.error("activity log not writable", path=str(self.path), error=str(exc))

    def query(self, q: activity_file.ActivityQuery) -> list[dict[str, Any]]:
        return activity_file.query(self.path, q, self.keep)
