"""Upload rights on one node: without them, /data/project is a read-only bind mount over itself in
the node's mount namespace, so writes fail with EROFS. Applied by each node's agent
(agent/restrictions.py). A marker file (in the agent's state directory) names the mount we made, so
only it is ever removed: by the agent when upload rights come back, or by `bench-cluster down` for
the manager node of a local cluster, whose mount namespace is the host's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from common.logging import get_logger

log = get_logger("project-rights")

MARKER_NAME = "project-read-only"
TIMEOUT_S = 30


def _mounted(path: str) -> bool:
    return any(line.split()[4] == path for line in Path("/proc/self/mountinfo").read_text().splitlines())


# mount/umount may need to run in another mount namespace (the agent's hostns.host_command under systemd)
Wrap = Callable[..., tuple[str, ...]]


def _plain(*argv: str) -> tuple[str, ...]:
    return argv


def _run(argv: tuple[str, ...]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")


def apply(data_root: Path, upload: bool, marker: Path, wrap: Wrap = _plain) -> None:
    project = str(data_root / "project")
    ours = marker.exists() and marker.read_text().strip() == project and _mounted(project)
    if upload:
        release(marker, wrap)
        return
    if ours:
        return
    Path(project).mkdir(parents=True, exist_ok=True)
    _run(wrap("mount", "--bind", project, project))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(project + "\n")
    _run(wrap("mount", "-o", "remount,bind,ro", project))
    log.info("project data read-only on this node (no upload rights)", path=project)


def release(marker: Path, wrap: Wrap = _plain) -> bool:
    """Remove the read-only mount we made, if any. Returns whether one was removed."""
    try:
        project = marker.read_text().strip()
    except FileNotFoundError:
        return False
    removed = False
    if project and _mounted(project):
        _run(wrap("umount", project))
        removed = True
        log.info("project data writable again on this node", path=project)
    marker.unlink(missing_ok=True)
    return removed
