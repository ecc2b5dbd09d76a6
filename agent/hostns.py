"""Make the agent's mounts land in the node's mount namespace.

Under systemd, ProtectSystem= gives bench-agent a private mount namespace (a slave of the node's), so
a mount made there would be invisible to everything else on the node — SGE jobs included. Mounts are
therefore made in PID 1's mount namespace: the FUSE worker joins it before mounting, and mount/umount
commands run through nsenter. Mounts made there propagate back into the agent's namespace, so the
agent still sees and probes them. Outside such a sandbox (or in a local-provider member, whose PID 1
is the member's init) both namespaces are the same and nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import shutil

CLONE_NEWNS = 0x00020000
HOST_MOUNT_NS = "/proc/1/ns/mnt"


def _ns_id(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # no permission to look at PID 1 (no CAP_SYS_PTRACE): stay where we are
        return None


def in_private_mount_ns() -> bool:
    host = _ns_id(HOST_MOUNT_NS)
    return host is not None and host != _ns_id("/proc/self/ns/mnt")


def host_command(*argv: str) -> tuple[str, ...]:
    """argv, run in the node's mount namespace when the agent sits in a private one."""
    if in_private_mount_ns() and shutil.which("nsenter"):
        return ("nsenter", f"--mount={HOST_MOUNT_NS}", "--", *argv)
    return argv


def enter_host_mount_ns() -> None:
    """Join PID 1's mount namespace (call while the process is still single-threaded)."""
    if not in_private_mount_ns():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(HOST_MOUNT_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({HOST_MOUNT_NS}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)
