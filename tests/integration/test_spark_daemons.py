"""The Spark daemons' supervision with real JVMs on loopback (no cluster): the master's supervisor
brings a kill -9'd master back with its recovery state, an executor slot restarts its killed worker
and ends by itself when no executor comes, and the supervisor stops its master on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import require
from tests.harness import free_port, wait_until


def master_json(ui_port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=3) as response:
            return dict(json.load(response))
    except OSError:
        return {}


def java_children(pid: int, main_class: str) -> list[int]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    pids = []
    for child in children:
        try:
            if main_class in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # exited (or a zombie) meanwhile
            continue
    return pids


def stop_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop a slot (or driver) still running and whatever it started: a slot killed alone would leave its
    worker JVM behind."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    proc.terminate()  # a slot stops its worker on SIGTERM
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    require(shutil.which("java") is not None, "Java 17 (openjdk-17-jre-headless; make deps)")
    port, ui_port = free_port(), free_port()
    state = tmp_path_factory.mktemp("spark-master")
    log = (state / "supervisor.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "manager.spark.master", "--host", "127.0.0.1", "--port", str(port),
                             "--webui-port", str(ui_port), "--state-dir", str(state)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: master_json(ui_port).get("status") == "ALIVE", 120, "the Spark master", interval_s=1)
        yield proc, port, ui_port
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def test_killed_master_comes_back(master: tuple[subprocess.Popen[bytes], int, int]) -> None:
    proc, _, ui_port = master
    [jvm] = java_children(proc.pid, "deploy.master.Master")
    os.kill(jvm, signal.SIGKILL)
    wait_until(lambda: [p for p in java_children(proc.pid, "deploy.master.Master") if p != jvm], 60,
               "a new master JVM")
    wait_until(lambda: master_json(ui_port).get("status") == "ALIVE", 120, "the restarted master ALIVE",
               interval_s=1)
    assert proc.poll() is None


def test_slot_restarts_its_killed_worker_and_ends_without_an_executor(
        master: tuple[subprocess.Popen[bytes], int, int], tmp_path: Path) -> None:
    _, port, ui_port = master
    slot = subprocess.Popen([sys.executable, "-m", "benchspark.slot", "--master", f"spark://127.0.0.1:{port}",
                             "--cores", "1", "--memory-mb", "512", "--unused-timeout", "5", "--queue-host", ""],
                            env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def alive_workers() -> set[str]:
            return {w["id"] for w in master_json(ui_port).get("workers", []) if w["state"] == "ALIVE"}

        first = wait_until(alive_workers, 180, "the slot's worker registered", interval_s=0.5)
        [jvm] = java_children(slot.pid, "deploy.worker.Worker")
        os.kill(jvm, signal.SIGKILL)
        wait_until(lambda: alive_workers() - first, 180, "the restarted worker registered", interval_s=0.5)
        out, _ = slot.communicate(timeout=120)
    finally:
        stop_tree(slot)
    assert slot.returncode == 0
    assert "worker died from signal 9; restart 1/5" in out
    assert "no executor came within 5 s; slot ends" in out


DRIVER = """
import sys, time
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master(sys.argv[1]).config("spark.executor.cores", "1")
         .config("spark.executor.memory", "512m").config("spark.decommission.enabled", "true")
         .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false").getOrCreate())
print("RESULT", spark.sparkContext.parallelize(range(12), 12).map(lambda x: time.sleep(3) or x).sum(), flush=True)
spark.stop()
"""


@pytest.mark.slow
def test_decommissioned_slot_hands_its_work_back_and_the_job_completes(
        master: tuple[subprocess.Popen[bytes], int, int], tmp_path: Path) -> None:
    """What a drain does to a member's slots (SIGTERM here stands in for the disabled queue)."""
    _, port, _ = master
    url = f"spark://127.0.0.1:{port}"
    slots = []
    for i in (1, 2):
        (tmp_path / f"s{i}").mkdir()
        slots.append(subprocess.Popen(
            [sys.executable, "-m", "benchspark.slot", "--master", url, "--cores", "1", "--memory-mb", "512",
             "--unused-timeout", "120", "--queue-host", ""], env={**os.environ, "TMPDIR": str(tmp_path / f"s{i}")},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    (tmp_path / "driver.py").write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), url], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        def running_task_logs() -> list[Path]:
            return [p for p in tmp_path.glob("s*/spark-work/*/*/stderr") if b"Running task" in p.read_bytes()]

        wait_until(lambda: len(running_task_logs()) >= 2, 300, "both executors running tasks", interval_s=1)
        slots[0].send_signal(signal.SIGTERM)
        out, _ = slots[0].communicate(timeout=120)
        result, _ = driver.communicate(timeout=300)
    finally:
        for proc in (*slots, driver):
            stop_tree(proc)
    assert "RESULT 66" in result
    assert slots[0].returncode == 0
    assert "decommissioning the worker" in out and "decommissioning executor pid" in out
    assert "slot ends" in out
