"""Issue 5 end to end: the SGE autoscaler on a local cluster with real SGE and namespace members.

One dynamic cluster for the module (short timings): fill-up packing, a burst met in one operation
within max, an oversize job that never scales, idle members drained and removed, and a manager
killed with -9 in the middle of a scale-up that still completes once.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster_helpers import qsub, sge, wait_for_tasks
from tests.e2e.localcluster import LocalCluster, job_script, kill9_and_restart_manager
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

MAX = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    state = tmp_path_factory.mktemp("autoscaler-cluster")
    lc = LocalCluster(state, ["--mode", "dynamic", "--min", "2", "--max", str(MAX), "--cores", "3",
                              "--memory", "3G", "--scratch-size", "64M", "--allow-small-scratch",
                              "--min-age", "10", "--idle", "8", "--interval", "2", "--no-spark"])
    try:
        lc.up()
        yield lc
    finally:
        lc.down()


@pytest.fixture
def jobs_dir() -> Path:
    path = Path("/data/e2e-autoscaler")
    path.mkdir(parents=True, exist_ok=True)
    return path


def decisions(lc: LocalCluster, action: str, since: float) -> list[dict[str, object]]:
    out = []
    for record in lc.scaler_log():
        when = time.mktime(time.strptime(str(record["time"])[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        if record["decision"] == action and when >= since - 1:
            out.append(record)
    return out


def test_fill_up_packing_keeps_surplus_members_idle(cluster: LocalCluster, jobs_dir: Path) -> None:
    wait_until(lambda: len(cluster.ready_members()) == 2, 120, "the 2 minimum members READY")
    script = job_script(jobs_dir / "pack.sh", "sleep 6")
    ids = [qsub("-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null", str(script))
           for _ in range(2)]
    for job in ids:
        cluster.wait_job(job, 120)
    hosts = {wait_for_tasks(job, 1, 60)[0].hostname for job in ids}
    # 2 usable cores per member (3 - 1 reserved for scheduling): both jobs fit on the first member
    assert len(hosts) == 1, f"jobs were spread over {hosts}; SGE should fill one member first"


def test_burst_is_met_in_one_operation_within_max(cluster: LocalCluster, jobs_dir: Path) -> None:
    script = job_script(jobs_dir / "burst.sh", "sleep 5; echo $SGE_TASK_ID > /data/e2e-autoscaler/out.$SGE_TASK_ID")
    started = time.time()
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(AssertionError, ValueError):  # a slow answer just skips a sample
                peak[0] = max(peak[0], len(cluster.live_members()))
            stop.wait(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = qsub("-t", "1-16", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null",
                           "-e", "/dev/null", str(script))
        cluster.wait_job(job, 400)
    finally:
        stop.set()
        watcher.join(5)
    records = wait_for_tasks(job, 16, 60)
    assert sorted(r.task_id for r in records) == list(range(1, 17))
    assert all(r.exit_status == 0 for r in records)
    ups = decisions(cluster, "scale-up", started)
    assert len(ups) == 1, f"the burst should be met by one scale-up, got {ups}"
    assert ups[0]["count"] == MAX - 2  # 16 tasks need 8 members: clamped to max, in one step
    assert peak[0] <= MAX
    assert len({r.hostname for r in records}) >= 3


def test_oversize_job_never_triggers_a_scale_up(cluster: LocalCluster, jobs_dir: Path) -> None:
    script = job_script(jobs_dir / "big.sh", "sleep 1")
    started = time.time()
    job = qsub("-l", "static_cores=64", "-o", "/dev/null", "-e", "/dev/null", str(script))
    try:
        wait_until(lambda: any(f"ignored job {job}" in msg for r in cluster.scaler_log()
                               for msg in r.get("ignored_jobs", [])), 60, "the scaler to log the ignored job")
        time.sleep(6)  # a few more scaler passes
        assert not cluster.job_finished(job)  # left pending, not an error
        assert decisions(cluster, "scale-up", started) == []
        status = cluster.ctl("cluster", "status").stdout
        assert "last decision" in status
    finally:
        sge("qdel", str(job), check=False)


def test_idle_members_are_drained_and_removed(cluster: LocalCluster) -> None:
    cluster.ctl("cluster", "scale", "--min", "0", "--max", str(MAX))
    wait_until(lambda: not cluster.live_members(), 240, "every idle member drained and removed", interval_s=2)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    hostnames = [m["hostname"] for m in cluster.members().values()]
    assert hostnames and not any(h in netns for h in hostnames)
    assert not any(h in sge("qconf", "-sel", check=False).stdout.split() for h in hostnames)


def test_manager_kill9_mid_scale_up_completes_once(cluster: LocalCluster, jobs_dir: Path) -> None:
    cluster.ctl("cluster", "scale", "--min", "0", "--max", "2")
    wait_until(lambda: not cluster.live_members(), 240, "an empty cluster to start from", interval_s=2)
    before = set(cluster.members())
    script = job_script(jobs_dir / "resume.sh", "sleep 3")
    job = qsub("-t", "1-4", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null",
                       str(script))
    wait_until(lambda: set(cluster.live_members()) - before, 60, "the scale-up to start", interval_s=0.5)
    kill9_and_restart_manager(cluster.state_root)
    wait_until(lambda: cluster.members(tolerate_unreachable=True), 60, "the restarted manager to answer")
    cluster.wait_job(job, 300)
    assert all(r.exit_status == 0 for r in wait_for_tasks(job, 4, 60))
    launched = set(cluster.members()) - before
    assert len(launched) == 2, f"expected exactly the 2 members of one scale-up, got {sorted(launched)}"
