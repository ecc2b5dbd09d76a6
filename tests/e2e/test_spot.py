"""Issue 7 end to end: economy mode. A spot interruption notice (from an IMDSv2 server on the cluster
bridge, answering per member IP) arrives while a 20-task array runs: the member is INTERRUPTED,
takes no new jobs, its running tasks are rescheduled before the deadline, and every task finishes
successfully — some of them on another member."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from manager.providers.local_config import LocalClusterConfig
from tests.e2e.cluster_helpers import TaskRecord, qacct_tasks, qsub, sge
from tests.e2e.localcluster import LocalCluster, job_script
from tests.harness import free_port, wait_until
from tests.imds import MetadataServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BRIDGE_IP = f"{LocalClusterConfig.__dataclass_fields__['subnet_prefix'].default}.1"


@pytest.fixture(scope="module")
def spot_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, MetadataServer]]:
    port = free_port()
    lc = LocalCluster(tmp_path_factory.mktemp("spot-cluster"),
                      ["--members", "2", "--cores", "4", "--memory", "4G", "--scratch-size", "64M",
                       "--allow-small-scratch", "--interval", "1", "--economy",
                       "--spot-metadata-url", f"http://{BRIDGE_IP}:{port}", "--no-spark"])
    try:
        lc.up()
        # The bridge exists now; the members' agents have been polling (and backing off) until here.
        with MetadataServer(host=BRIDGE_IP, port=port) as imds:
            yield lc, imds
    finally:
        lc.down()


def test_spot_notice_during_an_array_loses_no_task(spot_cluster: tuple[LocalCluster, MetadataServer]) -> None:
    cluster, imds = spot_cluster
    def two_ready() -> dict[str, dict[str, str]] | None:
        ready = {m["hostname"]: m for m in cluster.members().values() if m["state"] == "READY"}
        return ready if len(ready) >= 2 else None

    members = wait_until(two_ready, 120, "2 READY spot members")
    # Tasks outlast the point where rescheduling starts (deadline - 30 s), so the ones running on the
    # interrupted member cannot finish there in time and must move.
    script = job_script(cluster.state_root / "spot.sh", "sleep 25")
    job = qsub("-t", "1-20", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null",
               str(script))
    victim = wait_until(lambda: next((h for h in sorted(members)
                                      if sge("qstat", "-s", "r", "-q", f"all.q@{h}").stdout.strip()), None),
                        60, "tasks running on a member")
    victim_id, victim_ip = members[victim]["member_id"], members[victim]["ip"]
    imds.announce("terminate", time.time() + 35, to_ip=victim_ip)  # rescheduling starts 30 s before
    wait_until(lambda: cluster.members(tolerate_unreachable=True).get(victim_id, {}).get("state")
               in ("INTERRUPTED", "DRAINED", "TERMINATED"), 20, f"{victim} INTERRUPTED")
    wait_until(lambda: cluster.job_finished(job), 400, "every task of the array to finish", interval_s=2)
    def all_accounted() -> list[TaskRecord] | None:
        records = qacct_tasks(job)
        return records if {t.task_id for t in records} == set(range(1, 21)) else None

    records: list[TaskRecord] = wait_until(all_accounted, 60, "accounting of all 20 tasks")
    final = {r.task_id: r for r in sorted(records, key=lambda r: r.end)}  # the last run of each task
    assert all(final[t].exit_status == 0 for t in range(1, 21)), records
    moved = {r.task_id for r in records if r.hostname == victim} & {
        t for t, rec in final.items() if rec.hostname != victim}
    assert moved, "no task was moved off the interrupted member"
    story = [t["to_state"] for t in
             cluster.ctl_json("cluster", "members", "--history", victim_id)["members"][0]["history"]]
    assert "INTERRUPTED" in story
    assert any(r.startswith("PUT /latest/api/token") for r in imds.requests)
