"""One fast-mount worker process as seen by the agent: start it, wait until the mount answers, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

from agent.fastmount.stats import Counters, read_stats
from agent.mountsys import FUSE_FSTYPE, lazy_unmount, probe, read_mount_table

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05


class WorkerStartError(Exception):
    pass


class WorkerProcess:
    def __init__(self, python: str, source: str, mount_path: str, stats_file: Path, log_file: Path,
                 engine: str = "auto") -> None:
        self.python = python
        self.engine = engine
        self.source = source
        self.mount_path = mount_path
        self.stats_file = stats_file
        self.log_file = log_file
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def counters(self) -> Counters:
        return read_stats(self.stats_file) or Counters()

    async def start(self, limit_s: float = READY_TIMEOUT_S) -> None:
        """Start the worker and return once reads through the mount work; on failure nothing is left."""
        log = await asyncio.to_thread(self._open_log)
        with log:
            self.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "agent.fastmount.worker",
                "--source", self.source, "--mount-path", self.mount_path,
                "--stats-file", str(self.stats_file), "--exit-with-parent", "--engine", self.engine,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        try:
            await self._wait_ready(limit_s)
        except BaseException:
            await self.stop()
            raise

    def _open_log(self) -> BinaryIO:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.stats_file.unlink()  # counts of an earlier worker must not be taken for this one's
        return open(self.log_file, "ab")

    async def _wait_ready(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise WorkerStartError(
                    f"mount worker exited with status {self.proc.returncode}: {self.log_tail()}"
                )
            entry = read_mount_table().get(self.mount_path)
            if entry is not None and entry.fstype == FUSE_FSTYPE:
                remaining = max(0.1, deadline - time.monotonic())
                state = await probe(self.mount_path, remaining)
                if state == "ok":
                    return
            if time.monotonic() >= deadline:
                raise WorkerStartError(f"mount did not become usable within {limit_s:.0f} s: {self.log_tail()}")
            await asyncio.sleep(POLL_S)

    async def stop(self, limit_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the worker unmounts itself), SIGKILL if it lingers, then detach anything left behind."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), limit_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        entry = read_mount_table().get(self.mount_path)
        if entry is not None and entry.fstype == FUSE_FSTYPE:
            await lazy_unmount(self.mount_path)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no worker log)"
        return " | ".join(text[-lines:]) or "(worker wrote nothing)"


def kill_orphan_worker(stats_file: Path, mount_path: str) -> bool:
    """Stop a worker left running by a previous agent (its pid is in the stats file) if it is still ours."""
    try:
        pid = int(json.loads(stats_file.read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if b"agent.fastmount.worker" not in cmdline or os.fsencode(mount_path) not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
