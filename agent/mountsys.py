"""The node's mount table and the commands that change it (bind mounts, lazy unmounts), for the agent.

Blocking calls run in threads and every command has a timeout, because a dead FUSE mount can hang a
careless stat forever and the agent's event loop must keep serving heartbeats.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
from dataclasses import dataclass

from agent.hostns import host_command

FUSE_FSTYPE = "fuse.bench-fastmount"
COMMAND_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    fstype: str
    source: str
    root: str  # the directory of the source filesystem that is mounted (bind mounts show it)
    device: str = ""  # major:minor, which names the mount's backing device info in /sys/class/bdi


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mount_table(mountinfo: str = "/proc/self/mountinfo") -> dict[str, MountEntry]:
    """The topmost mount at each mount point of this mount namespace."""
    table: dict[str, MountEntry] = {}
    with open(mountinfo) as info:
        for line in info:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 2:
                continue
            point = _unescape(fields[4])
            table[point] = MountEntry(point, tail[0], _unescape(tail[1]), _unescape(fields[3]), fields[2])
    return table


def probe_blocking(path: str) -> str:
    """'ok', 'stale' (the FUSE server is gone: ENOTCONN/ECONNABORTED) or 'error:<reason>'.

    statvfs always reaches the filesystem (the kernel caches attributes but never statfs), so a dead
    worker shows up here even while cached attributes would still answer a stat.
    """
    try:
        os.statvfs(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            return "stale"
        return f"error:{exc.strerror}"
    return "ok"


async def probe(path: str, limit_s: float) -> str:
    try:
        return await asyncio.wait_for(asyncio.to_thread(probe_blocking, path), limit_s)
    except TimeoutError:
        return "hung"


async def run(*argv: str, limit_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
    """Run a command, returning (exit code, stderr+stdout text); a timeout kills it and counts as failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"{argv[0]} did not finish within {limit_s:.0f} s"
    return proc.returncode or 0, output.decode(errors="replace").strip()


async def lazy_unmount(path: str) -> str | None:
    """Detach whatever is mounted at path (also a stale FUSE mount); None on success, else the reason."""
    if path not in read_mount_table():
        return None
    code, out = await run(*host_command("umount", "-l", path))
    if code == 0 or path not in read_mount_table():
        return None
    if shutil.which("fusermount3"):
        code, out2 = await run(*host_command("fusermount3", "-uz", path))
        if code == 0 or path not in read_mount_table():
            return None
        out = f"{out}; {out2}"
    return out or "umount failed"


async def detach(path: str) -> str | None:
    """Lazily detach a mount found in the mount table without looking at it: `--no-canonicalize` keeps
    umount from resolving the path, which would stat the mount and hang on a FUSE server that hangs.
    None on success, else the reason."""
    code, out = await run(*host_command("umount", "--lazy", "--no-canonicalize", path))
    return None if code == 0 or path not in read_mount_table() else (out or f"umount exited {code}")


async def bind_mount(source: str, target: str) -> str | None:
    """A plain read-write bind mount; None on success, else the reason."""
    code, out = await run(*host_command("mount", "--bind", source, target))
    return None if code == 0 else (out or f"mount --bind exited {code}")
