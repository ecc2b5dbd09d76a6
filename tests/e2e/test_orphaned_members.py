"""Members never outlive their manager: with the manager (and its supervisor) stopped, a dynamic member
fences itself (SGE queue in alarm, no new job), finishes its running task, wipes /scratch and ends
itself; the manager, back, records it as gone with the reason, and the task's exit status is in qacct.
A static member under the same outage stays and keeps retrying."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from benchcluster import daemons
from benchcluster.state import ClusterPaths
from manager.providers import local_processes
from tests.e2e.cluster_helpers import bench_cluster, qsub, sge, wait_for_tasks
from tests.e2e.localcluster import LocalCluster, job_script
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = Path("/data/e2e-orphan")
ORPHAN_TIMEOUT_S = 8
CLUSTER_ID = "local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    JOBS.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(tmp_path_factory.mktemp("orphan") / "state",
                      ["--mode", "dynamic", "--min", "1", "--max", "1", "--cores", "3", "--memory", "3G",
                       "--scratch-size", "64M", "--allow-small-scratch", "--interval", "1",
                       "--orphan-timeout", str(ORPHAN_TIMEOUT_S), "--no-spark"])
    try:
        lc.up()
        wait_until(lambda: len(lc.ready_members()) == 1, 180, "the dynamic cluster's one member READY")
        yield lc
    finally:
        lc.down()


def the_member(lc: LocalCluster) -> tuple[str, str]:
    ready = lc.ready_members()
    assert len(ready) == 1, lc.members()
    return ready[0], lc.members()[ready[0]]["hostname"]


def agent_dir(lc: LocalCluster, hostname: str) -> Path:
    return lc.state_root / "members" / hostname / "agent"


def reregister_agent(lc: LocalCluster, member_id: str, hostname: str, expect: str) -> None:
    """Restart the member's agent (its init starts it again) so it registers and learns its kind."""
    init = local_processes.member_init_pid(CLUSTER_ID, member_id)
    assert init is not None
    (agent,) = [c for c in psutil.Process(init).children() if "bench-agent" in " ".join(c.cmdline())]
    agent.kill()
    wait_until(lambda: (agent_dir(lc, hostname) / "dynamic").read_text().strip() == expect
               and lc.members().get(member_id, {}).get("state") == "READY", 90,
               f"{hostname}'s agent back and told it is {expect}", interval_s=1.0)


def stop_manager(lc: LocalCluster) -> None:
    assert daemons.stop(ClusterPaths(lc.state_root), "manager"), "the manager ran without its supervisor"
    assert lc.ctl("cluster", "members", check=False).returncode == 3  # unreachable now


def start_manager(lc: LocalCluster) -> None:
    result = bench_cluster(lc.state_root, "up", timeout_s=120)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: lc.members(tolerate_unreachable=True) != {}, 60, "the manager answering again")


def orphan_state(lc: LocalCluster, hostname: str) -> str:
    try:
        return str(json.loads((agent_dir(lc, hostname) / "orphan.json").read_text())["state"])
    except (OSError, ValueError):
        return "attached"


def test_a_static_member_stays_however_long_its_manager_is_away(cluster: LocalCluster) -> None:
    cluster.ctl("cluster", "scale", "--static", "1")
    member_id, hostname = the_member(cluster)
    reregister_agent(cluster, member_id, hostname, "static")
    stop_manager(cluster)
    try:
        wait_until(lambda: orphan_state(cluster, hostname) == "adrift", 30, f"{hostname} noticing the outage")
        time.sleep(ORPHAN_TIMEOUT_S * 3)
        assert local_processes.member_init_pid(CLUSTER_ID, member_id) is not None, f"{hostname} ended itself"
        assert orphan_state(cluster, hostname) == "adrift"
    finally:
        start_manager(cluster)
    wait_until(lambda: orphan_state(cluster, hostname) == "attached", 60, f"{hostname} reattached")
    assert cluster.members()[member_id]["state"] == "READY"


def test_a_dynamic_member_finishes_its_task_then_ends_itself_and_the_manager_reconciles_it(
        cluster: LocalCluster) -> None:
    cluster.ctl("cluster", "scale", "--min", "1", "--max", "1")
    member_id, hostname = the_member(cluster)
    reregister_agent(cluster, member_id, hostname, "dynamic")
    result = JOBS / f"result-{member_id}"
    result.unlink(missing_ok=True)
    script = job_script(JOBS / "long.sh", f"sleep 25; hostname > {result}")
    job = qsub("-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null", str(script))
    wait_until(lambda: f" {job} " in f" {sge('qstat', '-s', 'r').stdout} ", 60, "the task running")

    stop_manager(cluster)
    try:
        wait_until(lambda: orphan_state(cluster, hostname) == "fenced", ORPHAN_TIMEOUT_S + 30,
                   f"{hostname} fencing itself")
        # The load sensor's bench_orphaned=1 puts the queue instance into alarm: no new job there.
        wait_until(lambda: "a" in queue_state(hostname), 30, f"all.q@{hostname} in alarm")
        late = qsub("-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null",
                    str(job_script(JOBS / "late.sh", "true")))
        assert local_processes.member_init_pid(CLUSTER_ID, member_id) is not None, "ended before its task"
        wait_until(lambda: local_processes.member_init_pid(CLUSTER_ID, member_id) is None, 120,
                   f"{hostname} ending itself after its task")
        assert result.read_text().strip() == hostname  # the task ran to its end on the member
        assert f" {late} " in f" {sge('qstat', '-s', 'p').stdout} ", "a job started on the fenced member"
    finally:
        start_manager(cluster)

    (record,) = wait_for_tasks(job, 1, 60)
    assert record.exit_status == 0, record

    def gone() -> bool:
        return cluster.members().get(member_id, {}).get("state") == "TERMINATED"
    wait_until(gone, 60, f"the manager recording {member_id} as gone")
    story = cluster.ctl_json("cluster", "members", "--history", member_id)["members"][0]["history"]
    assert story[-1]["to_state"] == "TERMINATED" and "left on its own" in story[-1]["reason"], story[-1]
    assert hostname not in sge("qconf", "-sel", check=False).stdout.split()  # exec host config removed
    assert not (cluster.state_root / "members" / hostname).exists()  # no leaked provider node
    entries = cluster.ctl_json("workspace", "activity", "--since", "10m", "--action", "member left")
    assert member_id in json.dumps(entries), entries
    sge("qdel", str(late), check=False)


def queue_state(hostname: str) -> str:
    """The state letters of all.q@hostname in `qstat -f` ('' when fine, 'a' = load alarm)."""
    for line in sge("qstat", "-f", "-q", f"all.q@{hostname}", check=False).stdout.splitlines():
        if line.startswith(f"all.q@{hostname}"):
            parts = line.split()
            return parts[5] if len(parts) > 5 else ""
    return ""
