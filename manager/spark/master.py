"""The Spark standalone master on the manager node, under a small supervisor.

Runs `spark-class ...Master` in the foreground and restarts it when it dies (capped exponential
backoff with jitter, at most MAX_QUICK_FAILURES failures in a row), the way systemd's
Restart=on-failure does on a real manager node. The master keeps its state in a recovery directory
(FILESYSTEM recovery), so after a kill -9 the new master knows the workers and applications again
and tells them where it is; running applications keep their executors.

Usage: python -m manager.spark.master --host IP [--port 7077] [--webui-port 8080] --state-dir DIR
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

HEALTHY_AFTER_S = 60.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
MAX_QUICK_FAILURES = 10
STOP_GRACE_S = 15.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} spark-master-supervisor: {message}", flush=True)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


WEB_PREFIX = "/spark"
REVERSE_PROXY_OPTS = ("-Dspark.ui.reverseProxy=true", f"-Dspark.ui.reverseProxyUrl={WEB_PREFIX}")


def master_argv(host: str, port: int, webui_port: int) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
            "--host", host, "--port", str(port), "--webui-port", str(webui_port)]


def master_env(state_dir: Path) -> dict[str, str]:
    recovery = state_dir / "recovery"
    recovery.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "SPARK_LOG_DIR": str(state_dir),
        "SPARK_MASTER_OPTS": " ".join([
            "-Dspark.deploy.recoveryMode=FILESYSTEM", f"-Dspark.deploy.recoveryDirectory={recovery}",
            # Submissions go through the kernels only; no unauthenticated REST submission port.
            "-Dspark.master.rest.enabled=false",
            # A finished slot worker is forgotten quickly instead of lingering as DEAD for 15 min.
            "-Dspark.dead.worker.persistence=1", "-Dspark.worker.timeout=30",
            # Web access (issue 19) serves this UI under /spark/ behind its login: Spark writes its
            # links under that prefix and proxies workers' and applications' UIs itself.
            *REVERSE_PROXY_OPTS,
        ]),
    })
    return env


def run(args: argparse.Namespace) -> int:
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    failures = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(master_argv(args.host, args.port, args.webui_port), env=master_env(args.state_dir),
                                 stdin=subprocess.DEVNULL)
        log(f"started the Spark master pid {child.pid} on spark://{args.host}:{args.port}, "
            f"UI http://{args.host}:{args.webui_port}")
        code = child.wait()
        if stopping:
            break
        failures = 0 if time.monotonic() - started >= HEALTHY_AFTER_S else failures + 1
        if failures >= MAX_QUICK_FAILURES:
            log(f"the master failed {failures} times in a row; giving up")
            return 1
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** failures) * random.uniform(0.8, 1.2)
        log(f"the master exited with status {code}; restarting in {delay:.1f} s")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.2)
    if child is not None and child.poll() is None:
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
    log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-spark-master", description="supervised Spark standalone master")
    parser.add_argument("--host", required=True, help="address to bind (the manager's cluster address)")
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--webui-port", type=int, default=8080)
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/bench-spark"))
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
