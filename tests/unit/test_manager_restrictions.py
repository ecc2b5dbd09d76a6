"""The addresses a restricted node always reaches, as the manager sends them to every agent."""

from __future__ import annotations

from pathlib import Path

from manager.config import ManagerConfig
from manager.restrictions import cluster_addresses, to_pb
from manager.workspace_settings import WorkspaceSettings


def test_the_managers_own_address_and_the_operators_cidrs(tmp_path: Path) -> None:
    config = ManagerConfig(listen=("0.0.0.0:50051", "127.0.0.1:50052"), advertise_address="10.0.3.7:50051",
                           cluster_cidrs="10.0.0.0/16, 10.1.0.0/24", local_state_root=tmp_path)
    # unspecified and loopback listen addresses are not destinations; the advertised one is
    assert cluster_addresses(config) == ["10.0.0.0/16", "10.1.0.0/24", "10.0.3.7/32"]


def test_settings_in_force_become_the_agents_message() -> None:
    pb = to_pb(WorkspaceSettings(allowlist=("allowed.test", ".example.com"), upload=False), ["10.0.3.7/32"])
    assert list(pb.allowlist) == ["allowed.test", ".example.com"] and pb.upload is False
    assert list(pb.cluster_addresses) == ["10.0.3.7/32"]
