"""End to end: `bench-cluster up` → real SGE jobs from the host → `bench-cluster down`.

Two members of 3 cores / 2G each: with one core reserved for scheduling (no dedicated manager)
each offers static_cores=2, static_mem=1.5G.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchcluster.down import Scope, find_scope
from benchcluster.state import ClusterPaths
from tests.conftest import require, require_root, require_sge
from tests.e2e.cluster_helpers import (
    BIN,
    bench_cluster,
    environ_for_ctl,
    leftovers,
    max_concurrency_by_host,
    qacct_tasks,
    qsub,
    sge,
    wait_for_tasks,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PORT = "50561"
MEMBERS = ("bench-m01", "bench-m02")


def require_cluster_parts() -> None:
    require_sge()
    require(Path("/usr/bin/nsenter").exists(), "util-linux nsenter")
    require((BIN / "bench-manager").exists() and (BIN / "bench-agent").exists(), "bench-manager and bench-agent")


# --- bad input: checked first, while no cluster exists ------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["up", "--members", "51"], "hard limit"),
    (["up", "--members", "2", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["up", "--mode", "dynamic", "--members", "2"], "--members belongs to --mode static"),
    (["up", "--mode", "dynamic", "--min", "4", "--max", "2"], "--min (4) ≤ --max (2)"),
    (["up", "--members", "2", "--scratch-size", "10M"], "between 1G and 16T"),
    (["up", "--members", "2", "--memory", "lots"], "not a size"),
    (["up", "--members", "2", "--cores", "1"], "no usable core"),
])
def test_bad_input_is_refused_and_creates_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    require_root()
    state_root = tmp_path / "state"
    proc = bench_cluster(state_root, *args)
    assert proc.returncode == 2, proc.stderr
    assert says in " ".join(proc.stderr.split()), proc.stderr
    assert not state_root.exists()
    nothing_of_its_own = Scope(frozenset(), frozenset())  # other clusters may run on this machine
    assert leftovers(ClusterPaths(state_root), nothing_of_its_own, include_sge=False) == {}


def test_not_root_is_refused(tmp_path: Path) -> None:
    require_root()
    require(Path("/usr/bin/setpriv").exists(), "setpriv (util-linux)")
    state_root = tmp_path / "state"
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           str(BIN / "bench-cluster"), "--state-root", str(state_root), "up", "--members", "1",
                           "--port", PORT], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr
    assert not state_root.exists()


def test_missing_sge_is_refused(tmp_path: Path) -> None:
    """SGE hidden in a private mount namespace (an empty tmpfs over its directory), as on a machine
    where the packages were never installed."""
    require_sge()
    state_root = tmp_path / "state"
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs none /usr/lib/gridengine && exec "$@"', "sh",
                           str(BIN / "bench-cluster"), "--state-root", str(state_root), "up", "--members", "1",
                           "--port", PORT], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Sun Grid Engine is not installed" in " ".join(proc.stderr.split())
    assert "install-system-deps.sh" in proc.stderr
    assert not state_root.exists()


# --- a running two-member cluster ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterPaths]:
    require_cluster_parts()
    paths = ClusterPaths(tmp_path_factory.mktemp("e2e") / "state")
    up = bench_cluster(paths.root, "up", "--members", "2", "--cores", "3", "--memory", "2G",
                       "--scratch-size", "64M", "--allow-small-scratch", "--port", PORT, "--timeout", "240",
                       timeout_s=420)
    try:
        assert up.returncode == 0, f"bench-cluster up failed:\n{up.stderr}"
        yield paths
    finally:
        scope = find_scope(paths)
        down = bench_cluster(paths.root, "down", timeout_s=300)
        assert down.returncode == 0, f"bench-cluster down failed:\n{down.stderr}"
        assert leftovers(paths, scope) == {}


@pytest.fixture()
def workdir(cluster: ClusterPaths) -> Iterator[Path]:
    """A directory under /data, which members share with the host."""
    path = Path("/data/project") / f"e2e-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def script(workdir: Path, body: str) -> Path:
    path = workdir / "job.sh"
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_status_lists_ready_members(cluster: ClusterPaths) -> None:
    proc = bench_cluster(cluster.root, "status", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["manager"]["alive"] and report["qmaster"]["alive"]
    members = {m["hostname"]: m for m in report["members"]}
    assert sorted(members) == list(MEMBERS)
    for member in members.values():
        assert member["state"] == "READY" and member["running"] and member["in_sge"], member
        assert member["ip"].startswith("10.231.0."), member
    hosts = sge("qhost", "-F", "static_cores,static_mem").stdout
    assert "hc:static_cores=2.000000" in hosts and "hc:static_mem=1.500G" in hosts, hosts


def test_workspace_ctl_sees_members(cluster: ClusterPaths) -> None:
    proc = subprocess.run([str(BIN / "workspace-ctl"), "cluster", "members", "--output", "json"],
                          env=environ_for_ctl(cluster), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    members = [m for m in json.loads(proc.stdout)["members"] if m["hostname"] in MEMBERS]
    assert sorted(m["hostname"] for m in members) == list(MEMBERS)
    assert {m["state"] for m in members} == {"READY"}


def test_array_job_uses_both_members_within_static_cores(cluster: ClusterPaths, workdir: Path) -> None:
    job = script(workdir, f'sleep 2; echo "$SGE_TASK_ID $(hostname) $TMPDIR" > {workdir}/out.$SGE_TASK_ID')
    job_id = qsub("-t", "1-40", "-l", "static_cores=1,static_mem=512M", "-o", "/dev/null", "-j", "y", str(job))
    records = wait_for_tasks(job_id, 40, timeout_s=400)
    assert sorted(r.task_id for r in records) == list(range(1, 41))
    assert all(r.exit_status == 0 for r in records), [r for r in records if r.exit_status]
    assert {r.hostname for r in records} == set(MEMBERS)
    peaks = max_concurrency_by_host(records)
    assert all(peak <= 2 for peak in peaks.values()), peaks  # static_cores=2 on each member
    outputs = sorted(workdir.glob("out.*"))
    assert len(outputs) == 40
    # every task ran with a per-job $TMPDIR on its member's /scratch
    assert all(line.split()[2].startswith("/scratch/") for line in (p.read_text() for p in outputs))


def test_oversize_job_stays_pending_not_error(cluster: ClusterPaths, workdir: Path) -> None:
    job_id = qsub("-l", "static_mem=8G", "-o", "/dev/null", "-j", "y", str(script(workdir, "true")))
    try:
        time.sleep(5)  # five scheduling intervals
        line = next(ln for ln in sge("qstat", "-u", "*").stdout.splitlines() if ln.split()[:1] == [str(job_id)])
        assert line.split()[4] == "qw", line
    finally:
        sge("qdel", str(job_id))


def test_seed_user_commands(cluster: ClusterPaths, workdir: Path) -> None:
    job = script(workdir, "sleep 1; echo done")
    one = qsub("-l", "static_mem=1G", "-l", "static_cores=1", "-o", str(workdir), "-j", "y", str(job))
    many = qsub("-l", "static_mem=1G", "-l", "static_cores=1", "-t", "1-100", "-o", "/dev/null", "-j", "y", str(job))
    assert all(name in sge("qhost").stdout for name in MEMBERS)
    assert "all.q@bench-m01" in sge("qstat", "-f").stdout
    assert f"job_number:                 {many}" in sge("qstat", "-f", "-j", str(many)).stdout
    assert str(many) in sge("qdel", str(many)).stdout  # "has deleted job" / "has registered the job"
    (record,) = wait_for_tasks(one, 1, timeout_s=120)
    assert record.exit_status == 0 and record.hostname in MEMBERS
    assert "exit_status  0" in sge("qacct", "-j", str(one)).stdout
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and str(many) in sge("qstat", "-u", "*").stdout.split():
        time.sleep(1)
    assert str(many) not in sge("qstat", "-u", "*").stdout.split()
    assert len(qacct_tasks(many)) < 100  # deleted before all of it ran


def test_exec_runs_inside_member_and_passes_exit_status(cluster: ClusterPaths) -> None:
    proc = bench_cluster(cluster.root, "exec", "bench-m02", "--", "sh", "-c", "hostname; exit 7")
    assert proc.returncode == 7
    assert proc.stdout.strip() == "bench-m02"
    scratch = bench_cluster(cluster.root, "exec", "bench-m01", "--", "findmnt", "-n", "-o", "SOURCE", "/scratch")
    assert scratch.returncode == 0 and scratch.stdout.strip().startswith("/dev/loop")
    missing = bench_cluster(cluster.root, "exec", "bench-m09", "--", "true")
    assert missing.returncode == 2 and "no running member" in missing.stderr
