"""The chaos soak (benchmarks/chaos.py) for 3 minutes: faults at random during real work leave no task
lost, no member leaked, no mount stale and no queue disabled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_sge

# 3 minutes of faults, then up to 10 minutes for the last arrays to settle, then the teardown
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_three_minutes_of_chaos_lose_nothing() -> None:
    require_sge()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.chaos", "--minutes", "3", "--seed", "3"],
                          capture_output=True, text=True, timeout=1500, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    summary = json.loads(lines[-1])
    assert summary["tasks_submitted"] > 0 and sum(summary["faults"].values()) >= 5, summary
    assert (summary["lost"], summary["run_twice_different"], summary["members_leaked"], summary["mounts_stale"],
            summary["queues_disabled"]) == (0, 0, 0, 0, 0), proc.stdout[-5000:]
    assert summary["finished_ok"] == summary["tasks_submitted"]
    assert proc.returncode == 0
