"""The chaos soak's bookkeeping: which tasks count as finished, lost, torn or run twice differently."""

from __future__ import annotations

import hashlib
from pathlib import Path

from benchmarks.chaos_report import leaked, parse_result, recovery_figures, task_outcomes


def write(directory: Path, name: str, body: str, checksum: str | None = None) -> Path:
    path = directory / name
    digest = checksum or hashlib.sha256((body + "\n").encode()).hexdigest()
    path.write_text(f"{body}\n{digest}\n")
    return path


def test_tasks_are_ok_lost_torn_or_run_twice_differently(tmp_path: Path) -> None:
    results = [parse_result(p) for p in (
        write(tmp_path, "7.1.bench-m01.100", "7.1 aaaa"),
        write(tmp_path, "7.1.bench-m02.200", "7.1 aaaa"),  # ran twice, same result: fine
        write(tmp_path, "7.2.bench-m01.101", "7.2 bbbb"),
        write(tmp_path, "7.2.bench-m03.300", "7.2 cccc"),  # ran twice, different result
        write(tmp_path, "7.3.bench-m01.102", "7.3 dddd", checksum="0" * 64),  # torn: does not count
    )]
    ok, twice, torn, lost = task_outcomes(["7.1", "7.2", "7.3", "7.4"], results)
    assert (ok, twice, torn, lost) == (2, 1, 1, ["7.3", "7.4"])


def test_recovery_figures_and_leaks() -> None:
    figures = recovery_figures({"manager": [1.0, 3.0, 2.0], "spot": []})
    assert figures == {"manager": {"n": 3, "p50_s": 2.0, "max_s": 3.0}}
    assert leaked({"a", "b"}, {"b", "c"}) == ["a (provider only)", "c (registry only)"]
