"""Carries out the read-ahead plan of `prefetch.py` for one open file: fetches blocks of the source in worker
threads, in parallel, and answers FUSE reads from them.

A read whose block has already arrived is answered inline on the event loop with a zero-copy slice; only a
read that must wait parks on the block's future, so the per-request cost stays small and the source sees
several large reads in flight (which is what hides a network store's latency).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyfuse3
import trio

from agent.fastmount.prefetch import (
    Access,
    MemoryBudget,
    PrefetchConfig,
    SourceSpeed,
    WindowState,
    plan_read,
)

Fetched = tuple[bytes, float]  # the data and how long the source took to give it


def timed_pread(fd: int, size: int, offset: int) -> Fetched:
    started = time.perf_counter()
    data = os.pread(fd, size, offset)
    return data, time.perf_counter() - started


class BlockFetcher:
    """The worker threads shared by every open file of one mount."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastmount-fetch")

    def fetch(self, fd: int, offset: int, size: int) -> Future[Fetched]:
        return self._pool.submit(timed_pread, fd, size, offset)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


async def wait_future(future: Future[Fetched]) -> Fetched:
    """Wait for a thread-pool future without blocking the trio loop or tying up a trio worker thread."""
    if not future.done():
        arrived = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake(_: Future[Fetched]) -> None:
            # RunFinishedError: the filesystem is shutting down and nobody waits any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(arrived.set)

        future.add_done_callback(wake)
        await arrived.wait()
    return future.result()


@dataclass
class _Block:
    future: Future[Fetched]
    reserved: int


class PrefetchingReader:
    """Reads of one open file, served through sequential read-ahead."""

    def __init__(
        self,
        fd: int,
        file_size: int,
        fetcher: BlockFetcher,
        budget: MemoryBudget,
        config: PrefetchConfig,
        speed: SourceSpeed,
    ) -> None:
        self._fd = fd
        self._size = file_size
        self._fetcher = fetcher
        self._budget = budget
        self._config = config
        self._speed = speed
        self._state = WindowState()
        self._blocks: dict[int, _Block] = {}

    @property
    def buffered_blocks(self) -> int:
        return len(self._blocks)

    def _block_len(self, index: int) -> int:
        start = index * self._config.block_size
        return max(0, min(self._config.block_size, self._size - start))

    def _start(self, index: int, reserved: int) -> None:
        future = self._fetcher.fetch(self._fd, index * self._config.block_size, self._block_len(index))
        self._blocks[index] = _Block(future, reserved)

    def _drop(self, index: int) -> None:
        block = self._blocks.pop(index)
        block.future.cancel()
        self._budget.release(block.reserved)

    def _drop_outside(self, keep: range) -> None:
        for index in [i for i in self._blocks if i not in keep]:
            self._drop(index)

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        if offset >= self._size or size == 0:
            return b""
        self._state, plan = plan_read(self._state, offset, size, self._size, self._config)
        have_demand = all(i in self._blocks for i in plan.demand)
        if plan.access is Access.RANDOM:
            self._drop_outside(plan.demand)
            if not have_demand:
                # A lone random read: fetch exactly what was asked rather than whole blocks.
                return await self._read_direct(offset, size)
            return await self._assemble(offset, size, plan.demand)
        self._drop_outside(range(plan.keep_from, max(plan.ahead.stop, plan.demand.stop)))
        if not have_demand and self._speed.read_inline():
            # Measured fast (page-cached) source: a thread hand-off costs more than the read, and the
            # kernel's own read-ahead already keeps requests coming. Read inline, no read-ahead.
            # (Also the occasional timed probe of a source currently judged slow.)
            return self._read_inline(offset, size)
        for index in plan.demand:
            if index not in self._blocks:
                reserved = self._block_len(index)
                self._budget.force_reserve(reserved)
                self._start(index, reserved)
        for index in plan.ahead:
            if index in self._blocks:
                continue
            if not self._budget.try_reserve(self._block_len(index)):
                break  # the shared budget is spent: read-ahead waits until other files release some
            self._start(index, self._block_len(index))
        return await self._assemble(offset, size, plan.demand)

    def _read_inline(self, offset: int, size: int) -> bytes:
        data, seconds = timed_pread(self._fd, size, offset)
        self._speed.observe(len(data), seconds)
        return data

    async def _read_direct(self, offset: int, size: int) -> bytes:
        if self._speed.read_inline():
            return self._read_inline(offset, size)
        data, _seconds = await trio.to_thread.run_sync(timed_pread, self._fd, size, offset)
        return data

    async def _assemble(self, offset: int, size: int, demand: range) -> bytes | memoryview:
        bs = self._config.block_size
        # Take the blocks now: a concurrent read of this file may drop them while this one waits.
        blocks = [(index, self._blocks[index]) for index in demand]
        pieces: list[memoryview] = []
        for index, block in blocks:
            try:
                data, _seconds = await wait_future(block.future)
            except CancelledError:
                data = await self._read_direct(index * bs, self._block_len(index))
            except OSError as exc:
                if self._blocks.get(index) is block:
                    self._drop(index)  # let a retry fetch it again
                raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
            start = max(0, offset - index * bs)
            stop = min(len(data), offset + size - index * bs)
            pieces.append(memoryview(data)[start:stop])
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def close(self) -> None:
        for index in list(self._blocks):
            self._drop(index)
