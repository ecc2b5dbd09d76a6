"""Issue 20: restricted-workspace settings over a real manager process — the `workspace` CLI,
pending vs in force, persistence across a kill -9, bad input, and the activity query."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ControlPlane, wait_until


def start_manager(cp: ControlPlane) -> None:
    cp.start_manager()
    wait_until(lambda: cp.ctl("workspace", "get-settings").returncode == 0, 20, "the manager serving")


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path)
    start_manager(cp)
    yield cp
    cp.shutdown()


def ctl_json(cp: ControlPlane, *args: str) -> Any:
    result = cp.ctl(*args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def test_changes_are_pending_until_the_next_cluster_start_and_survive_a_restart(plane: ControlPlane,
                                                                               tmp_path: Path) -> None:
    fresh = ctl_json(plane, "workspace", "get-settings")
    assert fresh["in_force"]["allowlist"] == [] and fresh["in_force"]["upload"] is True
    assert fresh["has_pending"] is False
    urls = tmp_path / "urls.txt"
    urls.write_text("# data science\npypi.org\nfiles.pythonhosted.org\n\n.example.com\n")
    ok(plane.ctl("workspace", "set-allowlist", "--file", str(urls)))
    ok(plane.ctl("workspace", "add-url", "https://github.com"))
    ok(plane.ctl("workspace", "remove-url", "pypi.org"))
    ok(plane.ctl("workspace", "set-rights", "--upload", "off"))
    settings = ctl_json(plane, "workspace", "get-settings")
    assert settings["in_force"]["allowlist"] == [] and settings["has_pending"] is True
    assert settings["pending"]["allowlist"] == ["files.pythonhosted.org", ".example.com", "https://github.com"]
    assert settings["pending"]["upload"] is False
    table = ok(plane.ctl("workspace", "get-settings")).stdout
    assert "pending" in table and "next cluster start" in table

    # a kill -9 loses nothing; the restart is a cluster start: pending comes in force
    assert plane.manager is not None
    plane.manager.kill9()
    start_manager(plane)
    after = ctl_json(plane, "workspace", "get-settings")
    assert after["in_force"]["allowlist"] == settings["pending"]["allowlist"]
    assert after["in_force"]["upload"] is False and after["has_pending"] is False

    # the next change is pending again until `cluster start`
    ok(plane.ctl("workspace", "set-rights", "--upload", "on"))
    assert ctl_json(plane, "workspace", "get-settings")["in_force"]["upload"] is False
    ok(plane.ctl("cluster", "start"))
    assert ctl_json(plane, "workspace", "get-settings")["in_force"]["upload"] is True


def test_bad_entries_are_refused_with_the_rule_and_nothing_changes(plane: ControlPlane, tmp_path: Path) -> None:
    ok(plane.ctl("workspace", "add-url", "example.com"))
    bad = plane.ctl("workspace", "add-url", "bad-.example.com")
    assert bad.returncode == 1 and "invalid argument" in bad.stderr and "first or last" in bad.stderr
    urls = tmp_path / "urls.txt"
    urls.write_text("pypi.org\nexample..com\nftp://x.example.com\n")
    result = plane.ctl("workspace", "set-allowlist", "--file", str(urls))
    assert result.returncode == 1
    assert "line 2" in result.stderr and "line 3" in result.stderr and "http:// or https://" in result.stderr
    missing = plane.ctl("workspace", "set-allowlist", "--file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert ctl_json(plane, "workspace", "get-settings")["pending"]["allowlist"] == ["example.com"]
    gone = plane.ctl("workspace", "remove-url", "pypi.org")
    assert gone.returncode == 1 and "not found" in gone.stderr and "example.com" in gone.stderr
    last = plane.ctl("workspace", "remove-url", "example.com")
    assert last.returncode == 1 and "last allowed URL" in last.stderr
    assert plane.ctl("workspace", "activity", "--since", "yesterday-ish").returncode == 2


def test_activity_query_filters_by_user_action_and_time(plane: ControlPlane) -> None:
    ok(plane.ctl("cluster", "scale", "--static", "0"))
    ok(plane.ctl("workspace", "add-url", "example.com"))
    ok(plane.ctl("workspace", "set-rights", "--upload", "off"))
    assert plane.ctl("workspace", "add-url", "bad_.example.com").returncode == 1
    log = plane.data_root / "logs" / "activity.log"
    # an entry from long ago, by someone else (as the log holds after weeks of use)
    with log.open("a") as fh:
        fh.write(json.dumps({"time": "2020-01-01T00:00:00Z", "user": "old", "action": "cluster start",
                             "result": "ok"}) + "\n")
    import getpass
    me = getpass.getuser()
    recent = ctl_json(plane, "workspace", "activity", "--since", "10m", "--user", me)["entries"]
    recent = [e for e in recent if e["result"] != "attempt"]  # the interceptor also logs each attempt
    actions = [(e["action"], e["result"].split(":")[0]) for e in recent]
    assert actions == [("cluster scale", "ok"), ("workspace add-url", "ok"), ("workspace set-rights", "ok"),
                       ("workspace add-url", "failed")]
    assert "example.com" in json.dumps(recent[1]) and "upload off" in json.dumps(recent[2])
    only_workspace = ctl_json(plane, "workspace", "activity", "--action", "workspace")["entries"]
    assert {e["action"] for e in only_workspace} == {"workspace add-url", "workspace set-rights"}
    everyone = ctl_json(plane, "workspace", "activity")["entries"]
    assert any(e["user"] == "old" for e in everyone)
    assert not any(e["user"] == "old" for e in ctl_json(plane, "workspace", "activity", "--since", "1h")["entries"])
    assert "workspace set-rights" in ok(plane.ctl("workspace", "activity", "--since", "1h")).stdout
