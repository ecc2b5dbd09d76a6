"""Drains over real processes without SGE: the agent-side steps (unmount, wipe /scratch, shutdown),
persistence across a manager kill -9 at every step, and spot notices from a real IMDS endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from manager.drain_table import DrainStep
from tests.harness import ControlPlane, wait_until
from tests.imds import MetadataServer


def _start(tmp_path: Path, nodes: tuple[str, ...], *agent_args: str) -> ControlPlane:
    cp = ControlPlane(tmp_path)
    cp.start_manager()
    for node in nodes:
        cp.start_agent(node, *agent_args)
    wait_until(lambda: sorted(cp.states().items()) == [(n, "READY") for n in sorted(nodes)], 15, "members READY")
    return cp


def _history(cp: ControlPlane, member: str) -> list[tuple[str, str]]:
    out = cp.ctl("cluster", "members", "--history", member, "--output", "json")
    assert out.returncode == 0, out.stderr
    return [(t["from_state"], t["to_state"]) for t in json.loads(out.stdout)["members"][0]["history"]]


def _fill_scratch(cp: ControlPlane, node: str, outside: Path) -> Path:
    scratch = cp.root / node / "scratch"
    (scratch / "job.1.1" / "deep").mkdir(parents=True)
    (scratch / "job.1.1" / "deep" / "result.bin").write_bytes(b"x" * 4096)
    (scratch / "escape").symlink_to(outside)  # a link pointing out of /scratch
    (scratch / "job.1.1" / "escape-dir").symlink_to(outside.parent)
    return scratch


def test_user_drain_wipes_scratch_and_never_follows_symlinks(tmp_path: Path) -> None:
    cp = _start(tmp_path, ("node-a", "node-b"))
    try:
        outside = tmp_path / "precious" / "keep.txt"
        outside.parent.mkdir()
        outside.write_text("must survive")
        scratch = _fill_scratch(cp, "node-b", outside)
        result = cp.ctl("cluster", "drain", "node-b")
        assert result.returncode == 0, result.stderr
        wait_until(lambda: cp.states().get("node-b") == "TERMINATED", 30, "node-b drained and terminated")
        assert sorted(p.name for p in scratch.iterdir()) == [".bench-scratch"]
        assert outside.read_text() == "must survive" and outside.parent.is_dir()
        wait_until(lambda: not cp.agents["node-b"].alive, 10, "node-b's agent stopped")
        assert cp.states()["node-a"] == "READY"
        assert _history(cp, "node-b")[-3:] == [("READY", "DRAINING"), ("DRAINING", "DRAINED"),
                                               ("DRAINED", "TERMINATED")]
        activity = (cp.data_root / "logs" / "activity.log").read_text().splitlines()
        assert any(json.loads(line)["action"] == "cluster drain" and json.loads(line)["result"] == "ok"
                   for line in activity)
    finally:
        cp.shutdown()


def test_drain_bad_input_is_rejected_and_changes_nothing(tmp_path: Path) -> None:
    cp = _start(tmp_path, ("node-a",))
    try:
        unknown = cp.ctl("cluster", "drain", "no-such-node")
        assert unknown.returncode == 1 and "no member 'no-such-node'" in unknown.stderr
        negative = cp.ctl("cluster", "drain", "node-a", "--deadline", "-5")
        assert negative.returncode == 1 and "deadline" in negative.stderr
        time.sleep(1)
        assert cp.states() == {"node-a": "READY"}
    finally:
        cp.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("hold", [s.value for s in (DrainStep.START, DrainStep.QUEUE_DISABLED,
                                                     DrainStep.JOBS_DONE, DrainStep.UNMOUNTED,
                                                     DrainStep.SCRATCH_WIPED, DrainStep.OUT_OF_SGE,
                                                     DrainStep.TERMINATING)])
def test_manager_kill9_at_each_drain_step_completes_once(tmp_path: Path, hold: str) -> None:
    cp = _start(tmp_path, ("node-a",))
    try:
        assert cp.manager is not None
        # restart the manager with the test hook that parks drains at `hold`
        cp.manager.stop()
        cp.manager.env["BENCH_TEST_DRAIN_HOLD"] = hold
        cp.manager.start()
        wait_until(lambda: cp.states().get("node-a") == "READY", 15, "node-a READY")
        assert cp.ctl("cluster", "drain", "node-a").returncode == 0
        wait_until(lambda: cp.members().get("node-a", {}).get("drain_step") == hold, 20, f"drain parked at {hold}")
        cp.manager.kill9()
        cp.manager.env.pop("BENCH_TEST_DRAIN_HOLD")
        cp.manager.start()
        wait_until(lambda: cp.states().get("node-a") == "TERMINATED", 30, "drain completed after restart")
        history = _history(cp, "node-a")
        for transition in (("READY", "DRAINING"), ("DRAINING", "DRAINED"), ("DRAINED", "TERMINATED")):
            assert history.count(transition) == 1, history
    finally:
        cp.shutdown()


def test_spot_notice_interrupts_and_drains_the_member(tmp_path: Path) -> None:
    with MetadataServer() as imds:
        cp = ControlPlane(tmp_path)
        cp.start_manager()
        cp.start_agent("spot-1", "--spot-metadata-url", imds.url, "--spot-poll", "0.2")
        cp.start_agent("ondemand-1")
        try:
            wait_until(lambda: set(cp.states().values()) == {"READY"} and len(cp.states()) == 2, 15, "READY")
            imds.announce("terminate", time.time() + 120)
            wait_until(lambda: cp.states().get("spot-1") in ("INTERRUPTED", "DRAINED", "TERMINATED"), 10,
                       "spot-1 interrupted")
            wait_until(lambda: cp.states().get("spot-1") == "TERMINATED", 30, "spot-1 drained away")
            history = _history(cp, "spot-1")
            assert ("READY", "INTERRUPTED") in history
            assert cp.states()["ondemand-1"] == "READY"
        finally:
            cp.shutdown()
