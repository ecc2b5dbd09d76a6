"""Issue 16 end to end: the three PySpark kernels on a 2-member local cluster, driven through
jupyter_client against the installed kernel specs as an ordinary user, reading a text file through
a fast mount under /data/mounts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchspark.paths import conf_file
from tests.e2e.localcluster import LocalCluster
from tests.e2e.spark_helpers import answer_of, expected_answer, master_json, program, run_kernel, write_words
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

SOURCE = Path("/data/project/spark-e2e")
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
