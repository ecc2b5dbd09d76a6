"""Issue 16 end to end: the three PySpark kernels on a 2-member local cluster, driven through
jupyter_client against the installed kernel specs as an ordinary user, reading a text file through
a fast mount under /data/mounts."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchspark.paths import conf_file
from tests.e2e.cluster_helpers import max_concurrency_by_host, qacct_tasks, qsub, sge
from tests.e2e.localcluster import LocalCluster, job_script
from tests.e2e.spark_helpers import answer_of, expected_answer, master_json, program, run_kernel, write_words
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
    for kind in ("local", "remote", "dynamic"):
        result = run_kernel(kind, [cell, "print('APP', sc.applicationId, sc.master)"])
        answers[kind] = answer_of(result)
        app_line = result["cells"][1]["stdout"]
        if kind == "local":
            assert "local[" in app_line
        else:
            assert "spark://10.231.0.1:7077" in app_line
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
