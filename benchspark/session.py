"""What a PySpark kernel does at start: read and check its spark-defaults.conf, check the cluster
(Remote kinds), create `spark` and `sc`, and register the application for the manager.

`start(kind)` never raises: when Spark cannot start it returns stand-ins whose every use raises
`SparkUnavailable` with the reason, so the notebook shows a clear message at the first cell that
touches `sc` instead of a dead kernel or a hang. Every check has a timeout.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from benchspark import conffile
from benchspark.paths import DISPLAY_NAMES, apps_dir, conf_dir, conf_file, status_file
from benchspark.sizing import fits

MASTER_CONNECT_TIMEOUT_S = 5.0
STATUS_STALE_S = 120.0  # the manager rewrites the status every pass (10 s by default)
NO_WORKERS = ("no Spark workers: PySpark – Remote does not grow the cluster; use Remote - Dynamic or "
              "`workspace-ctl cluster scale`")


class SparkUnavailable(RuntimeError):
    """Spark could not be started for this kernel; the message says why and what to do."""


class Unavailable:
    """Stands in for `spark`/`sc` when they could not be created."""

    def __init__(self, message: str) -> None:
        self._message = message

    def __getattr__(self, name: str) -> Any:
        raise SparkUnavailable(self._message)

    def __repr__(self) -> str:
        return f"<Spark unavailable: {self._message}>"


def load_settings(kind: str) -> dict[str, str]:
    path = conf_file(kind)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SparkUnavailable(f"{path} is missing: the cluster writes it when Spark is set up "
                               "(is the cluster running? `workspace-ctl cluster status`)") from None
    except OSError as exc:
        raise SparkUnavailable(f"cannot read {path}: {exc}") from None
    try:
        return conffile.parse(text, path)
    except conffile.ConfError as exc:
        raise SparkUnavailable(f"{exc}. Fix the line and restart the kernel.") from None


def read_status() -> dict[str, Any]:
    path = status_file()
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise SparkUnavailable(f"{path} is missing: no cluster manager has published Spark's status "
                               "(is the cluster running? `workspace-ctl cluster status`)") from None
    except (OSError, ValueError) as exc:
        raise SparkUnavailable(f"cannot read {path}: {exc}") from None
    age = time.time() - float(status.get("updated_at", 0))
    if age > STATUS_STALE_S:
        raise SparkUnavailable(f"the cluster manager last published Spark's status {age:.0f} s ago; is the "
                               "manager running? (`workspace-ctl cluster status`)")
    return status


def check_master(master_url: str, timeout_s: float = MASTER_CONNECT_TIMEOUT_S) -> None:
    if not master_url.startswith("spark://"):
        raise SparkUnavailable(f"spark.master {master_url!r} is not a spark://HOST:PORT URL")
    host, _, port = master_url.removeprefix("spark://").partition(":")
    try:
        with socket.create_connection((host, int(port or 7077)), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        raise SparkUnavailable(f"the Spark master at {master_url} is unreachable ({exc}) after {timeout_s:.0f} s; "
                               "check `workspace-ctl cluster status` (Spark master) and spark.master in "
                               f"{conf_file('remote')}") from None


def check_cluster(kind: str, settings: dict[str, str]) -> None:
    status = read_status()
    master = settings.get("spark.master", "")
    check_master(master)
    cores = int(settings.get("spark.executor.cores", "1"))
    memory_mb = conffile.memory_mb(settings.get("spark.executor.memory", "1g"))
    usable_cores = int(status.get("member_usable_cores", 0))
    usable_mb = int(status.get("member_usable_memory_mb", 0))
    if usable_cores and not fits(cores, memory_mb, usable_cores, usable_mb * 1024**2):
        raise SparkUnavailable(
            f"an executor of {cores} cores / {memory_mb} MiB (spark.executor.cores, spark.executor.memory in "
            f"{conf_file(kind)}) is bigger than any member ({usable_cores} usable cores / {usable_mb} MiB): "
            "no executor could ever start and the autoscaler ignores such requests; make the executor smaller")
    if kind == "remote" and int(status.get("members", 0)) == 0:
        raise SparkUnavailable(NO_WORKERS)


def register(kind: str, sc: Any, settings: dict[str, str]) -> None:
    """Tell the manager which kernel kind this application is and where its driver UI is."""
    directory = apps_dir()
    record = {
        "app_id": sc.applicationId, "kind": kind, "user": getpass.getuser(), "ui_url": sc.uiWebUrl or "",
        "executor_cores": int(settings.get("spark.executor.cores", "1")),
        "executor_memory_mb": conffile.memory_mb(settings.get("spark.executor.memory", "1g")),
        "started": time.time(), "pid": os.getpid(),
    }
    try:
        tmp = directory / f".{sc.applicationId}.tmp"
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(directory / f"{sc.applicationId}.json")
    except OSError as exc:
        print(f"warning: could not register the application in {directory}: {exc}", file=sys.stderr)


def create(kind: str) -> tuple[Any, Any]:
    settings = load_settings(kind)
    if kind != "local":
        check_cluster(kind, settings)
    os.environ["SPARK_CONF_DIR"] = str(conf_dir(kind))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(f"{DISPLAY_NAMES[kind]} ({getpass.getuser()})")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    if kind != "local":
        register(kind, sc, settings)
    return spark, sc


def start(kind: str) -> tuple[Any, Any]:
    """(spark, sc), or two stand-ins carrying the reason Spark is unavailable."""
    try:
        return create(kind)
    except SparkUnavailable as exc:
        message = str(exc)
    except Exception as exc:  # a JVM that would not start, a refused connection, ...
        message = f"Spark did not start: {exc}"
    print(f"{DISPLAY_NAMES[kind]}: {message}", file=sys.stderr, flush=True)
    return Unavailable(message), Unavailable(message)


def conf_path(kind: str) -> Path:
    return conf_file(kind)
