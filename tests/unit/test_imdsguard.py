"""The metadata guard's rules, as text (the integration test loads them into a real namespace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import imdsguard


def test_the_metadata_service_is_always_guarded_on_every_port() -> None:
    rules = [e.rule() for e in imdsguard.endpoints([])]
    assert rules == ["meta skuid != 0 ip daddr 169.254.169.254 counter reject",
                     "meta skuid != 0 ip6 daddr fd00:ec2::254 counter reject"]


def test_a_spot_url_elsewhere_adds_its_host_and_port_once() -> None:
    eps = imdsguard.endpoints(["http://10.231.0.1:8111/latest", "http://10.231.0.1:8111", "https://[fd00::5]/x"])
    assert [e.rule() for e in eps[2:]] == ["meta skuid != 0 ip daddr 10.231.0.1 tcp dport 8111 counter reject",
                                           "meta skuid != 0 ip6 daddr fd00::5 tcp dport 443 counter reject"]


def test_the_metadata_url_itself_adds_nothing() -> None:
    assert len(imdsguard.endpoints(["http://169.254.169.254"])) == 2


def test_the_script_replaces_the_table_in_one_transaction() -> None:
    script = imdsguard.ruleset(imdsguard.endpoints([]))
    assert script.startswith("table inet bench_imds_guard\ndelete table inet bench_imds_guard\n")
    assert "hook output" in script and "policy accept" in script


def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(imdsguard.GuardError, match="has no host"):
        imdsguard.endpoints(["169.254.169.254"])


def test_the_agent_config_names_the_spot_url(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    assert imdsguard.urls_from_agent_config(config) == []  # first boot: not written yet
    config.write_text('manager = "10.0.0.1:50051"\nspot_metadata_url = "http://10.0.0.9:80"\n')
    assert imdsguard.urls_from_agent_config(config) == ["http://10.0.0.9:80"]
    config.write_text("not toml [")
    with pytest.raises(imdsguard.GuardError, match="unreadable"):
        imdsguard.urls_from_agent_config(config)
