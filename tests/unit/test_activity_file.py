"""The activity log file: append-only, rotated by whole files within a bound, queried across them."""

from __future__ import annotations

import json
from pathlib import Path

from common import activity_file
from common.activity_file import ActivityQuery
from manager.activity import ActivityLog


def test_rotation_keeps_a_bounded_number_of_whole_files_and_never_edits_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "activity.log"
    log = ActivityLog(path, max_bytes=2000, keep=3)
    for i in range(200):
        log.record("ann", "cluster scale", "ok", n=i)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["activity.log", "activity.log.1", "activity.log.2", "activity.log.3"]
    assert all(f.stat().st_size < 2000 + 200 for f in files)  # one entry past the bound at most
    kept = [json.loads(line)["n"] for f in ["activity.log.3", "activity.log.2", "activity.log.1", "activity.log"]
            for line in (tmp_path / f).read_text().splitlines()]
    assert kept == list(range(kept[0], 200))  # oldest dropped whole, the rest in order, none rewritten
    assert [r["n"] for r in log.query(ActivityQuery(limit=5))] == [195, 196, 197, 198, 199]
    assert len(log.query(ActivityQuery())) == len(kept)


def test_query_filters_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "activity.log"
    activity_file.append(path, activity_file.entry("ann", "workspace add-url", "ok", at=1000.0))
    with path.open("a") as fh:
        fh.write('{"time": "1970-01-01T00:2')  # a writer killed mid-line
        fh.write("\n")
    activity_file.append(path, activity_file.entry("bob", "workspace", "ok", at=2000.0))
    activity_file.append(path, activity_file.entry("egress", "connection refused", "reset", at=3000.0,
                                                   node="bench-m01", destination="10.0.0.5:22"))
    assert [r["user"] for r in activity_file.query(path, ActivityQuery(action="workspace"))] == ["ann", "bob"]
    assert [r["user"] for r in activity_file.query(path, ActivityQuery(since_unix=2000.0))] == ["bob", "egress"]
    refused = activity_file.query(path, ActivityQuery(user="egress"))
    assert refused[0]["node"] == "bench-m01" and refused[0]["destination"] == "10.0.0.5:22"
    assert activity_file.query(path, ActivityQuery(action="workspace add")) == []  # whole words only


def test_an_oversized_entry_is_cut_to_one_write(tmp_path: Path) -> None:
    path = tmp_path / "activity.log"
    activity_file.append(path, activity_file.entry("ann", "workspace set-allowlist", "ok", entries=["a" * 50] * 500))
    line = path.read_text()
    assert line.count("\n") == 1 and len(line) <= activity_file.MAX_ENTRY_BYTES + 1
    assert json.loads(line)["action"] == "workspace set-allowlist"
