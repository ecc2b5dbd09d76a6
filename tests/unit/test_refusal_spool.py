"""The agent reads the egress guard's refusals once each, across restarts, and bounds the spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import refusals
from agent.refusals import RefusalSpool
from common import activity_file


def refusal(destination: str, user: str = "ann") -> dict[str, str]:
    return activity_file.entry(user, "connection refused", "reset", node="n1", destination=destination,
                               reason="not in the workspace's allowlist")


def test_each_refusal_is_read_once_even_across_an_agent_restart(tmp_path: Path) -> None:
    spool = tmp_path / "refusals.jsonl"
    activity_file.append(spool, refusal("10.0.0.9:443"))
    activity_file.append(spool, refusal("10.0.0.9:8080", user="unknown"))
    with spool.open("a") as handle:
        handle.write('{"user": "half-writ')  # the guard is still writing this one
    first = RefusalSpool(spool).read_new()
    assert [(e.destination, e.user) for e in first] == [("10.0.0.9:443", "ann"), ("10.0.0.9:8080", "")]
    assert RefusalSpool(spool).read_new() == []  # a restarted agent continues where the last one stopped
    with spool.open("a") as handle:
        handle.write('ten"}\nnot json\n')
    assert [e.user for e in RefusalSpool(spool).read_new()] == ["half-written"]


def test_a_spool_read_to_its_end_and_past_the_bound_starts_over(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spool_path = tmp_path / "refusals.jsonl"
    spool_path.write_text("".join(json.dumps(refusal(f"10.0.0.9:{port}")) + "\n" for port in range(1000, 1300)))
    monkeypatch.setattr(refusals, "MAX_BYTES", 1000)
    spool = RefusalSpool(spool_path)
    assert len(spool.read_new()) == refusals.MAX_BATCH and spool_path.exists()  # a burst: in batches
    assert len(spool.read_new()) == 100 and not spool_path.exists()
    activity_file.append(spool_path, refusal("10.0.0.9:1"))
    assert [e.destination for e in spool.read_new()] == ["10.0.0.9:1"]
