"""Appending to /data/logs/sge-scaler.log: one JSON object a line, for the SGE scaler's decisions and
the Spark broker's demand lines alike. A log that cannot be written is said loudly, never fatal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.logging import get_logger

log = get_logger("scaler-log")


def append(path: Path, record: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as exc:
        log.error("scaler log not writable", path=str(path), error=str(exc))
