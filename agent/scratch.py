"""/scratch: per-member ephemeral space. Wiped when the member is drained or removed.

The wipe removes what is *inside* /scratch and never follows a symlink out of it: it walks directory
file descriptors opened with O_NOFOLLOW (immune to symlink races), and a symlink entry is unlinked, never
traversed. It never crosses into another filesystem either: a job may leave a FUSE mount below its
directory whose server is dead (ENOTCONN) or hung (any access blocks), and one look inside would wedge
the drain. The agent detaches such mounts first, found in the mount table without touching them
(`mounts_below`), and the walk skips any entry on another device (`st_dev`) that appears meanwhile.
It refuses to run when /scratch is not what it expects (missing, a symlink itself, or not carrying the
marker written when the member joined), so a misconfiguration can never point it at something precious.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from agent.mountsys import read_mount_table

MARKER = ".bench-scratch"
# Written by an orphaned member (agent/orphan.py); sge_execd's load sensor reports it to SGE as
# bench_orphaned=1, which puts the member's queue into alarm (no new jobs). Kept by the wipe so the
# member takes no job between its wipe and its end.
ORPHAN_FLAG = ".bench-orphaned"
KEPT = frozenset({MARKER, ORPHAN_FLAG})
MOUNTINFO = "/proc/self/mountinfo"


class ScratchError(Exception):
    pass


def prepare(scratch_dir: Path) -> None:
    """Mark the scratch area as ours (done when the member joins)."""
    if scratch_dir.is_symlink():
        raise ScratchError(f"{scratch_dir} is a symlink; refusing to use it as /scratch")
    scratch_dir.mkdir(parents=True, exist_ok=True)
    (scratch_dir / MARKER).touch(exist_ok=True)
    scratch_dir.chmod(0o1777)  # like /tmp: every job user may create its directory, nobody else's


@dataclass
class WipeResult:
    removed: int = 0  # entries of /scratch itself that went
    kept: list[str] = field(default_factory=list)  # paths on another filesystem, never entered


def mounts_below(scratch_dir: Path, mountinfo: str = MOUNTINFO) -> list[str]:
    """Mount points strictly below scratch_dir, deepest first, read from the mount table (which never
    touches the mounts themselves, so a hung FUSE server cannot block it)."""
    prefix = os.path.normpath(scratch_dir) + "/"
    points = [p for p in read_mount_table(mountinfo) if p.startswith(prefix)]
    return sorted(points, key=lambda p: (-p.count("/"), p))


def wipe(scratch_dir: Path) -> WipeResult:
    """Remove every entry inside scratch_dir (keeping the marker and the orphan flag), never leaving
    its filesystem."""
    try:
        st = os.lstat(scratch_dir)
    except FileNotFoundError:
        raise ScratchError(f"{scratch_dir} does not exist; nothing to wipe") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ScratchError(f"{scratch_dir} is not a real directory; refusing to wipe")
    if not (scratch_dir / MARKER).is_file():
        raise ScratchError(f"{scratch_dir} lacks the {MARKER} marker written at join; refusing to wipe "
                           "something that may not be this member's scratch space")
    result = WipeResult()
    top = os.open(scratch_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(top):
            if name not in KEPT and _remove(top, name, st.st_dev, str(scratch_dir / name), result):
                result.removed += 1
    finally:
        os.close(top)
    return result


def _remove(parent: int, name: str, dev: int, path: str, result: WipeResult) -> bool:
    """Remove `name` in the directory `parent` and everything below it on the device `dev`."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if st.st_dev != dev:
        result.kept.append(path)  # another filesystem mounted here: never entered
        return False
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)  # files and symlinks alike: the link goes, its target stays
        return True
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except FileNotFoundError:
        return True
    try:
        here = os.fstat(fd)
        if (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):  # swapped (a mount on it) since the stat
            result.kept.append(path)
            return False
        complete = True
        for child in os.listdir(fd):
            complete &= _remove(fd, child, dev, f"{path}/{child}", result)
    finally:
        os.close(fd)
    if not complete:
        return False
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return True
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            result.kept.append(path)
            return False
        raise
    return True

