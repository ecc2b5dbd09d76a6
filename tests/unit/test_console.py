"""Tables stay whole when piped (make demo, CI logs, `| grep`): rich alone squeezes them to 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

COLUMNS = ["member", "hostname", "state", "cores", "memory", "scratch free", "jobs", "mounts", "heartbeat", "drain"]
ROW = ["m-0123456789abcdef", "bench-m01", "READY", "3", "1.5G", "48.0M", "2", "1", "3s ago", "wait-jobs: 2 running"]

PROGRAM = f"""
from ctl.output import table
table("members", {COLUMNS!r}, [{ROW!r}])
"""


def render(extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | extra_env
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                          env=env, timeout=60).stdout


def test_a_piped_table_keeps_every_header_and_value_whole() -> None:
    out = render({})
    assert "…" not in out
    for word in [*COLUMNS, *ROW]:
        assert word in out, f"{word!r} cut from:\n{out}"
    # one line per row: nothing wrapped onto a second line
    assert sum("m-0123456789abcdef" in line for line in out.splitlines()) == 1


def test_columns_set_by_the_caller_still_wins() -> None:
    assert "…" in render({"COLUMNS": "60"})
