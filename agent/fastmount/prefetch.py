"""Read-ahead decisions for one open file, and the memory budget shared by all open files.

Pure logic: no I/O, no clocks, no threads. `blockreader.py` carries the decisions out against the source.

The shape follows mountpoint-s3's prefetcher: while a reader stays sequential the read-ahead window starts
near 1 MiB and doubles on every sequential read up to a cap; a short forward skip keeps the window (the
skipped bytes are simply not used), and so does a slightly backwards read (the kernel's asynchronous
read-ahead can deliver neighbouring requests out of order); anything else is random access and resets it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MiB = 1024 * 1024


class Access(enum.Enum):
    SEQUENTIAL = "sequential"  # starts exactly where the previous read ended
    FORWARD_SKIP = "forward-skip"  # a short jump ahead: keep the window
    NEAR_BACKWARD = "near-backward"  # a little behind the furthest read: keep the window
    RANDOM = "random"  # anything else: reset the window


@dataclass(frozen=True)
class PrefetchConfig:
    block_size: int = 1 * MiB
    initial_window: int = 1 * MiB
    max_window: int = 64 * MiB
    max_forward_skip: int = 16 * MiB
    backward_tolerance: int = 1 * MiB

    def __post_init__(self) -> None:
        if self.block_size <= 0 or self.initial_window <= 0:
            raise ValueError("block_size and initial_window must be positive")
        if self.max_window < self.initial_window:
            raise ValueError("max_window must be at least initial_window")
        if self.max_forward_skip < 0 or self.backward_tolerance < 0:
            raise ValueError("seek tolerances must not be negative")


@dataclass(frozen=True)
class WindowState:
    """Where the reader is heading (`next_offset`) and how far ahead to fetch (`window`, bytes)."""

    next_offset: int = 0
    window: int = 0  # 0 until the first read; set from the config then


@dataclass(frozen=True)
class ReadPlan:
    access: Access
    demand: range  # block indexes the current read needs now
    ahead: range  # block indexes to fetch in the background, nearest first
    keep_from: int  # blocks below this index will not be needed again: drop them


def classify(state: WindowState, offset: int, config: PrefetchConfig) -> Access:
    if offset == state.next_offset:
        return Access.SEQUENTIAL
    if state.next_offset < offset <= state.next_offset + config.max_forward_skip:
        return Access.FORWARD_SKIP
    if state.next_offset - config.backward_tolerance <= offset < state.next_offset:
        return Access.NEAR_BACKWARD
    return Access.RANDOM


def _blocks(start: int, end: int, block_size: int) -> range:
    """Indexes of the blocks overlapping the byte range [start, end)."""
    if end <= start:
        return range(start // block_size, start // block_size)
    return range(start // block_size, (end - 1) // block_size + 1)


def plan_read(
    state: WindowState, offset: int, size: int, file_size: int, config: PrefetchConfig
) -> tuple[WindowState, ReadPlan]:
    """Decide, for one read of `size` bytes at `offset`, which blocks are needed now and which to fetch ahead."""
    if offset < 0 or size < 0:
        raise ValueError("offset and size must not be negative")
    access = classify(state, offset, config)
    window = state.window or config.initial_window
    if access is Access.SEQUENTIAL and state.window:
        window = min(window * 2, config.max_window)
    elif access is Access.RANDOM:
        window = config.initial_window
    offset = min(offset, file_size)  # a read past the end needs nothing (the reader answers it empty)
    end = min(offset + size, file_size)
    next_offset = max(state.next_offset, end) if access is not Access.RANDOM else end
    new_state = WindowState(next_offset=next_offset, window=window)

    bs = config.block_size
    demand = _blocks(offset, end, bs)
    if access is Access.RANDOM:
        # One random read says nothing about the next: fetch only what is asked, keep nothing behind it.
        return new_state, ReadPlan(access, demand, range(demand.stop, demand.stop), demand.start)
    ahead_end = min(next_offset + window, file_size)
    ahead = range(demand.stop, max(demand.stop, _blocks(next_offset, ahead_end, bs).stop))
    keep_from = max(0, next_offset - config.backward_tolerance) // bs
    keep_from = min(keep_from, demand.start)
    return new_state, ReadPlan(access, demand, ahead, keep_from)


class MemoryBudget:
    """Bytes of read-ahead buffers all open files may hold together.

    Read-ahead asks with `try_reserve` and is skipped when the budget is spent; data a read needs right
    now is accounted with `force_reserve` (it is never refused, or reads would fail under load) so the
    figure stays honest. Single-threaded by design: only the FUSE event loop calls it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.used = 0

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.used)

    def try_reserve(self, nbytes: int) -> bool:
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        if self.used + nbytes > self.capacity:
            return False
        self.used += nbytes
        return True

    def force_reserve(self, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        self.used += nbytes

    def release(self, nbytes: int) -> None:
        if nbytes < 0 or nbytes > self.used:
            raise ValueError(f"releasing {nbytes} bytes but only {self.used} are reserved")
        self.used -= nbytes


@dataclass(frozen=True)
class SpeedConfig:
    """What counts as a fast source: a request costing at most `fixed_cost_s` plus its bytes at
    `fast_bandwidth` bytes/s (a page-cached local file). `smoothing` weighs the newest observation;
    a source judged slow is re-measured on every `probe_every`-th read that has to go to the source."""

    fixed_cost_s: float = 0.0003
    fast_bandwidth: float = 1.0 * 1024 * MiB
    smoothing: float = 0.2
    probe_every: int = 32


class SourceSpeed:
    """Whether the source answers fast enough that reading it inline beats handing reads to threads.

    Measured, not configured: on a page-cached local source a thread hand-off costs more than the read
    itself (and parallel reads only contend for the same cores), while on a slow store parallel
    read-ahead is what hides the latency. Only inline reads are timed: reads running in parallel
    threads take longer each even on a fast source, which would make it look slow forever.
    """

    def __init__(self, config: SpeedConfig | None = None) -> None:
        self._config = config or SpeedConfig()
        self._ratio: float | None = None  # smoothed observed time / time a fast source would take
        self._since_probe = 0

    def observe(self, nbytes: int, seconds: float) -> None:
        expected = self._config.fixed_cost_s + nbytes / self._config.fast_bandwidth
        ratio = max(0.0, seconds) / expected
        if self._ratio is None:
            self._ratio = ratio
        else:
            self._ratio += self._config.smoothing * (ratio - self._ratio)

    @property
    def fast(self) -> bool:
        return self._ratio is not None and self._ratio < 1.0

    def read_inline(self) -> bool:
        """True to read this request inline (and time it): always while fast or unknown, now and then while
        slow so a source that became fast (its data got cached, say) is noticed."""
        if self._ratio is None or self.fast:
            return True
        self._since_probe += 1
        if self._since_probe >= self._config.probe_every:
            self._since_probe = 0
            return True
        return False
