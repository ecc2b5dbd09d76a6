"""The three spark-defaults.conf files: what the cluster writes, how it is read back, and the rule
that a user's edit is never silently overwritten.

The cluster remembers the SHA-256 of what it last wrote (`.bench-written` next to the file). If the
file on disk no longer has that hash, a person edited it: the cluster leaves it alone and puts what
it would have written next to it (`spark-defaults.conf.cluster`) so the user can compare.

Users edit these files (as themselves, not root): the cluster writes them group-writable for an editors'
group (the manager's `spark_conf_group`) in setgid directories, and readable by every user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchspark.paths import CONF_NAME, DISPLAY_NAMES, conf_file
from benchspark.sizing import ExecutorSize

WRITTEN_HASH = ".bench-written"
PROPOSED_SUFFIX = ".cluster"
_SIZE = re.compile(r"^\d+[kmgtp]?b?$", re.IGNORECASE)
_INT_KEYS = ("spark.executor.cores", "spark.task.cpus", "spark.dynamicAllocation.minExecutors",
             "spark.dynamicAllocation.maxExecutors", "spark.dynamicAllocation.initialExecutors")
_SIZE_KEYS = ("spark.executor.memory", "spark.driver.memory")


class ConfError(ValueError):
    """A spark-defaults.conf line the kernel cannot use; the message names the file and line."""


@dataclass(frozen=True)
class ClusterFacts:
    """What the cluster knows and writes into the files."""

    master_url: str  # spark://HOST:PORT ("" when the cluster has no Spark master)
    driver_host: str  # the workspace node's address members can reach
    python: str  # interpreter for drivers and executors' Python workers
    executor: ExecutorSize
    max_executors: int  # dynamic allocation ceiling: every member of the largest cluster full


def settings_for(kind: str, facts: ClusterFacts) -> tuple[dict[str, str], list[str]]:
    """(settings, comment lines) for one kernel kind."""
    s: dict[str, str] = {
        "spark.task.cpus": "1",
        "spark.executor.cores": str(facts.executor.cores),
        "spark.executor.memory": facts.executor.memory,
        "spark.pyspark.python": facts.python,
        "spark.pyspark.driver.python": facts.python,
        "spark.ui.showConsoleProgress": "false",
    }
    comments = [f"{DISPLAY_NAMES[kind]}: written by the bench cluster. Edit freely; a change applies at the next",
                "kernel start. The cluster never overwrites a file you edited (it writes",
                f"{CONF_NAME}{PROPOSED_SUFFIX} next to it instead)."]
    if facts.executor.note:
        comments.append("Executor size: " + facts.executor.note + ".")
    if kind == "local":
        s["spark.master"] = "local[*]"
        s["spark.driver.host"] = "127.0.0.1"
        return s, comments
    s.update({
        "spark.master": facts.master_url,
        "spark.driver.host": facts.driver_host,
        "spark.driver.bindAddress": facts.driver_host,
        # Executors on a member being drained or interrupted get no new tasks and hand theirs back.
        "spark.decommission.enabled": "true",
        "spark.network.timeout": "120s",
        # The application UI is reached through the master and web access's /spark/ (issue 19).
        "spark.ui.reverseProxy": "true",
        "spark.ui.reverseProxyUrl": "/spark",
    })
    if kind == "remote":
        s["spark.dynamicAllocation.enabled"] = "false"
        comments.append("Remote uses the members that exist; it never grows a dynamic cluster.")
        return s, comments
    s.update({
        "spark.dynamicAllocation.enabled": "true",
        # No external shuffle service on members: executors holding shuffle data stay until it is
        # no longer needed or the shuffle timeout passes, so idle members can still be released.
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.timeout": "120s",
        "spark.dynamicAllocation.minExecutors": "0",
        "spark.dynamicAllocation.initialExecutors": "0",
        "spark.dynamicAllocation.maxExecutors": str(max(facts.max_executors, 1)),
        "spark.dynamicAllocation.executorIdleTimeout": "30s",
        "spark.dynamicAllocation.cachedExecutorIdleTimeout": "300s",
        "spark.dynamicAllocation.schedulerBacklogTimeout": "1s",
    })
    comments.append("Remote - Dynamic: executors it asks for grow a dynamic cluster; idle ones let it shrink.")
    return s, comments


def render(settings: Mapping[str, str], comments: list[str]) -> str:
    width = max(len(k) for k in settings) + 1
    lines = [f"# {c}" for c in comments] + [""]
    lines += [f"{key.ljust(width)}{value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def parse(text: str, path: Path | str) -> dict[str, str]:
    """Spark's `key value` lines (or `key=value`), comments with #. Anything else is refused with
    the line named, because Spark would silently ignore or misread it."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(\S+?)\s*(?:=|\s)\s*(.*)$", line)
        key, value = (match.group(1), match.group(2).strip()) if match else (line, "")
        where = f"{path} line {number}: {raw.strip()!r}"
        if not key.startswith("spark."):
            raise ConfError(f"{where}: a setting must start with 'spark.' (format: 'spark.key value')")
        if not value:
            raise ConfError(f"{where}: {key} has no value (format: '{key} VALUE')")
        if key in _INT_KEYS and not value.isdigit():
            raise ConfError(f"{where}: {key} must be a whole number, not {value!r}")
        if key in _SIZE_KEYS and not _SIZE.match(value):
            raise ConfError(f"{where}: {key} must be a size such as 4g or 512m, not {value!r}")
        settings[key] = value
    return settings


