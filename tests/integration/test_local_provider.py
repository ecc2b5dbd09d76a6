"""LocalProvider against the real machine: namespaces, loop-mounted /scratch, detached members."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.providers import local_processes, local_scratch, netns
from manager.providers.base import NodeProvider, NodeSpec, NodeState, ProviderError
from manager.providers.local import LocalProvider
from manager.providers.local_config import LocalClusterConfig
from tests.integration import provider_contract as contract
from tests.integration.local_env import SMALL_SCRATCH, agent_stand_in, local_environment

CLUSTER = "lp-test"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[tuple[Path, LocalClusterConfig]]:
    state_root = tmp_path / "state"
    with local_environment(state_root, CLUSTER) as config:
        yield state_root, config


def spec(scratch: int = SMALL_SCRATCH, cluster: str = CLUSTER) -> NodeSpec:
    return NodeSpec(cluster_id=cluster, cores=2, memory_bytes=2 * 1024**3, scratch_bytes=scratch,
                    manager_address="127.0.0.1:50599",
                    join_tokens=tuple(f"bcj_test-token-{i:02d}-0123456789" for i in range(8)))


def provider(state_root: Path, seen: Path) -> LocalProvider:
    return LocalProvider(CLUSTER, state_root, agent_command=lambda launch: agent_stand_in(seen))


def wait_for(path: Path, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


def in_member(pid: int, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "-u", "-m", "-p", "--", *cmd],
                          capture_output=True, text=True, timeout=30, check=False)


def test_member_has_own_hostname_ip_scratch_and_mounts(env: tuple[Path, LocalClusterConfig], tmp_path: Path) -> None:
    state_root, config = env
    seen = tmp_path / "seen"
    p = provider(state_root, seen)
    (node,) = asyncio.run(p.create(1, spec()))
    try:
        assert node.state == NodeState.RUNNING and node.hostname == "bench-m01" and node.ip == config.slot(1).ip
        assert wait_for(seen / node.hostname / "hostname") == node.hostname
        mountinfo = wait_for(seen / node.hostname / "mountinfo")
        assert " /scratch " in mountinfo and " /data/mounts " in mountinfo
        pid = local_processes.member_init_pid(CLUSTER, node.node_id)
        assert pid is not None
        df = in_member(pid, "df", "-B1", "--output=size", "/scratch")
        size = int(df.stdout.split()[-1])
        assert SMALL_SCRATCH // 2 < size <= SMALL_SCRATCH, df.stdout  # ext4 keeps some for itself
        # its /data/mounts is private: a file there is not on the host's /data/mounts
        probe = f"probe-{os.getpid()}"
        assert in_member(pid, "touch", f"/data/mounts/{probe}").returncode == 0
        assert not Path(f"/data/mounts/{probe}").exists()
        # /scratch is not visible on the host either
        assert "/scratch" not in Path("/proc/self/mountinfo").read_text().split()
        # the member reaches the manager over the bridge, and only its own IP is on eth0
        ip_out = in_member(pid, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
        assert f" {node.ip}/24 " in ip_out
        with socket.create_server((config.manager_ip, 0)) as server:
            port = server.getsockname()[1]
            dial = in_member(pid, sys.executable, "-c",
                             f"import socket; socket.create_connection(({config.manager_ip!r}, {port}), 5)")
            assert dial.returncode == 0, dial.stderr
    finally:
        asyncio.run(p.terminate([node.node_id]))
    assert local_processes.member_init_pid(CLUSTER, node.node_id) is None
    assert node.hostname not in netns.list_netns()
    assert not (state_root / "members" / node.hostname).exists()
    assert local_scratch.loops_backed_by(state_root) == []


def test_members_survive_their_creator_and_are_rediscovered(env: tuple[Path, LocalClusterConfig],
                                                             tmp_path: Path) -> None:
    """The creating process (a stand-in manager) is killed with SIGKILL; a new provider instance
    lists the same member, which still runs, and can terminate it."""
    state_root, _ = env
    seen = tmp_path / "seen"
    creator = subprocess.Popen(
        [sys.executable, "-c", f"""
