"""What the fast-mount tests share: starting a worker and waiting for its mount, stopping it, and
watching the kernel's FUSE inodes (root, /dev/fuse)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.mountsys import FUSE_FSTYPE, read_mount_table


def wait_mounted(mount: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while read_mount_table().get(str(mount), None) is None or \
            read_mount_table()[str(mount)].fstype != FUSE_FSTYPE:
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, "worker did not mount within 15 s"
        time.sleep(0.05)


def stop_worker(proc: subprocess.Popen[bytes], mount: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fuse_inodes_in_kernel() -> int:
    for line in Path("/proc/slabinfo").read_text().splitlines():
        if line.startswith("fuse_inode "):
            return int(line.split()[1])
    raise AssertionError("no fuse_inode slab in /proc/slabinfo")


def forget_everything() -> int:
    """Evict dentries and inodes, and wait until their (RCU-delayed) freeing shows in the slab count."""
    Path("/proc/sys/vm/drop_caches").write_text("2\n")
    count, deadline = fuse_inodes_in_kernel(), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = fuse_inodes_in_kernel()
        if now == count:
            break
        count = now
    return count


def start_worker(source: Path, mount: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A fast-mount worker of `source` on `mount`, once its mount is up. glibc's malloc scribbles over
    what the worker frees, so memory used after it was freed shows (a crash, wrong answers)."""
    proc = subprocess.Popen([sys.executable, "-m", "agent.fastmount.worker", "--source", str(source),
                             "--mount-path", str(mount), *extra], env={**os.environ, "MALLOC_PERTURB_": "165"})
    try:
        wait_mounted(mount, proc)
    except BaseException:
        stop_worker(proc, mount)
        raise
    return proc
