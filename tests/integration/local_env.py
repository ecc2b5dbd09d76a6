"""The host-side environment the local provider needs (what `bench-cluster up` prepares), for tests
that drive LocalProvider or SgeClient directly: cluster.json, the bridge, the name pool in
/etc/hosts and, optionally, a configured sge_qmaster. Removes what it created (the qmaster is stopped
again when it was not running before)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchcluster import sge_setup
from manager.providers import netns
from manager.providers.local import LocalProvider
from manager.providers.local_config import LocalClusterConfig
from tests.conftest import require, require_root, require_sge

SMALL_SCRATCH = 32 * 1024**2


def require_local_provider() -> None:
    require_root()
    require(Path("/usr/bin/unshare").exists() and Path("/usr/bin/nsenter").exists(), "util-linux unshare/nsenter")
    require(subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0,
            "ip netns (iproute2)")


def agent_stand_in(marker_dir: Path) -> list[str]:
    """Until the real agent runs here: record what a process inside the member sees, then wait."""
    script = (
        "import os, socket, time, pathlib;"
        f"d = pathlib.Path({str(marker_dir)!r}) / socket.gethostname(); d.mkdir(parents=True, exist_ok=True);"
        "(d / 'hostname').write_text(socket.gethostname());"
        "(d / 'mountinfo').write_text(open('/proc/self/mountinfo').read());"
        "(d / 'pid').write_text(str(os.getpid()));"
        "time.sleep(100000)"
    )
    return [sys.executable, "-c", script]


@contextmanager
def local_environment(state_root: Path, cluster_id: str, *, with_sge: bool = False) -> Iterator[LocalClusterConfig]:
    require_local_provider()
    if with_sge:
        require_sge()
    config = LocalClusterConfig(cluster_id=cluster_id, manager_hostname=socket.gethostname(), grpc_port=50599,
                                min_scratch_bytes=16 * 1024**2)
    config.save(state_root)
    netns.ensure_bridge(config)
    hosts_changed = netns.write_hosts_block(config.hosts_lines())
    install = sge_setup.SgeInstall()
    qmaster_was_running = sge_setup.qmaster_pid(install) is not None
    if with_sge:
        if hosts_changed and qmaster_was_running:
            sge_setup.stop_qmaster(install)  # it must see the member names from its start
        sge_setup.bring_up(install, config.manager_hostname)
    try:
        yield config
    finally:
        if with_sge and not qmaster_was_running:
            sge_setup.stop_qmaster(install)  # leave the machine as the test found it
        provider = LocalProvider(cluster_id, state_root)
        leftover = asyncio.run(provider.list())
        if leftover:
            asyncio.run(provider.terminate([n.node_id for n in leftover]))
        if not netns.our_netns():
            netns.remove_bridge(config.bridge)
            netns.remove_hosts_block()
