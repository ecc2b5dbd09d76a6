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


def test_queries_read_newest_first_and_stop_early_with_the_same_answers(tmp_path: Path) -> None:
    """A large log (many rotated files) answers the newest matches oldest first, across files, a user with
    non-ASCII letters included; a `since` query stops reading once it has gone back past it."""
    path = tmp_path / "activity.log"
    log = ActivityLog(path, max_bytes=4000, keep=60)
    for i in range(1000):
        log.record("zoë" if i % 7 == 0 else "ann", "cluster scale" if i % 2 else "data create-mount", "ok",
                   at=10_000.0 + i, n=i)
    everything = [r["n"] for r in log.query(ActivityQuery(limit=100_000))]
    assert everything == sorted(everything) and everything[-1] == 999 and everything[0] == 0
    assert [r["n"] for r in log.query(ActivityQuery(user="zoë", limit=3))] == [980, 987, 994]
    assert [r["n"] for r in log.query(ActivityQuery(action="cluster", limit=2))] == [997, 999]
    assert [r["n"] for r in log.query(ActivityQuery(since_unix=10_995.0))] == [995, 996, 997, 998, 999]
    assert log.query(ActivityQuery(user="nobody-at-all")) == []
    # the reading stops at entries older than `since` by more than the ordering slack: an old file is
    # not read at all (an entry planted there is not found), yet the answer is the same
    oldest = max(tmp_path.iterdir(), key=lambda f: int(f.suffix[1:]) if f.suffix[1:].isdigit() else 0)
    activity_file.append(oldest, activity_file.entry("planted", "cluster scale", "ok", at=10_999.0, n=-1))
    assert [r["n"] for r in log.query(ActivityQuery(since_unix=10_998.0))] == [998, 999]
    assert -1 in [r["n"] for r in log.query(ActivityQuery(user="planted"))]
