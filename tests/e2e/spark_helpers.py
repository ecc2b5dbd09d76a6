"""Helpers for the Spark end-to-end tests: an ordinary test user, kernels driven through
jupyter_client as that user (tests/e2e/kernel_client.py), the word-count program and its expected
answer computed here without Spark, and Spark's REST view of workers."""

from __future__ import annotations

import grp
import json
import pwd
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import require
from tests.harness import run_as

USER = "benchspark"
EDITORS = "bench-users"  # the manager's default spark_conf_group
REPO = Path(__file__).resolve().parents[2]
MASTER_UI = "http://10.231.0.1:8080"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]


def ensure_user() -> str:
    """An ordinary user (uid >= 1000, SGE's min_uid) with a home for Jupyter's runtime files, in the group
    that may edit the kernels' spark-defaults.conf (as an operator adds a workspace's users)."""
    require(Path("/usr/sbin/useradd").exists() or Path("/sbin/useradd").exists(), "useradd")
    try:
        grp.getgrnam(EDITORS)
    except KeyError:
        subprocess.run(["groupadd", EDITORS], check=True, capture_output=True, timeout=30)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True, capture_output=True, timeout=30)
    if USER not in grp.getgrnam(EDITORS).gr_mem:
        subprocess.run(["usermod", "-aG", EDITORS, USER], check=True, capture_output=True, timeout=30)
    return USER


def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_as(ensure_user(), *argv)


def write_words(path: Path, lines: int = 4000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for i in range(lines):
            fh.write(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(i % 9 + 1)) + "\n")
    path.chmod(0o644)


def expected_answer(path: Path) -> dict[str, Any]:
    counts = Counter(path.read_text().split())
    groups = Counter(n % 3 for n in counts.values())
    return {"counts": sorted([w, n] for w, n in counts.items()), "groups": sorted([k, v] for k, v in groups.items())}


def program(path: str) -> str:
    """The same cell for every kernel: a word count (RDD) and a groupBy (DataFrame)."""
    return f"""
import json
from pyspark.sql import functions as F
lines = sc.textFile("file://{path}", 4)
counts = lines.flatMap(lambda l: l.split()).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collect()
df = spark.createDataFrame(counts, ["word", "n"])
groups = df.groupBy((F.col("n") % 3).alias("k")).count().collect()
print("ANSWER " + json.dumps({{"counts": sorted([w, n] for w, n in counts),
                              "groups": sorted([r["k"], r["count"]] for r in groups)}}))
"""


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    for cell in result["cells"]:
        for line in cell["stdout"].splitlines():
            if line.startswith("ANSWER "):
                return dict(json.loads(line[len("ANSWER "):]))
    raise AssertionError(f"no answer in the kernel's output: {json.dumps(result)[:3000]}")


def run_kernel(kind: str, cells: list[str], timeout_s: float = 240.0) -> dict[str, Any]:
    """Start the installed kernel spec pyspark-KIND as the test user, run the cells, shut it down."""
    user = ensure_user()
    proc = subprocess.run(
        ["/usr/sbin/runuser", "-u", user, "--", sys.executable, "-m", "tests.e2e.kernel_client", f"pyspark-{kind}",
         str(timeout_s), *cells],
        capture_output=True, text=True, timeout=timeout_s * (len(cells) + 2), cwd=REPO, check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwnam(user).pw_dir, "LANG": "C.UTF-8"})
    assert proc.returncode == 0, f"kernel client failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def master_json() -> dict[str, Any]:
    """The master's /json/, or {} while it does not answer (restarting)."""
    try:
        with urllib.request.urlopen(MASTER_UI + "/json/", timeout=5) as response:
            return dict(json.load(response))
    except (OSError, ValueError):
        return {}


def start_kernel(kind: str, cells: list[str], timeout_s: float = 300.0) -> subprocess.Popen[str]:
    """run_kernel in the background: the test acts while the kernel works (kills, drains)."""
    user = ensure_user()
    return subprocess.Popen(
        ["/usr/sbin/runuser", "-u", user, "--", sys.executable, "-m", "tests.e2e.kernel_client", f"pyspark-{kind}",
         str(timeout_s), *cells],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwnam(user).pw_dir, "LANG": "C.UTF-8"})


def finish_kernel(proc: subprocess.Popen[str], timeout_s: float = 600.0) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, f"kernel client failed ({proc.returncode}):\n{out}\n{err[-4000:]}"
    return dict(json.loads(out.strip().splitlines()[-1]))


def java_pids(main_class: str) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(part == main_class for part in cmdline) and any("java" in part for part in cmdline[:1]):
            pids.append(proc.pid)
    return pids
