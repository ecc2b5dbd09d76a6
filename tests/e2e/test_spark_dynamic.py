"""Issue 16 end to end on a dynamic cluster at min 0: PySpark – Remote never grows it (and says so
at once), PySpark – Remote - Dynamic grows it for its executors, answers right, and the members
drain away after the executors go idle; the scaler log names the application and what it wants."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchspark.session import NO_WORKERS
from tests.e2e.localcluster import LocalCluster
from tests.e2e.spark_helpers import answer_of, expected_answer, program, run_kernel, write_words
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCE = Path("/data/project/spark-dyn-e2e")
MOUNT = "/data/mounts/spark-dyn-e2e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    shutil.rmtree(SOURCE, ignore_errors=True)
    write_words(SOURCE / "words.txt")
    lc = LocalCluster(tmp_path_factory.mktemp("spark-dyn"),
                      ["--mode", "dynamic", "--min", "0", "--max", "2", "--cores", "2", "--memory", "3G",
                       "--scratch-size", "64M", "--allow-small-scratch", "--interval", "2", "--idle", "15",
                       "--min-age", "15"])
    try:
        lc.up()
        lc.ctl("data", "create-mount", "--mount-path", MOUNT, "--source", str(SOURCE))
        wait_until(lambda: Path(MOUNT, "words.txt").exists(), 60, "the fast mount on the workspace node")
        yield lc
    finally:
        lc.down()
        shutil.rmtree(SOURCE, ignore_errors=True)


def scale_ups(lc: LocalCluster) -> list[dict]:
    return [r for r in lc.scaler_log() if r.get("decision") == "scale-up"]


def test_remote_with_no_members_says_so_and_does_not_scale(cluster: LocalCluster) -> None:
    assert cluster.live_members() == {}
    before = len(scale_ups(cluster))
    result = run_kernel("remote", ["sc.parallelize([1, 2, 3]).count()"], timeout_s=120)
    cell = result["cells"][0]
    assert cell["status"] == "error"
    assert NO_WORKERS in (cell["error"] or "")
    assert len(scale_ups(cluster)) == before
    assert cluster.live_members() == {}


def test_dynamic_scales_up_answers_and_drains_away(cluster: LocalCluster) -> None:
    expected = expected_answer(SOURCE / "words.txt")
    result = run_kernel("dynamic", [program(f"{MOUNT}/words.txt"), "print('APP', sc.applicationId)"],
                        timeout_s=300)
    assert answer_of(result) == expected
    app_id = result["cells"][1]["stdout"].split()[-1]
    demand = [r for r in cluster.scaler_log() if r.get("decision") == "spark-demand" and r.get("app") == app_id]
    assert demand, "no spark-demand line in the scaler log"
    assert any(f"app {app_id}" in r["reason"] and "executors of 1 cores / " in r["reason"] for r in demand), demand
    assert any(r["kernel"] == "dynamic" and r["executors_wanted"] >= 1 for r in demand)
    assert scale_ups(cluster), "the dynamic cluster did not scale up for the Spark job"
    # The kernel has shut down: its executors end, their slots end, the members go idle and leave.
    wait_until(lambda: not cluster.live_members(), 240, "the members to drain away after idle", interval_s=3)
    assert any(r.get("decision") == "scale-down" for r in cluster.scaler_log())
