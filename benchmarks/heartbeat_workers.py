"""The load generator of `benchmarks/heartbeats.py` as several processes, so that it is not what limits
the figures: one Python event loop tops out near 2k heartbeats/s, below what the manager can take.

Each worker is a subprocess (`python benchmarks/heartbeat_workers.py`) that runs one `LoadGenerator` over
its own slice of the agents on its own asyncio loop and its own TCP connections. The parent talks to it
in lines on stdin/stdout:

    parent -> worker   {"target": ..., "first": ..., "count": ..., "settings": {...}}   (one JSON line)
    worker -> parent   REGISTERED                      every agent of the slice registered
    parent -> worker   GO <unix time>                  start the load at that moment (all workers alike)
    worker -> parent   STATS {"stats": ..., "window_s": ..., "cpu_s": ..., "member_ids": [...]}
    worker -> parent   FAILED <why>                    registration failed; the worker exits 2

A worker exits when its stdin closes, so a parent that dies (or is interrupted) takes its workers with
it; they also share its process group. Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole
group, and the parent, not each worker, decides how the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/heartbeat_workers.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpc import aio

from benchmarks.echo_server import FULL_UNARY_METHOD
from benchmarks.heartbeat_load import (
    EchoTarget,
    LoadGenerator,
    LoadSettings,
    LoadStats,
    ManagerTarget,
    RegistrationFailed,
    Target,
)
from common.tls import channel_credentials

WORKER = Path(__file__).resolve()
REGISTER_TIMEOUT_S = 600.0  # 10,000 agents x (AddNode, Join, Register) on a loaded 2-core machine
DRIVE_GRACE_S = 120.0  # after the load window: every session closes and is confirmed or fails
PR_SET_PDEATHSIG = 1
LINE_LIMIT = 64 * 1024 * 1024  # a STATS line carries every latency sample of the slice


@dataclass(frozen=True)
class TargetSpec:
    """Which server the workers load, and how they reach it; JSON-able for the worker's stdin."""

    kind: str  # "manager" or "echo"
    name: str
    address: str
    ca_file: str | None  # None: plaintext
    credential: str  # manager: the administrator's (enrols the agents); echo: a token of the same size
    full_method: str = ""  # echo only

    def target(self) -> Target:
        if self.kind == "manager":
            return ManagerTarget(self.credential, self.name)
        return EchoTarget(self.full_method, self.credential, FULL_UNARY_METHOD)

    def make_channel(self, options: list[tuple[str, Any]] | None = None) -> aio.Channel:
        if self.ca_file is None:
            return aio.insecure_channel(self.address, options=options)
        return aio.secure_channel(self.address, channel_credentials(Path(self.ca_file)), options=options)


@dataclass
class SliceResult:
    stats: LoadStats
    window_s: float
    cpu_s: float  # the worker's own CPU over its load window
    member_ids: list[str]


class WorkerFailed(Exception):
    """A load worker died or reported a failure; the message says which and why."""


