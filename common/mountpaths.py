"""Validation of a fast-mount request, shared by the manager (before fan-out) and the agent (before mounting).

Both sides run the same rules so a bad request is refused before anything is mounted anywhere, and an
agent never trusts the manager blindly. Only path resolution and stat are used: no mounting, no writes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

READ_ONLY = "read-only"
READ_WRITE = "read-write"
MODES = (READ_ONLY, READ_WRITE)


@dataclass(frozen=True)
class MountRequest:
    mount_path: str
    source: str
    mode: str


class MountValidationError(Exception):
    """A refused mount request. `code` is a grpc StatusCode name so RPC layers can map it directly."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _invalid(message: str) -> MountValidationError:
    return MountValidationError("INVALID_ARGUMENT", message)


def _lexical(path: str, what: str) -> PurePosixPath:
    """Check the spelling of a path before touching the disk: absolute, no `..`, no NUL."""
    if not path:
        raise _invalid(f"{what} is empty; give an absolute path")
    if "\0" in path:
        raise _invalid(f"{what} {path!r} contains a NUL byte")
    if not path.startswith("/"):
        raise _invalid(f"{what} {path!r} is relative; give an absolute path such as /data/...")
    parts = path.split("/")
    if ".." in parts:
        raise _invalid(f"{what} {path!r} contains '..'; give the path without parent-directory steps")
    # normpath drops '.', duplicate and trailing slashes; '..' was refused above so it cannot climb.
    return PurePosixPath(os.path.normpath(path))


def _is_strictly_below(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path != root and path.is_relative_to(root)


def _overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def under_root(real: str, data_root: Path | PurePosixPath = Path("/data")) -> str:
    """`real` (a path with every symlink resolved) spelt below the data root as configured: the same
    place, but `/data/...` even where /data itself is a symlink or a mount of somewhere else."""
    root = PurePosixPath(os.path.normpath(str(data_root)))
    real_root = PurePosixPath(os.path.realpath(root))
    path = PurePosixPath(os.path.normpath(real))
    return str(root / path.relative_to(real_root)) if path.is_relative_to(real_root) else str(path)


def real_location(source: str, data_root: Path | PurePosixPath = Path("/data")) -> str:
    """A resolved source (see validate_mount_spec) as a path with no symlink at all, data root included,
    for opening without following any (openat2 RESOLVE_NO_SYMLINKS)."""
    root = PurePosixPath(os.path.normpath(str(data_root)))
    return str(PurePosixPath(os.path.realpath(root)) / PurePosixPath(source).relative_to(root))


def validate_mount_spec(
    mount_path: str,
    source: str,
    mode: str,
    existing: Sequence[tuple[str, str]] = (),
    data_root: Path = Path("/data"),
    require_resolved: bool = False,
    examined_elsewhere: bool = False,
) -> MountRequest:
    """Return the normalised request, or raise MountValidationError saying what is wrong and what is allowed.

    The returned source is resolved: no symlink is left below the data root, so what is stored and
    shipped to the nodes names one directory for good, whatever happens to links on the way later.
    `require_resolved` (the agents, which get resolved sources only) refuses a source that resolves
    anywhere else now: a symlink created or retargeted on its path after the mount was made.
    `examined_elsewhere` (the manager, whose requester's own check already opened the source as a directory)
    accepts a source this process may not stat itself (an unprivileged manager and a private directory).
    `existing` holds (mount_path, source) of the mounts already in place; a new mount may neither repeat
    one of their paths nor sit inside one of them nor contain one.
    """
    if mode not in MODES:
        raise _invalid(f"mode {mode!r} is not known; use one of: {', '.join(MODES)}")

    root = PurePosixPath(os.path.normpath(str(data_root)))
    mounts_root = root / "mounts"
    real_root = PurePosixPath(os.path.realpath(root))
    real_mounts_root = PurePosixPath(os.path.realpath(mounts_root))

    target = _lexical(mount_path, "mount path")
    if not _is_strictly_below(target, mounts_root):
        raise _invalid(f"mount path {mount_path!r} is not under {mounts_root}; use {mounts_root}/<name>")
    # A symlink anywhere below the mounts root could point the mount somewhere else on the node.
    real_target = PurePosixPath(os.path.realpath(target))
    if real_target != real_mounts_root / target.relative_to(mounts_root):
        raise _invalid(
            f"mount path {mount_path!r} goes through a symlink (it resolves to {real_target}); "
            f"use a plain directory name under {mounts_root}"
        )
    if os.path.lexists(target) and not os.path.isdir(target):
        raise MountValidationError(
            "FAILED_PRECONDITION", f"mount path {mount_path!r} exists and is not a directory; remove it first"
        )

    src = _lexical(source, "source")
    if not _is_strictly_below(src, root):
        raise _invalid(
            f"source {source!r} is not under {root}; use a directory such as {root}/project/<name>"
        )
    if _overlaps(src, mounts_root):
        raise _invalid(f"source {source!r} is inside {mounts_root}; mount project data, not another mount")
    real_src = PurePosixPath(os.path.realpath(src))
    if not _is_strictly_below(real_src, real_root) or _overlaps(real_src, real_mounts_root):
        raise _invalid(
            f"source {source!r} resolves through a symlink to {real_src}, outside {root} (or inside "
            f"{mounts_root}); give a source whose real location is under {root}"
        )
    try:
        src_stat = os.stat(real_src)
    except PermissionError:
        if not examined_elsewhere:
            raise MountValidationError(
                "FAILED_PRECONDITION", f"source {source!r} cannot be examined: permission denied") from None
        src_stat = os.stat_result((stat.S_IFDIR, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    except FileNotFoundError:
        raise MountValidationError(
            "NOT_FOUND", f"source {source!r} does not exist; create it or check the spelling"
        ) from None
    except OSError as exc:
        raise MountValidationError(
            "FAILED_PRECONDITION", f"source {source!r} cannot be examined: {exc.strerror}"
        ) from None
    if not stat.S_ISDIR(src_stat.st_mode):
        raise _invalid(f"source {source!r} is not a directory; mount a directory")
    resolved = PurePosixPath(under_root(str(real_src), root))
    if require_resolved and resolved != src:
        raise MountValidationError(
            "FAILED_PRECONDITION",
            f"source {source} now resolves to {resolved}: a symlink on its path was created or changed after "
            "the mount was made, so this node does not mount it; delete the mount and create it again",
        )

    for other_path, _other_source in existing:
        other = PurePosixPath(os.path.normpath(other_path))
        if other == target:
            raise MountValidationError(
                "ALREADY_EXISTS",
                f"mount path {target} is already mounted; delete it first or pick another path",
            )
        if target.is_relative_to(other):
            raise MountValidationError(
                "FAILED_PRECONDITION",
                f"mount path {target} is inside the existing mount {other}; mounts may not nest",
            )
        if other.is_relative_to(target):
            raise MountValidationError(
                "FAILED_PRECONDITION", f"mount path {target} would contain the existing mount {other}; "
                "mounts may not nest"
            )

    return MountRequest(mount_path=str(target), source=str(resolved), mode=mode)
