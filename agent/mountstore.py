"""The set of mounts an agent should have, remembered across agent restarts (one JSON file)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STATE_FILE = "mounts.json"


def load_specs(state_dir: Path) -> list[dict[str, str]]:
    """The remembered specs as dicts with mount_path/source/mode; an unreadable file means none."""
    path = state_dir / STATE_FILE
    try:
        raw: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); fix or remove it") from exc
    specs = raw.get("mounts", []) if isinstance(raw, dict) else []
    out = []
    for item in specs:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("mount_path", "source", "mode")):
            out.append({k: item[k] for k in ("mount_path", "source", "mode")})
    return out


def save_specs(state_dir: Path, specs: Iterable[dict[str, str]]) -> None:
    """Write the whole set atomically (write a temporary file, fsync, rename) so a crash never leaves half."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = state_dir / f".{STATE_FILE}.tmp"
    with open(tmp, "w") as out:
        json.dump({"mounts": sorted(specs, key=lambda s: s["mount_path"])}, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
