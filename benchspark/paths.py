"""Where the cluster and the kernels meet on the shared /data: config files, the status the manager
publishes, and the registrations kernels leave for the manager."""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("local", "remote", "dynamic")
DISPLAY_NAMES = {
    "local": "PySpark – Local",
    "remote": "PySpark – Remote",
    "dynamic": "PySpark – Remote - Dynamic",
}
CONF_SUBDIRS = {"local": "local/conf", "remote": "remote/conf", "dynamic": "remote/conf-dynamic"}
CONF_NAME = "spark-defaults.conf"


def spark_root(data_root: str | Path | None = None) -> Path:
    if data_root is None:
        data_root = os.environ.get("BENCH_DATA_ROOT", "/data")
    return Path(data_root) / ".spark"


def conf_dir(kind: str, data_root: str | Path | None = None) -> Path:
    return spark_root(data_root) / CONF_SUBDIRS[kind]


def conf_file(kind: str, data_root: str | Path | None = None) -> Path:
    return conf_dir(kind, data_root) / CONF_NAME


def status_file(data_root: str | Path | None = None) -> Path:
    """Written by the manager every control-loop pass: master, UI, members' Spark capacity."""
    return spark_root(data_root) / "cluster.json"


def apps_dir(data_root: str | Path | None = None) -> Path:
    """Kernels register their application here (id, kind, driver UI) so the manager can follow
    what a Remote - Dynamic application asks for."""
    return spark_root(data_root) / "apps"
