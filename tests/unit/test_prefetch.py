from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.fastmount.prefetch import (
    Access,
    MemoryBudget,
    MiB,
    PrefetchConfig,
    SourceSpeed,
    SpeedConfig,
    WindowState,
    plan_read,
)

CFG = PrefetchConfig(block_size=1 * MiB, initial_window=1 * MiB, max_window=16 * MiB,
                     max_forward_skip=4 * MiB, backward_tolerance=1 * MiB)
BIG = 10_000 * MiB
KIB128 = 128 * 1024


def read_sequentially(n: int, size: int = KIB128, file_size: int = BIG) -> list[WindowState]:
    state, states = WindowState(), []
    for i in range(n):
        state, _ = plan_read(state, i * size, size, file_size, CFG)
        states.append(state)
    return states


def test_window_starts_at_the_initial_size_and_doubles_per_sequential_read() -> None:
    windows = [s.window for s in read_sequentially(6)]
    assert windows == [1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 16 * MiB]


def test_first_read_fetches_its_block_and_the_initial_window_ahead() -> None:
    _, plan = plan_read(WindowState(), 0, KIB128, BIG, CFG)
    assert plan.access is Access.SEQUENTIAL
    assert plan.demand == range(0, 1)
    assert plan.ahead == range(1, 2)  # bytes [128K, 128K + 1 MiB) end inside block 1


def test_read_ahead_covers_the_grown_window() -> None:
    state = read_sequentially(5)[-1]  # window 16 MiB, next read at 640 KiB
    _, plan = plan_read(state, 5 * KIB128, KIB128, BIG, CFG)
    assert plan.demand == range(0, 1)
    assert plan.ahead.stop == (6 * KIB128 + 16 * MiB - 1) // MiB + 1


def test_short_forward_seek_keeps_the_window() -> None:
    state = read_sequentially(4)[-1]
    after, plan = plan_read(state, state.next_offset + 2 * MiB, KIB128, BIG, CFG)
    assert plan.access is Access.FORWARD_SKIP
    assert after.window == state.window  # kept, not reset (and not grown either)


def test_long_forward_seek_resets_the_window() -> None:
    state = read_sequentially(4)[-1]
    after, plan = plan_read(state, state.next_offset + 100 * MiB, KIB128, BIG, CFG)
    assert plan.access is Access.RANDOM
    assert after.window == CFG.initial_window
    assert len(plan.ahead) == 0


def test_backward_seek_resets_but_a_slightly_out_of_order_read_does_not() -> None:
    state = read_sequentially(20)[-1]
    near, plan = plan_read(state, state.next_offset - 2 * KIB128, KIB128, BIG, CFG)
    assert plan.access is Access.NEAR_BACKWARD
    assert near.window == state.window
    assert near.next_offset == state.next_offset  # the furthest point reached is remembered
    far, plan = plan_read(state, 0, KIB128, BIG, CFG)
    assert plan.access is Access.RANDOM
    assert far.window == CFG.initial_window


def test_read_ahead_stops_at_the_end_of_the_file() -> None:
    file_size = 3 * MiB + 10
    state = WindowState()
    for i in range(10):
        state, plan = plan_read(state, i * KIB128, KIB128, file_size, CFG)
        assert plan.ahead.stop <= 4  # blocks 0..3 exist
    _, plan = plan_read(state, 3 * MiB, KIB128, file_size, CFG)
    assert plan.demand == range(3, 4)
    assert len(plan.ahead) == 0


def test_blocks_behind_the_reader_are_released() -> None:
    state = WindowState()
    for i in range(40):
        state, plan = plan_read(state, i * KIB128, KIB128, BIG, CFG)
    assert plan.keep_from == (state.next_offset - CFG.backward_tolerance) // MiB
    assert plan.keep_from <= plan.demand.start


@given(st.lists(st.tuples(st.integers(0, 64 * MiB), st.integers(0, 2 * MiB)), max_size=60))
def test_plans_are_always_sane(reads: list[tuple[int, int]]) -> None:
    file_size = 48 * MiB
    state = WindowState()
    for offset, size in reads:
        state, plan = plan_read(state, offset, size, file_size, CFG)
        assert CFG.initial_window <= state.window <= CFG.max_window
        assert plan.keep_from <= plan.demand.start
        assert plan.ahead.start == plan.demand.stop  # read-ahead continues right after the demand
        assert all(i * MiB < file_size for i in [*plan.demand, *plan.ahead])  # only blocks that exist
        wanted_end = min(offset + size, file_size)
        if offset < file_size and size > 0:
            assert plan.demand.start * MiB <= offset < plan.demand.stop * MiB
            assert plan.demand.stop * MiB >= wanted_end


def test_budget_refuses_read_ahead_beyond_capacity_but_never_demand() -> None:
    budget = MemoryBudget(4 * MiB)
    assert budget.try_reserve(3 * MiB)
    assert not budget.try_reserve(2 * MiB)
    budget.force_reserve(2 * MiB)  # a read that needs data now is accounted, not refused
    assert budget.used == 5 * MiB and budget.available == 0
    budget.release(3 * MiB)
    assert budget.try_reserve(1 * MiB)
    with pytest.raises(ValueError):
        budget.release(10 * MiB)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3 * MiB)), max_size=100))
def test_budget_read_ahead_never_exceeds_capacity(ops: list[tuple[bool, int]]) -> None:
    budget, held = MemoryBudget(8 * MiB), []
    for reserve, n in ops:
        if reserve:
            if budget.try_reserve(n):
                held.append(n)
        elif held:
            budget.release(held.pop())
        assert 0 <= budget.used <= budget.capacity
        assert budget.used == sum(held)


def test_source_speed_learns_from_observations() -> None:
    speed = SourceSpeed(SpeedConfig(probe_every=4))
    assert not speed.fast
    assert speed.read_inline()  # unknown: measure it with the first read
    speed.observe(MiB, 0.0002)  # a page-cached local file: ~5 GB/s
    assert speed.fast and speed.read_inline()
    for _ in range(10):
        speed.observe(MiB, 0.020)  # a network store: 20 ms per MiB
    assert not speed.fast
    # while slow, reads go to threads, with a timed inline probe every 4th read
    assert [speed.read_inline() for _ in range(8)] == [False, False, False, True] * 2


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        PrefetchConfig(initial_window=8 * MiB, max_window=1 * MiB)
    with pytest.raises(ValueError):
        PrefetchConfig(block_size=0)