def memory_mb(value: str) -> int:
    """Spark's JVM size notation (4g, 512m, 1024 = MiB) in MiB."""
    match = re.match(r"^(\d+)([kmgtp]?)b?$", value.strip().lower())
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = int(match.group(1)), match.group(2) or "m"
    factor = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}[unit]
    return int(number * factor)


@dataclass(frozen=True)
class WriteResult:
    path: Path
    written: bool  # False: the user's edit was kept
    proposed: Path | None = None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_cluster_file(path: Path, text: str, editors_gid: int | None = None) -> WriteResult:
    """Write `text` unless the user edited the file since the cluster last wrote it.

    `editors_gid`: the group whose members may edit the file (its directory setgid and group-writable,
    so editors that replace the file work too); None: the writer alone, readable by all."""
    editors_gid = _settle_directory(path.parent, editors_gid)
    marker = path.parent / WRITTEN_HASH
    data = text.encode()
    if path.exists():
        current = path.read_bytes()
        recorded = marker.read_text().strip() if marker.exists() else ""
        if _sha(current) == _sha(data):
            if recorded != _sha(data):
                _atomic_write(marker, (_sha(data) + "\n").encode())
            _settle_file(path, editors_gid)
            return WriteResult(path, written=False)
        if recorded != _sha(current):
            proposed = path.with_name(path.name + PROPOSED_SUFFIX)
            _atomic_write(proposed, data)
            return WriteResult(path, written=False, proposed=proposed)
    _atomic_write(path, data, 0o644 if editors_gid is None else 0o664)
    _atomic_write(marker, (_sha(data) + "\n").encode())
    return WriteResult(path, written=True)


def _settle_directory(directory: Path, editors_gid: int | None) -> int | None:
    """Create `directory` (and missing parents 0755) and give it its mode every time, whatever the writer's
    umask: the packaged manager runs with UMask=0027 and the kernels reading these files as ordinary users,
    and the editors' group may appear after the directory did. Returns the editors' group in effect."""
    missing = []
    parent = directory
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        os.chmod(created, 0o755)
    shared = editors_gid is not None and _take_group(directory, editors_gid)
    # setgid: files created inside (editors' saves, the cluster's) take the editors' group
    mode = 0o2775 if shared else 0o755
    current = stat.S_IMODE(directory.stat().st_mode)
    if current != mode:
        try:
            os.chmod(directory, mode)
        except PermissionError:
            # the packaged manager may not set the setgid bit (RestrictSUIDSGID=): the image makes these
            # directories 2775 itself; a directory it did not make is group-writable without the bit
            if current != mode & 0o777:
                os.chmod(directory, mode & 0o777)
    return editors_gid if shared else None


def _settle_file(path: Path, editors_gid: int | None) -> None:
    """The cluster's unchanged file takes the editors' group and mode (the group may have changed)."""
    shared = editors_gid is not None and _take_group(path, editors_gid)
    mode = 0o664 if shared else 0o644
    if stat.S_IMODE(path.stat().st_mode) != mode:
        with contextlib.suppress(PermissionError):  # a user's own file (saved by replacing ours): theirs
            os.chmod(path, mode)


def _take_group(path: Path, gid: int) -> bool:
    """Give `path` the group `gid`; False when the writer may not (not its file, or not in that group)."""
    if path.stat().st_gid != gid:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            return False
    return True


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_all(facts: ClusterFacts, data_root: str | Path | None = None,
              editors_gid: int | None = None) -> list[WriteResult]:
    results = []
    for kind in ("local", "remote", "dynamic"):
        settings, comments = settings_for(kind, facts)
        results.append(write_cluster_file(conf_file(kind, data_root), render(settings, comments), editors_gid))
    return results
