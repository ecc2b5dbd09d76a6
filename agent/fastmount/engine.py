"""Which engine serves a read-only fast mount: the native one (C, libfuse) or the pyfuse3 one.

Measured, not guessed (benchmarks/fastmount.py): on a local source the per-request cost decides, and the
native engine's few microseconds per request beat the pyfuse3 engine's tens of microseconds on small
files, listings and first reads. On a remote or FUSE source each request to the source is slow, and the
pyfuse3 engine's parallel, growing read-ahead (prefetch.py) is what wins. So `auto` picks by the
filesystem the source lives on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from agent.mountsys import MountEntry, read_mount_table

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


def source_fstype(source: str, table: Mapping[str, MountEntry]) -> str | None:
    """The type of the filesystem `source` (a real path) lives on: the deepest mount containing it."""
    best: MountEntry | None = None
    for point, entry in table.items():
        inside = source == point or source.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best.mount_point)):
            best = entry
    return best.fstype if best is not None else None


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
    return source_fstype(os.path.realpath(source), read_mount_table())
