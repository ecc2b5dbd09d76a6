"""Spark on the local cluster: the supervised master on the manager node (bound to the bridge
address, so members and the workspace node reach it), the manager's Spark flags, and the three
PySpark kernel specs installed system-wide for the workspace node's users."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchspark.kernelspec import DEFAULT_PREFIX, install

MASTER_PORT = 7077
UI_PORT = 8080
MASTER_START_TIMEOUT_S = 90.0  # a JVM on a busy 2-core machine takes 10-30 s


def master_url(host: str) -> str:
    return f"spark://{host}:{MASTER_PORT}"


def ui_url(host: str) -> str:
    return f"http://{host}:{UI_PORT}"


def master_argv(state_root: Path, host: str) -> list[str]:
    return [sys.executable, "-m", "manager.spark.master", "--host", host, "--port", str(MASTER_PORT),
            "--webui-port", str(UI_PORT), "--state-dir", str(state_root / "spark-master")]


def manager_flags(host: str) -> list[str]:
    # The workspace node is this machine's host namespace, which members reach at the bridge address.
    return ["--spark-master-url", master_url(host), "--spark-ui-url", ui_url(host), "--spark-driver-host", host,
            "--spark-python", sys.executable]


def install_kernels(prefix: Path = DEFAULT_PREFIX) -> Path:
    install(prefix, sys.executable)
    return prefix


def wait_for_master(host: str, is_running: object, timeout_s: float = MASTER_START_TIMEOUT_S) -> None:
    """Until the master's UI says ALIVE; raises RuntimeError naming what was seen otherwise."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if callable(is_running) and not is_running():
            raise RuntimeError("the Spark master supervisor exited")
        try:
            with urllib.request.urlopen(ui_url(host) + "/json/", timeout=3) as response:
                status = json.load(response).get("status", "")
            if status == "ALIVE":
                return
            last = f"status {status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(1.0)
    raise RuntimeError(f"the Spark master at {ui_url(host)} was not ALIVE within {timeout_s:.0f} s ({last})")