import asyncio, json, sys, time
from pathlib import Path
from manager.providers.local import LocalProvider
from manager.providers.base import NodeSpec
from tests.integration.local_env import agent_stand_in
p = LocalProvider({CLUSTER!r}, Path({str(state_root)!r}),
                  agent_command=lambda launch: agent_stand_in(Path({str(seen)!r})))
spec = NodeSpec(cluster_id={CLUSTER!r}, cores=2, memory_bytes=2 << 30, scratch_bytes={SMALL_SCRATCH},
                manager_address="127.0.0.1:1", join_tokens=("bcj_" + "t" * 32,))
nodes = asyncio.run(p.create(1, spec))
print("NODES " + json.dumps([n.node_id for n in nodes]), flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        assert creator.stdout is not None
        lines = (creator.stdout.readline() for _ in range(50))  # structlog lines come first
        reported = next(line for line in lines if line.startswith("NODES ") or not line)
        (node_id,) = json.loads(reported.removeprefix("NODES "))
    finally:
        creator.send_signal(signal.SIGKILL)
        creator.wait(timeout=10)
    p = provider(state_root, seen)
    listed = asyncio.run(p.list())
    assert [n.node_id for n in listed] == [node_id]
    stand_in_pid = int(wait_for(seen / listed[0].hostname / "pid"))
    init_pid = local_processes.member_init_pid(CLUSTER, node_id)
    assert init_pid is not None and local_processes.alive(init_pid)
    assert in_member(init_pid, "hostname").stdout.strip() == listed[0].hostname
    asyncio.run(p.terminate([node_id]))
    assert asyncio.run(p.list()) == []
    assert local_processes.member_init_pid(CLUSTER, node_id) is None
    assert stand_in_pid > 0


def test_bad_specs_are_rejected_and_create_nothing(env: tuple[Path, LocalClusterConfig], tmp_path: Path) -> None:
    state_root, _ = env
    p = LocalProvider(CLUSTER, state_root)  # default 1 GB floor? no: cluster.json says 16 MiB for tests
    strict = LocalProvider(CLUSTER, state_root, min_scratch_bytes=local_scratch.MIN_SCRATCH_BYTES)
    with pytest.raises(ProviderError, match="scratch size") as raised:
        asyncio.run(strict.create(1, spec(scratch=64 * 1024**2)))
    assert raised.value.retryable is False
    with pytest.raises(ProviderError, match="cluster 'other'"):
        asyncio.run(p.create(1, spec(cluster="other")))
    with pytest.raises(ProviderError, match="cannot create 51"):
        asyncio.run(p.create(51, spec()))
    assert asyncio.run(p.list()) == []
    assert netns.our_netns() == []


def test_missing_cluster_config_is_a_clear_error(tmp_path: Path) -> None:
    p = LocalProvider(CLUSTER, tmp_path / "nowhere")
    with pytest.raises(ProviderError, match="bench-cluster up"):
        asyncio.run(p.create(1, spec()))


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__)
def test_provider_contract(env: tuple[Path, LocalClusterConfig], tmp_path: Path, check) -> None:
    state_root, _ = env
    p: NodeProvider = provider(state_root, tmp_path / "seen")
    asyncio.run(check(p, spec()))


def test_contract_unknown_id_and_isolation(env: tuple[Path, LocalClusterConfig], tmp_path: Path) -> None:
    state_root, config = env
    p = provider(state_root, tmp_path / "seen")
    asyncio.run(contract.check_terminate_unknown_id_is_not_an_error(p, "local-doesnotexist"))
    other_root = tmp_path / "other"
    LocalClusterConfig(**{**config.__dict__, "cluster_id": "lp-other"}).save(other_root)
    other = LocalProvider("lp-other", other_root)
    asyncio.run(contract.check_clusters_are_isolated(p, spec(), other))
