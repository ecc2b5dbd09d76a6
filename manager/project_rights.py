"""Upload rights on the manager node when it is also the workspace node (the local cluster): without
them, /data/project is a read-only bind mount over itself in the node's mount namespace, so writes
fail with EROFS there as on every member. A marker file names the mount we made, so only it is ever
removed (by the next cluster start with upload rights, or by `bench-cluster down`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from common.logging import get_logger

log = get_logger("project-rights")

MARKER = Path("/run/bench-cluster/project-read-only")
TIMEOUT_S = 30


def _mounted(path: str) -> bool:
    return any(line.split()[4] == path for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")


def apply(data_root: Path, upload: bool, marker: Path = MARKER) -> None:
    project = str(data_root / "project")
    ours = marker.exists() and marker.read_text().strip() == project and _mounted(project)
    if upload:
        release(marker)
        return
    if ours:
        return
    Path(project).mkdir(parents=True, exist_ok=True)
    _run(["mount", "--bind", project, project])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(project + "\n")
    _run(["mount", "-o", "remount,bind,ro", project])
    log.info("project data read-only on this node (no upload rights)", path=project)


def release(marker: Path = MARKER) -> bool:
    """Remove the read-only mount we made, if any. Returns whether one was removed."""
    try:
        project = marker.read_text().strip()
    except FileNotFoundError:
        return False
    removed = False
    if project and _mounted(project):
        _run(["umount", project])
        removed = True
        log.info("project data writable again on this node", path=project)
    marker.unlink(missing_ok=True)
    return removed
