"""/scratch: per-member ephemeral space. Wiped when the member is drained or removed.

The wipe removes what is *inside* /scratch and never follows a symlink out of it: shutil.rmtree
on Linux works on directory file descriptors (it is immune to symlink races), and a symlink entry
is unlinked, never traversed. It refuses to run when /scratch is not what it expects (missing, a
symlink itself, or not carrying the marker written when the member joined), so a misconfiguration
can never point it at something precious.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

MARKER = ".bench-scratch"


class ScratchError(Exception):
    pass


def prepare(scratch_dir: Path) -> None:
    """Mark the scratch area as ours (done when the member joins)."""
    if scratch_dir.is_symlink():
        raise ScratchError(f"{scratch_dir} is a symlink; refusing to use it as /scratch")
    scratch_dir.mkdir(parents=True, exist_ok=True)
    (scratch_dir / MARKER).touch(exist_ok=True)
    scratch_dir.chmod(0o1777)  # like /tmp: every job user may create its directory, nobody else's


def wipe(scratch_dir: Path) -> int:
    """Remove every entry inside scratch_dir (keeping the marker); returns how many entries went."""
    try:
        st = os.lstat(scratch_dir)
    except FileNotFoundError:
        raise ScratchError(f"{scratch_dir} does not exist; nothing to wipe") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ScratchError(f"{scratch_dir} is not a real directory; refusing to wipe")
    if not (scratch_dir / MARKER).is_file():
        raise ScratchError(f"{scratch_dir} lacks the {MARKER} marker written at join; refusing to wipe "
                           "something that may not be this member's scratch space")
    if not shutil.rmtree.avoids_symlink_attacks:
        raise ScratchError("this platform's rmtree can follow symlinks; refusing to wipe")
    removed = 0
    with os.scandir(scratch_dir) as entries:
        for entry in list(entries):
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)  # files and symlinks alike: the link goes, its target stays
            removed += 1
    return removed
