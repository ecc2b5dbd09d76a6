"""Which engine serves a read-only fast mount: the native one (C, libfuse) or the pyfuse3 one.

Measured, not guessed (benchmarks/fastmount.py): on a local source the per-request cost decides, and the
native engine's few microseconds per request beat the pyfuse3 engine's tens of microseconds on small
files, listings and first reads. On a remote or FUSE source each request to the source is slow, and the
pyfuse3 engine's parallel, growing read-ahead (prefetch.py) is what wins. So `auto` picks by the
filesystem the source lives on.
"""

from __future__ import annotations

import os
from typing import Literal

Engine = Literal["native", "python"]
ENGINE_CHOICES = ("auto", "native", "python")

# Filesystems where every request to the source crosses a network or another userspace daemon.
REMOTE_FSTYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "afs", "lustre", "gpfs", "beegfs", "glusterfs",
    "ocfs2", "gfs2", "davfs", "sshfs",
})


def native_available() -> bool:
    try:
        from agent.fastmount import _native  # noqa: F401
    except ImportError:
        return False
    return True


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def source_fstype(source: str, mountinfo: str) -> str | None:
    """The type of the filesystem `source` (a real path) lives on: the deepest mount containing it."""
    best, best_len = None, -1
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = source == point or source.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) >= best_len:  # later lines stack on top of earlier ones
            best, best_len = fstype, len(point)
    return best


def is_remote(fstype: str | None) -> bool:
    if fstype is None:
        return False
    return fstype in REMOTE_FSTYPES or fstype == "fuse" or fstype.startswith("fuse.")


def choose_engine(requested: str, fstype: str | None, native_ok: bool) -> tuple[Engine, str]:
    """The engine to run and why (logged by the worker)."""
    if requested == "python":
        return "python", "asked for"
    if requested == "native":
        if not native_ok:
            raise RuntimeError("the native engine is not built (agent.fastmount._native): "
                               "reinstall with `pip install -e .` after installing libfuse3-dev")
        return "native", "asked for"
    if requested != "auto":
        raise ValueError(f"unknown engine {requested!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    if is_remote(fstype):
        return "python", f"source is on {fstype}: parallel read-ahead hides its per-request latency"
    if not native_ok:
        return "python", "native engine not built"
    return "native", f"source is on local {fstype or 'storage'}"


def describe_source(source: str) -> str | None:
    with open("/proc/self/mountinfo") as info:
        return source_fstype(os.path.realpath(source), info.read())