def slices(agents: int, processes: int) -> list[tuple[int, int]]:
    """(first, count) per worker: as even as possible, no empty slice."""
    processes = max(1, min(processes, agents))
    base, extra = divmod(agents, processes)
    out, first = [], 0
    for number in range(processes):
        count = base + (1 if number < extra else 0)
        out.append((first, count))
        first += count
    return out


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process, first: int, count: int) -> None:
        self.proc = proc
        self.first = first
        self.count = count

    @property
    def label(self) -> str:
        return f"load worker {self.first}..{self.first + self.count - 1} (pid {self.proc.pid})"

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, word: str, timeout_s: float) -> str:
        """The rest of the worker's next line, which must start with `word`."""
        assert self.proc.stdout is not None
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)).decode().rstrip("\n")
        except TimeoutError:
            raise WorkerFailed(f"{self.label}: no {word} within {timeout_s:.0f}s") from None
        head, _, rest = line.partition(" ")
        if head == "FAILED":
            raise WorkerFailed(rest)
        if head != word:
            raise WorkerFailed(f"{self.label}: expected {word}, got {line[:200]!r} (exit code {self.proc.returncode})")
        return rest

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()  # the worker's cue to exit
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class LoadWorkers:
    """`processes` workers sharing the agents of one load phase; use `start()` as an async context."""

    def __init__(self, spec: TargetSpec, settings: LoadSettings, processes: int) -> None:
        self.spec = spec
        self.settings = settings
        self._slices = slices(settings.agents, processes)
        self._workers: list[_Worker] = []

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    @contextlib.asynccontextmanager
    async def start(self) -> AsyncIterator[LoadWorkers]:
        try:
            for first, count in self._slices:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, str(WORKER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    limit=LINE_LIMIT)
                worker = _Worker(proc, first, count)
                self._workers.append(worker)
                await worker.send(json.dumps({"target": asdict(self.spec), "first": first, "count": count,
                                              "settings": asdict(self.settings)}))
            yield self
        finally:
            await asyncio.gather(*(w.stop() for w in self._workers), return_exceptions=True)

    async def register_all(self) -> None:
        await self._all(lambda w: w.expect("REGISTERED", REGISTER_TIMEOUT_S))

    async def drive(self, on_last_done: Callable[[], None] | None = None) -> SliceResult:
        """Start every worker's load at the same moment; the merged result, window = the longest one.
        `on_last_done` runs as soon as the last worker reports, before anything else (stops the meters)."""
        start_at = time.time() + 0.5  # every worker has read GO by then
        for worker in self._workers:
            await worker.send(f"GO {start_at!r}")
        pending = len(self._workers)

        async def one(worker: _Worker) -> SliceResult:
            nonlocal pending
            data = json.loads(await worker.expect("STATS", self.settings.seconds + DRIVE_GRACE_S))
            pending -= 1
            if pending == 0 and on_last_done is not None:
                on_last_done()
            return SliceResult(LoadStats.from_json(data["stats"]), data["window_s"], data["cpu_s"], data["member_ids"])

        parts = await self._all(one)
        return SliceResult(LoadStats.merged([p.stats for p in parts]), max(p.window_s for p in parts),
                           sum(p.cpu_s for p in parts), [m for p in parts for m in p.member_ids])

    async def _all(self, step: Callable[[_Worker], Coroutine[Any, Any, Any]]) -> list[Any]:
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(step(w)) for w in self._workers]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()


# the worker process ----------------------------------------------------------------------------------
async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _run_slice(stdin: asyncio.StreamReader) -> int:
    request = json.loads(await stdin.readline())
    spec = TargetSpec(**request["target"])
    settings = LoadSettings(**request["settings"])
    async with LoadGenerator(spec.target(), spec.make_channel, settings, request["first"], request["count"]) as load:
        try:
            await load.register_all()
        except RegistrationFailed as exc:
            _say(f"FAILED {exc}")
            return 2
        _say("REGISTERED")
        go = (await stdin.readline()).decode().split()
        if len(go) != 2 or go[0] != "GO":
            return 1  # stdin closed: the parent gave up
        await asyncio.sleep(max(0.0, float(go[1]) - time.time()))
        cpu_before = time.process_time()
        window_s = await load.drive()
        cpu_s = time.process_time() - cpu_before
        _say("STATS " + json.dumps({"stats": load.stats.to_json(), "window_s": window_s, "cpu_s": cpu_s,
                                    "member_ids": list(load.member_ids.values())}))
    await stdin.read()  # until the parent closes our stdin
    return 0


async def _worker_main() -> int:
    return await _run_slice(await _stdin_lines())


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed outright (SIGKILL) cannot close our stdin: the kernel sends us SIGTERM instead.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        return 1  # the parent died before the line above
    try:
        return asyncio.run(_worker_main())
    except (BrokenPipeError, ConnectionResetError, json.JSONDecodeError, ValueError):
        return 1  # the parent went away mid-conversation
    finally:
        with contextlib.suppress(OSError):
            os.close(1)


if __name__ == "__main__":
    sys.exit(main())
