"""Spark on the cluster, measured (issue 16). Needs root, SGE and Java; it starts a local cluster, so
run it under the machine-wide lock: `flock /tmp/bench-cluster.lock .venv/bin/python benchmarks/spark.py`.

1. The same word count over a text file of --size (default 1G) read through a fast mount under
   /data/mounts, under PySpark – Local and under PySpark – Remote on 2 members: seconds each and the
   Remote/Local ratio (same run, same file, same page cache state: the file is read once first).
2. On a dynamic cluster at min 0: from the moment work is submitted until its first task runs on a
   newly scaled-up member, for a Remote - Dynamic executor and for an SGE task; the ratio.

Both kernels are started through jupyter_client from the installed specs as an ordinary user, as the
end-to-end tests do. Figures vary ±2x between runs on a shared machine; only ratios mean something.

    flock /tmp/bench-cluster.lock .venv/bin/python benchmarks/spark.py [--size 1G] [--skip-scaling]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.cluster_helpers import qsub
from tests.e2e.localcluster import LocalCluster, job_script
from tests.e2e.spark_helpers import WORDS, run_kernel
from tests.harness import wait_until

SOURCE = Path("/data/project/spark-bench")
MOUNT = "/data/mounts/spark-bench"
SUFFIX = {"M": 1024**2, "G": 1024**3}


def make_text(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (" ".join(WORDS) + "\n").encode()
    block = line * (4 * 1024**2 // len(line))
    with path.open("wb") as fh:
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)
    path.chmod(0o644)


def word_count_cell(path: str) -> str:
    return ("import time\nt0 = time.time()\n"
            f"n = sc.textFile('file://{path}').flatMap(lambda l: l.split()).map(lambda w: (w, 1))"
            ".reduceByKey(lambda a, b: a + b).count()\n"
            "print('WC', n, time.time() - t0)")


def timed_word_count(kind: str) -> float:
    result = run_kernel(kind, [word_count_cell(f"{MOUNT}/words.txt")], timeout_s=3600)
    line = next(x for x in result["cells"][0]["stdout"].splitlines() if x.startswith("WC "))
    return float(line.split()[2])


def first_task_cell() -> str:
    return ("import time, socket\nt0 = time.time()\n"
            "starts = sc.parallelize([0], 1).map(lambda _: time.time()).collect()\n"
            "print('FIRST', starts[0] - t0)")


def sge_first_task(lc: LocalCluster, tmp: Path) -> float:
    marker = tmp / "sge-start"
    script = job_script(tmp / "start.sh", f"date +%s.%N > {marker}")
    submitted = time.time()
    job = qsub("-l", "static_cores=1", "-l", "static_mem=1G", "-o", "/dev/null", "-j", "y", str(script))
    wait_until(marker.exists, 600, "the SGE task to start on a new member", interval_s=0.5)
    lc.wait_job(job, 120)
    return float(marker.read_text()) - submitted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    size = int(args.size[:-1]) * SUFFIX[args.size[-1].upper()]
    tmp = Path(tempfile.mkdtemp(prefix="spark-bench-", dir="/data/project"))
    tmp.chmod(0o755)
    shutil.rmtree(SOURCE, ignore_errors=True)
    make_text(SOURCE / "words.txt", size)
    lc = LocalCluster(tmp / "state", ["--mode", "dynamic", "--min", "0", "--max", "2", "--cores", "2", "--memory",
                                      "3G", "--scratch-size", "64M", "--allow-small-scratch", "--interval", "2",
                                      "--idle", "10", "--min-age", "10"], up_timeout_s=600)
    try:
        lc.up()
        lc.ctl("data", "create-mount", "--mount-path", MOUNT, "--source", str(SOURCE))
        wait_until(lambda: Path(MOUNT, "words.txt").exists(), 60, "the fast mount")
        if not args.skip_scaling:
            sge_s = sge_first_task(lc, tmp)
            wait_until(lambda: not lc.live_members(), 300, "members to leave after the SGE task", interval_s=3)
            result = run_kernel("dynamic", [first_task_cell()], timeout_s=900)
            line = next(x for x in result["cells"][0]["stdout"].splitlines() if x.startswith("FIRST "))
            spark_s = float(line.split()[1])
            print(f"first task on a new member: SGE {sge_s:.1f} s, Remote - Dynamic executor {spark_s:.1f} s "
                  f"(ratio {spark_s / sge_s:.2f}x)")
        lc.ctl("cluster", "scale", "--static", "2")
        wait_until(lambda: len(lc.ready_members()) >= 2, 300, "2 members", interval_s=2)
        Path(MOUNT, "words.txt").read_bytes()  # same page-cache state for both runs
        local_s = timed_word_count("local")
        remote_s = timed_word_count("remote")
        print(f"word count over {args.size} through {MOUNT}: Local {local_s:.1f} s, Remote on 2 members "
              f"{remote_s:.1f} s (Remote/Local {remote_s / local_s:.2f}x)")
    finally:
        lc.down()
        shutil.rmtree(SOURCE, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
