"""Issue 7 end to end: drains on a local cluster with real SGE — scale-in never kills a job, /scratch is
wiped and unmounted, the namespace goes, a spot notice moves jobs elsewhere, and a manager killed with
-9 between drain steps finishes the drain once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.drain import HOLD_STEP_ENV as HOLD_ENV
from tests.e2e.cluster_helpers import bench_cluster, qsub, sge, wait_for_tasks
from tests.e2e.localcluster import LocalCluster, job_script, kill9_and_restart_manager
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

JOBS = Path("/data/e2e-drains")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    JOBS.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(tmp_path_factory.mktemp("drain-cluster"),
                      ["--members", "2", "--cores", "3", "--memory", "3G", "--scratch-size", "64M",
                       "--allow-small-scratch", "--interval", "1", "--no-spark"])
    try:
        lc.up()
        yield lc
    finally:
        lc.down()


def ready_hosts(lc: LocalCluster, count: int) -> dict[str, str]:
    """hostname -> member id of READY members (ids are the provider's, hostnames bench-mNN)."""
    def enough() -> dict[str, str] | None:
        ready = {m["hostname"]: mid for mid, m in lc.members().items() if m["state"] == "READY"}
        return ready if len(ready) >= count else None
    return dict(wait_until(enough, 240, f"{count} READY members", interval_s=2))


def history(lc: LocalCluster, member: str) -> list[tuple[str, str]]:
    out = lc.ctl_json("cluster", "members", "--history", member)["members"][0]["history"]
    return [(t["from_state"], t["to_state"]) for t in out]


def namespace_gone(lc: LocalCluster, member_id: str, hostname: str) -> bool:
    """The drained member's namespaces are gone. Static mode replaces it, and the replacement may take
    the freed slot (same hostname, new member id): then the namespace must belong to the new member."""
    status = json.loads(bench_cluster(lc.state_root, "status", "--output", "json").stdout)
    members = {m["member_id"]: m for m in status["members"]}
    if members.get(member_id, {}).get("running"):
        return False
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    if not any(line.split()[0].endswith(hostname) for line in listing.splitlines() if line.strip()):
        return True
    return any(m["hostname"] == hostname and m["running"] and mid != member_id for mid, m in members.items())


def test_scale_in_while_jobs_run_kills_none_and_leaves_nothing(cluster: LocalCluster) -> None:
    hosts = ready_hosts(cluster, 2)
    script = job_script(JOBS / "tmpdir.sh", 'echo "$TMPDIR" > /data/e2e-drains/tmpdir.$SGE_TASK_ID\n'
                        'dd if=/dev/zero of="$TMPDIR/scratch.bin" bs=1M count=2 status=none\nsleep 15')
    job = qsub("-t", "1-8", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null",
               str(script))
    host = wait_until(lambda: next((h for h in hosts if sge("qstat", "-s", "r", "-q", f"all.q@{h}").stdout.strip()),
                                   None), 60, "a task running on a member")
    victim = hosts[host]
    cluster.ctl("cluster", "drain", victim)
    wait_until(lambda: cluster.members()[victim]["state"] == "DRAINING", 10, f"{victim} DRAINING")
    progress = cluster.members()[victim]
    assert progress["drain_step"] in ("start", "queue-disabled", "jobs-done")
    records = wait_for_tasks(job, 8, 300)
    assert all(r.exit_status == 0 for r in records), [(r.task_id, r.exit_status) for r in records]
    tmpdirs = [Path(f"/data/e2e-drains/tmpdir.{i}").read_text().strip() for i in range(1, 9)]
    assert all(t.startswith("/scratch/") for t in tmpdirs)  # per-job $TMPDIR on /scratch
    wait_until(lambda: cluster.members()[victim]["state"] == "TERMINATED", 120, f"{victim} terminated")
    assert namespace_gone(cluster, victim, host)
    assert host not in sge("qconf", "-sel", check=False).stdout.split()
    assert ("READY", "DRAINING") in history(cluster, victim)
    # the surviving member's per-job directories were removed by SGE when each job ended
    survivor = next(h for h in hosts if h != host)
    leftover = cluster.exec(survivor, "sh", "-c",
                            "ls -A /scratch | grep -v -e '^.bench-scratch$' -e lost+found || true")
    assert leftover.stdout.strip() == ""


def test_drained_members_scratch_is_empty_and_unmounted(cluster: LocalCluster) -> None:
    hosts = ready_hosts(cluster, 2)
    host = sorted(hosts)[-1]
    member = hosts[host]
    cluster.exec(host, "sh", "-c", "mkdir -p /scratch/keep && head -c 1M /dev/zero > /scratch/keep/f && "
                                     "ln -s /data/e2e-drains/outside /scratch/link-out")
    outside = JOBS / "outside"
    outside.write_text("stays")
    state_root = cluster.state_root
    image = next(iter(state_root.rglob(f"*{host}*/scratch.img")), None)
    cluster.ctl("cluster", "drain", member)
    wait_until(lambda: cluster.members()[member]["state"] == "TERMINATED", 120, f"{member} terminated")
    assert outside.read_text() == "stays"
    mounts = Path("/proc/mounts").read_text()
    assert namespace_gone(cluster, member, host)
    assert f"{member}" not in mounts
    if image is not None:
        assert not image.exists()


def test_manager_kill9_between_drain_steps_finishes_once(cluster: LocalCluster) -> None:
    hosts = ready_hosts(cluster, 2)
    host = sorted(hosts)[0]
    member = hosts[host]
    script = job_script(JOBS / "short.sh", "sleep 8")
    job = qsub("-l", "static_cores=1,static_mem=256M", "-q", f"all.q@{host}", "-o", "/dev/null",
               "-e", "/dev/null", str(script))
    wait_until(lambda: sge("qstat", "-s", "r").stdout.count(str(job)) > 0, 60, "the job running")
    cluster.ctl("cluster", "drain", member)
    wait_until(lambda: cluster.members()[member]["drain_step"] == "queue-disabled", 20, "queue disabled")
    kill9_and_restart_manager(cluster.state_root)
    wait_until(lambda: cluster.members(tolerate_unreachable=True).get(member, {}).get("state") == "TERMINATED",
               180, "drain finished after the manager restart")
    assert all(r.exit_status == 0 for r in wait_for_tasks(job, 1, 60))
    story = history(cluster, member)
    for transition in (("READY", "DRAINING"), ("DRAINING", "DRAINED"), ("DRAINED", "TERMINATED")):
        assert story.count(transition) == 1, story


@pytest.mark.slow
@pytest.mark.parametrize("hold", ["start", "queue-disabled", "jobs-done", "unmounted", "scratch-wiped",
                                  "out-of-sge", "terminating"])
def test_manager_kill9_at_every_drain_step_with_sge(cluster: LocalCluster, hold: str) -> None:
    """The drain parks at `hold` (test hook), the manager is killed with -9 there and restarted: the
    drain (disable queue, wait, unmount, wipe, qconf -de, terminate) completes exactly once."""
    hosts = ready_hosts(cluster, 2)
    host = sorted(hosts)[0]
    member = hosts[host]
    kill9_and_restart_manager(cluster.state_root, {HOLD_ENV: hold})
    wait_until(lambda: cluster.members(tolerate_unreachable=True).get(member, {}).get("state") == "READY", 60,
               "the manager back with the hold hook")
    cluster.ctl("cluster", "drain", member)
    wait_until(lambda: cluster.members(tolerate_unreachable=True).get(member, {}).get("drain_step") == hold, 60,
               f"the drain parked at {hold}")
    kill9_and_restart_manager(cluster.state_root, {HOLD_ENV: None})
    wait_until(lambda: cluster.members(tolerate_unreachable=True).get(member, {}).get("state") == "TERMINATED",
               180, "the drain to finish after the restart")
    story = history(cluster, member)
    for transition in (("READY", "DRAINING"), ("DRAINING", "DRAINED"), ("DRAINED", "TERMINATED")):
        assert story.count(transition) == 1, story
    assert host not in sge("qconf", "-sel", check=False).stdout.split() or any(
        m["hostname"] == host and m["state"] != "TERMINATED" for m in cluster.members().values())
