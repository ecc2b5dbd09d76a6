"""What this node offers, measured with psutil (or the provider's resource model when given)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil

from agent.config import AgentConfig
from protos.bench.v1 import types_pb2


def measure(config: AgentConfig) -> types_pb2.Capacity:
    cores = config.cores or psutil.cpu_count(logical=True) or 1
    memory = config.memory_bytes or psutil.virtual_memory().total
    total = free = 0
    if _is_mount_or_dir(config.scratch_dir):
        usage = psutil.disk_usage(str(config.scratch_dir))
        total, free = usage.total, usage.free
    return types_pb2.Capacity(cores=cores, memory_bytes=memory, scratch_total_bytes=total,
                              scratch_free_bytes=min(free, total), load1=os.getloadavg()[0])


def _is_mount_or_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def running_jobs() -> int:
    """SGE runs every job task under an sge_shepherd; count those visible in this pid namespace."""
    count = 0
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") == "sge_shepherd":
            count += 1
    return count


def node_address(config: AgentConfig) -> tuple[str, str]:
    hostname = socket.gethostname()
    if config.advertise_ip:
        return hostname, config.advertise_ip
    try:
        ip = socket.gethostbyname(hostname)
    except OSError:
        ip = ""
    return hostname, ip
