"""The multi-process load generator of benchmarks/heartbeats.py: every agent is in exactly one worker's
slice, and the workers' stats merge into the figures of one load (nothing lost or counted twice)."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.heartbeat_load import LoadStats
from benchmarks.heartbeat_workers import slices


@pytest.mark.parametrize(("agents", "processes"), [(1, 4), (5, 2), (1000, 2), (10_000, 3), (7, 7)])
def test_slices_cover_every_agent_once_and_evenly(agents: int, processes: int) -> None:
    parts = slices(agents, processes)
    indices = [i for first, count in parts for i in range(first, first + count)]
    assert indices == list(range(agents))
    assert len(parts) == min(agents, processes)
    counts = [count for _, count in parts]
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1


def test_merged_stats_add_up_and_survive_the_json_round_trip() -> None:
    a = LoadStats(latencies_s=[0.001, 0.002], heartbeats_accepted=10, heartbeats_unconfirmed=1, replies=2,
                  sessions_ok=2, sessions_failed=1, agents_gave_up=0, errors=Counter({"CANCELLED": 1}),
                  loop_lag_s=[0.0])
    b = LoadStats(latencies_s=[0.003], heartbeats_accepted=5, sessions_ok=1, agents_gave_up=1,
                  errors=Counter({"CANCELLED": 2, "UNAVAILABLE": 1}), loop_lag_s=[0.01, 0.02])
    merged = LoadStats.merged([LoadStats.from_json(a.to_json()), LoadStats.from_json(b.to_json())])
    assert sorted(merged.latencies_s) == [0.001, 0.002, 0.003]
    assert (merged.heartbeats_accepted, merged.heartbeats_unconfirmed, merged.sessions_ok,
            merged.sessions_failed, merged.agents_gave_up, merged.replies) == (15, 1, 3, 1, 1, 2)
    assert merged.errors == Counter({"CANCELLED": 3, "UNAVAILABLE": 1})
    assert len(merged.loop_lag_s) == 3
