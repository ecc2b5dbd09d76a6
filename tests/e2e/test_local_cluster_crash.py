"""`bench-cluster down` after `kill -9` of `bench-cluster up` mid-way leaves nothing behind.

Its own module because it needs the machine free of the running cluster of test_local_cluster.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchcluster.down import find_scope
from benchcluster.state import ClusterPaths
from manager.providers import local_processes
from tests.e2e.cluster_helpers import BIN, bench_cluster, leftovers
from tests.e2e.test_local_cluster import require_cluster_parts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def wait_until(what: str, probe, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_down_after_up_killed_mid_way(tmp_path: Path) -> None:
    require_cluster_parts()
    paths = ClusterPaths(tmp_path / "state")
    up = subprocess.Popen([str(BIN / "bench-cluster"), "--state-root", str(paths.root), "up", "--members", "3",
                           "--scratch-size", "64M", "--allow-small-scratch", "--port", "50562"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # mid-way: the manager is creating members, none of them has joined SGE yet or only some
        wait_until("a member's init process", lambda: bool(local_processes.marked_processes()), 120)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=30)
    # what a crash leaves: daemons that outlived `up`, namespaces, mounts, loop devices
    scope = find_scope(paths)
    assert scope.hostnames and scope.member_processes()
    down = bench_cluster(paths.root, "down", timeout_s=300)
    assert down.returncode == 0, down.stderr
    assert leftovers(paths, scope) == {}
    again = bench_cluster(paths.root, "down", timeout_s=300)
    assert again.returncode == 0, again.stderr  # idempotent: nothing to do is success


def test_down_with_no_cluster_is_a_no_op(tmp_path: Path) -> None:
    require_cluster_parts()
    paths = ClusterPaths(tmp_path / "never-up")
    proc = bench_cluster(paths.root, "down", "--keep-qmaster", timeout_s=300)
    assert proc.returncode == 0, proc.stderr
    assert "nothing left" in proc.stderr
