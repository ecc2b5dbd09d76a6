"""Issue 16 end to end: the three PySpark kernels on a 2-member local cluster, driven through
jupyter_client against the installed kernel specs as an ordinary user, reading a text file through
a fast mount under /data/mounts. The three-kernel answer, the written files, status and bad input
run in `make test`; sharing with SGE, kill -9 recovery and drains (minutes of JVM work) are slow."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchspark.paths import conf_file
from tests.e2e.cluster_helpers import max_concurrency_by_host, qacct_tasks, qsub, sge
from tests.e2e.localcluster import LocalCluster, job_script
from tests.e2e.spark_helpers import (
    EDITORS,
    USER,
    answer_of,
    as_user,
    ensure_user,
    expected_answer,
    finish_kernel,
    java_pids,
    master_json,
    program,
    run_kernel,
    start_kernel,
    write_words,
)
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

SOURCE = Path("/data/project/spark-e2e")
USABLE_CORES = 1  # 2-core members minus the core reserved for scheduling
HOSTS = {f"bench-m{i:02d}": f"10.231.0.{10 + i}" for i in range(1, 51)}
MOUNT = "/data/mounts/spark-e2e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    shutil.rmtree(SOURCE, ignore_errors=True)
    write_words(SOURCE / "words.txt")
    # 2-core members: 1 usable core each, so the written executor is 1 core (a comment says why).
    lc = LocalCluster(tmp_path_factory.mktemp("spark-cluster"),
                      ["--members", "2", "--cores", "2", "--memory", "3G", "--scratch-size", "64M",
                       "--allow-small-scratch", "--interval", "2"])
    try:
        lc.up()
        lc.ctl("data", "create-mount", "--mount-path", MOUNT, "--source", str(SOURCE))
        wait_until(lambda: Path(MOUNT, "words.txt").exists(), 60, "the fast mount on the workspace node")
        wait_until(lambda: conf_file("dynamic").exists(), 60, "the written spark-defaults.conf files")
        yield lc
    finally:
        lc.down()
        shutil.rmtree(SOURCE, ignore_errors=True)


def test_three_kernels_give_the_same_answer(cluster: LocalCluster) -> None:
    expected = expected_answer(SOURCE / "words.txt")
    cell = program(f"{MOUNT}/words.txt")
    answers = {}
    # executors run the user's code as the user (the kernel's uid), never as root or a service account
    whose = ("import os\nprint('UIDS', os.getuid(), "
             "sorted(set(sc.parallelize(range(4), 4).map(lambda _: os.getuid()).collect())))")
    for kind in ("local", "remote", "dynamic"):
        result = run_kernel(kind, [cell, "print('APP', sc.applicationId, sc.master)", whose])
        answers[kind] = answer_of(result)
        app_line = result["cells"][1]["stdout"]
        if kind == "local":
            assert "local[" in app_line
        else:
            assert "spark://10.231.0.1:7077" in app_line
        driver_uid, executor_uids = result["cells"][2]["stdout"].split(" ", 2)[1:]
        assert int(driver_uid) == pwd.getpwnam(USER).pw_uid and executor_uids.strip() == f"[{driver_uid}]", result
    assert answers["local"] == expected
    assert answers["remote"] == expected
    assert answers["dynamic"] == expected


def test_written_files_fit_small_members_and_say_why(cluster: LocalCluster) -> None:
    text = conf_file("remote").read_text()
    assert "spark.executor.cores" in text and "spark.executor.cores 4" not in " ".join(text.split())
    assert "less than the default executor of 4 cores / 4g" in text
    dynamic = conf_file("dynamic").read_text()
    assert "spark.dynamicAllocation.shuffleTracking.enabled" in dynamic
    assert master_json()["status"] == "ALIVE"


def test_status_and_members_show_spark(cluster: LocalCluster) -> None:
    status = cluster.ctl_json("cluster", "status")["spark"]
    assert status["master_url"] == "spark://10.231.0.1:7077" and status["ui_url"] == "http://10.231.0.1:8080"
    assert status["master_status"] == "ALIVE"
    text = cluster.ctl("cluster", "status").stdout
    assert "spark UI" in text and "http://10.231.0.1:8080" in text
    members = [m for m in cluster.ctl_json("cluster", "members")["members"] if m["role"] == "member"]
    assert len(members) == 2 and all("spark" in m and "cores_used" in m["spark"] for m in members), members


@pytest.mark.slow
def test_sge_array_and_spark_job_never_exceed_usable_cores(cluster: LocalCluster) -> None:
    """SGE tasks and executors share members through SGE: sampled while both run, and afterwards from
    SGE accounting, the cores in use on a member never exceed its usable cores (1 here)."""
    script = job_script(Path("/data/project/spark-e2e/sleep.sh"), "sleep 6")
    array = qsub("-l", "static_cores=1", "-l", "static_mem=512M", "-t", "1-6", "-o", "/dev/null", "-j", "y",
                 str(script))
    samples: list[dict[str, tuple[int, int]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(cores_in_use())
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cell = ("import time\n"
                "print('SUM', sc.parallelize(range(8), 8).map(lambda x: time.sleep(2) or x).sum())")
        result = run_kernel("remote", [cell, "print('APP', sc.applicationId)"])
    finally:
        stop.set()
        sampler.join(10)
    assert "SUM 28" in result["cells"][0]["stdout"], result
    cluster.wait_job(array, 120)
    assert samples and all(sge_cores + spark_cores <= USABLE_CORES
                           for s in samples for sge_cores, spark_cores in s.values()), samples
    assert any(spark for s in samples for _, spark in s.values()), "no executor was seen running"
    assert any(sge_cores for s in samples for sge_cores, _ in s.values()), "no SGE task was seen running"
    # SGE accounting: the array tasks and the executor slots, as intervals per host, never overlap
    # beyond the member's usable cores.
    app_id = result["cells"][1]["stdout"].split()[-1]
    slot_jobs = [int(line.split()[0]) for line in sge("qacct", "-j", f"spark-remote-{app_id}",
                                                       check=False).stdout.splitlines()
                 if line.startswith("jobnumber")]
    records = qacct_tasks(array) + [t for job in slot_jobs for t in qacct_tasks(job)]
    assert any(r.task_id for r in records)
    by_host: dict[str, list] = {}
    for r in records:
        by_host.setdefault(r.hostname.split(".")[0], []).append(r)
    for host, rs in by_host.items():
        assert max(max_concurrency_by_host(rs).values()) <= USABLE_CORES, (host, rs)


def cores_in_use() -> dict[str, tuple[int, int]]:
    """Per member IP: (cores SGE gives to non-slot jobs, cores Spark executors use per the master's REST)."""
    sge_used: dict[str, int] = {}
    spark_used: dict[str, int] = {}
    for worker in master_json().get("workers", []):
        if worker["state"] == "ALIVE":
            spark_used[worker["host"]] = spark_used.get(worker["host"], 0) + int(worker["coresused"])
    qstat = sge("qstat", "-u", "*", "-s", "r", check=False).stdout.splitlines()[2:]
    for line in qstat:
        parts = line.split()
        if len(parts) >= 8 and not parts[2].startswith("spark-"):
            host = parts[7].split("@")[-1]
            ip = HOSTS.get(host)
            if ip:
                sge_used[ip] = sge_used.get(ip, 0) + 1
    return {ip: (sge_used.get(ip, 0), spark_used.get(ip, 0)) for ip in {*sge_used, *spark_used}}


@pytest.fixture
def edited_conf() -> Iterator[Callable[[str, str], None]]:
    """Edit a kernel's spark-defaults.conf as a user would (the ordinary test user, a member of the editors'
    group); the original comes back afterwards."""
    originals: dict[Path, str] = {}
    ensure_user()
    editors = grp.getgrnam(EDITORS).gr_gid

    def edit(kind: str, line: str) -> None:
        path = conf_file(kind)
        # the manager gives the files the editors' group on its next pass once the group exists
        wait_until(lambda: path.stat().st_gid == editors and path.parent.stat().st_gid == editors, 30,
                   f"{path} in group {EDITORS}")
        originals.setdefault(path, path.read_text())
        edited = as_user("sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "sh", line, str(path))
        assert edited.returncode == 0, f"{USER} could not edit {path}: {edited.stderr}"

    yield edit
    for path, text in originals.items():
        path.write_text(text)


def first_error(result: dict) -> str:
    cell = result["cells"][0]
    assert cell["status"] == "error", result
    return str(cell["error"])


def test_malformed_line_is_named_and_the_edit_is_kept(cluster: LocalCluster, edited_conf) -> None:
    edited_conf("local", "spark.executor.memory")
    edited = conf_file("local").read_text()
    error = first_error(run_kernel("local", ["sc.version"], timeout_s=120))
    line = len(edited.splitlines())
    assert f"{conf_file('local')} line {line}: 'spark.executor.memory'" in error and "has no value" in error
    # the cluster keeps writing its files every pass, but never over the user's edit
    proposal = conf_file("local").with_name("spark-defaults.conf.cluster")
    wait_until(proposal.exists, 30, "the cluster's proposal next to the edited file")
    assert conf_file("local").read_text() == edited


def test_executor_bigger_than_any_member_is_refused_at_kernel_start(cluster: LocalCluster, edited_conf) -> None:
    edited_conf("remote", "spark.executor.cores 8")
    error = first_error(run_kernel("remote", ["sc.version"], timeout_s=120))
    assert "is bigger than any member (1 usable cores" in error and "spark.executor.cores" in error


def test_unreachable_master_is_a_clear_message_within_a_bounded_time(cluster: LocalCluster, edited_conf) -> None:
    edited_conf("remote", "spark.master spark://10.231.0.1:7999")
    started = time.monotonic()
    error = first_error(run_kernel("remote", ["sc.version"], timeout_s=120))
    assert "the Spark master at spark://10.231.0.1:7999 is unreachable" in error
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_kill9_of_master_and_worker_they_come_back_and_the_kernel_works(cluster: LocalCluster,
                                                                        tmp_path: Path) -> None:
    ready, go = Path(f"/tmp/spark-e2e-ready-{os.getpid()}"), Path(f"/tmp/spark-e2e-go-{os.getpid()}")
    for marker in (ready, go):
        marker.unlink(missing_ok=True)
    cells = [
        f"print('C1', sc.parallelize(range(100), 4).sum()); open({str(ready)!r}, 'w').close()",
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.5)\n"
        "print('C2', sc.parallelize(range(100), 4).map(lambda x: x * 2).sum())",
    ]
    kernel = start_kernel("remote", cells)
    try:
        wait_until(ready.exists, 300, "the kernel's first action")
        masters = java_pids("org.apache.spark.deploy.master.Master")
        assert len(masters) == 1
        os.kill(masters[0], signal.SIGKILL)
        wait_until(lambda: [p for p in java_pids("org.apache.spark.deploy.master.Master") if p not in masters],
                   120, "a new Spark master")
        wait_until(lambda: master_json().get("status") == "ALIVE" and master_json().get("aliveworkers", 0) >= 1,
                   180, "the restarted master ALIVE with its workers back", interval_s=2)
        workers = java_pids("org.apache.spark.deploy.worker.Worker")
        assert workers, "no Spark worker runs"
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: [p for p in java_pids("org.apache.spark.deploy.worker.Worker") if p not in workers],
                   120, "the killed worker restarted by its slot")
        go.write_text("")
        result = finish_kernel(kernel)
    finally:
        go.write_text("")
        if kernel.poll() is None:
            kernel.wait(600)
    assert "C1 4950" in result["cells"][0]["stdout"], result
    assert "C2 9900" in result["cells"][1]["stdout"], result


@pytest.mark.slow
def test_draining_a_member_that_runs_executors_the_job_still_completes(cluster: LocalCluster) -> None:
    cell = ("import time\n"
            "print('SUM', sc.parallelize(range(24), 24).map(lambda x: time.sleep(2) or x).sum())")
    kernel = start_kernel("remote", [cell])
    try:
        def busy_hosts() -> list[str]:
            return [w["host"] for w in master_json().get("workers", []) if w["state"] == "ALIVE" and w["coresused"]]

        hosts = wait_until(lambda: len(busy_hosts()) >= 2 and busy_hosts(), 300, "executors on both members",
                           interval_s=1)
        victim = next(m for m in cluster.members().values() if m["ip"] == hosts[0])
        cluster.ctl("cluster", "drain", victim["member_id"])
        result = finish_kernel(kernel)
    finally:
        if kernel.poll() is None:
            kernel.wait(600)
    assert "SUM 276" in result["cells"][0]["stdout"], result
    wait_until(lambda: cluster.members().get(victim["member_id"], {}).get("state") == "TERMINATED", 240,
               "the drained member to be removed", interval_s=2)
