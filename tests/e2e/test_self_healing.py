"""A local cluster heals as production nodes do under systemd: the manager, the manager node's agent
and sge_qmaster come back by themselves after kill -9 while jobs run, and `bench-cluster up` over an
existing cluster repairs what is down instead of refusing. Members are named by their hostnames."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from benchcluster import daemons, sge_setup
from benchcluster.state import ClusterPaths
from tests.e2e.cluster_helpers import bench_cluster, qsub, sge, wait_for_tasks
from tests.e2e.localcluster import LocalCluster, job_script, manager_process
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = Path("/data/e2e-healing")
BACK_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    JOBS.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(tmp_path_factory.mktemp("healing") / "state",
                      ["--members", "2", "--cores", "3", "--memory", "3G", "--scratch-size", "64M",
                       "--allow-small-scratch", "--interval", "1", "--no-spark"])
    try:
        lc.up()
        yield lc
    finally:
        lc.down()


def member_ids(lc: LocalCluster) -> set[str]:
    return {mid for mid, m in lc.members(tolerate_unreachable=True).items() if m["state"] != "TERMINATED"}


def answers_within(lc: LocalCluster, expected: set[str], what: str) -> float:
    """Seconds until `workspace-ctl cluster members` answers again with exactly `expected`."""
    start = time.monotonic()
    wait_until(lambda: member_ids(lc) == expected, BACK_WITHIN_S + 20, what, interval_s=0.5)
    return time.monotonic() - start


def running_array(tasks: int, seconds: int) -> int:
    script = job_script(JOBS / "work.sh", f"sleep {seconds}")
    job = qsub("-t", f"1-{tasks}", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null",
               str(script))
    wait_until(lambda: sge("qstat", "-s", "r").stdout.count(str(job)) > 0, 60, "the array running")
    return job


def test_manager_killed_with_9_comes_back_with_the_same_members_and_jobs_finish(cluster: LocalCluster) -> None:
    before = member_ids(cluster)
    assert len(before) == 2
    job = running_array(4, 15)
    old = manager_process(cluster.state_root)
    old.kill()
    took = answers_within(cluster, before, "the manager back with the same members")
    assert took <= BACK_WITHIN_S, f"workspace-ctl answered after {took:.1f} s"
    assert manager_process(cluster.state_root).pid != old.pid
    records = wait_for_tasks(job, 4, 180)
    assert all(r.exit_status == 0 for r in records), records


def test_qmaster_killed_with_9_comes_back_and_jobs_finish(cluster: LocalCluster) -> None:
    install = sge_setup.SgeInstall()
    job = running_array(4, 15)
    pid = sge_setup.qmaster_pid(install)
    assert pid is not None and sge_setup.qmaster_supervisor_pid() is not None
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    wait_until(lambda: sge("qhost", check=False).returncode == 0 and sge_setup.qmaster_pid(install) not in (None, pid),
               60, "sge_qmaster back")
    took = time.monotonic() - start
    assert took <= BACK_WITHIN_S + 5, f"qmaster answered after {took:.1f} s"  # its own start takes a few s
    records = wait_for_tasks(job, 4, 240)
    assert all(r.exit_status == 0 for r in records), records


def test_manager_node_agent_killed_with_9_comes_back(cluster: LocalCluster) -> None:
    paths = ClusterPaths(cluster.state_root)
    supervisor = daemons.supervisor_of(paths, "host-agent")
    assert supervisor is not None
    (agent,) = psutil.Process(supervisor).children()
    agent.kill()
    wait_until(lambda: [c.pid for c in psutil.Process(supervisor).children()] not in ([], [agent.pid]),
               BACK_WITHIN_S, "the manager node's agent restarted")
    def manager_node_ready() -> bool:
        listed = cluster.ctl_json("cluster", "members")["members"]
        return any(m["member_id"] == "manager" and m["state"] == "READY" for m in listed)
    wait_until(manager_node_ready, 30, "the manager node's agent READY again")


def test_up_over_a_healthy_cluster_changes_nothing(cluster: LocalCluster) -> None:
    before = member_ids(cluster)
    manager = manager_process(cluster.state_root).pid
    result = bench_cluster(cluster.state_root, "up", timeout_s=120)
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in " ".join(result.stderr.split())
    assert manager_process(cluster.state_root).pid == manager and member_ids(cluster) == before


def test_up_repairs_a_cluster_whose_manager_and_supervisor_were_killed(cluster: LocalCluster) -> None:
    paths = ClusterPaths(cluster.state_root)
    before = member_ids(cluster)
    job = running_array(2, 20)
    supervisor = daemons.supervisor_of(paths, "manager")
    assert supervisor is not None
    psutil.Process(supervisor).kill()  # nothing will bring the manager back now ...
    manager_process(cluster.state_root).kill()
    time.sleep(3)
    assert cluster.ctl("cluster", "members", check=False).returncode == 3  # unreachable
    result = bench_cluster(cluster.state_root, "up", timeout_s=120)  # ... but up repairs it
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "repaired: started manager" in said, said
    assert member_ids(cluster) == before
    assert all(r.exit_status == 0 for r in wait_for_tasks(job, 2, 180))


def test_drain_and_history_by_hostname_and_unknown_names_list_the_candidates(cluster: LocalCluster) -> None:
    members = {m["hostname"]: mid for mid, m in cluster.members().items() if m["state"] == "READY"}
    hostname = sorted(members)[-1]
    unknown = cluster.ctl("cluster", "drain", "bench-m99", check=False)
    assert unknown.returncode == 1
    assert all(f"{h} ({mid}, READY)" in " ".join(unknown.stderr.split()) for h, mid in members.items()), unknown.stderr
    cluster.ctl("cluster", "drain", hostname)
    wait_until(lambda: cluster.members()[members[hostname]]["state"] in ("DRAINED", "TERMINATED"), 180,
               f"{hostname} drained")
    story = cluster.ctl_json("cluster", "members", "--history", hostname)["members"][0]
    assert story["member_id"] == members[hostname]
    assert ("READY", "DRAINING") in [(t["from_state"], t["to_state"]) for t in story["history"]]
