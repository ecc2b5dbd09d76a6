"""The activity/audit log: who did what, when, with what result — one JSON object a line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common.logging import get_logger

log = get_logger("activity")


class ActivityLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, user: str, action: str, result: str, **details: Any) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": user, "action": action,
                 "result": result, **details}
        log.info("activity", **entry)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError as exc:  # the audit trail must not take the manager down; say it loudly
            log.error("activity log not writable", path=str(self.path), error=str(exc))
