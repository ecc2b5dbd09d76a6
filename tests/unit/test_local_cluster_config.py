"""Pure parts of the local cluster: `up` option validation, the name/IP pool, the /etc/hosts block."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchcluster.options import UpOptions, UsageError, build_options
from benchcluster.sge_setup import parse_settings, render_settings
from manager.providers.local_config import HOSTS_BEGIN, HOSTS_END, LocalClusterConfig
from manager.providers.netns import remove_hosts_block, write_hosts_block


def options(**overrides: object) -> UpOptions:
    args: dict[str, object] = dict(members=2, cores=2, memory="4G", scratch="1G", allow_small_scratch=False,
                                   mode="static", min_members=None, max_members=None, min_age=None, idle=None,
                                   interval=None, dedicated_manager=False, port=50051, timeout=60.0,
                                   cluster_id="local")
    args.update(overrides)
    return build_options(**args)  # type: ignore[arg-type]


def test_valid_static_and_dynamic_options() -> None:
    static = options()
    assert static.members == 2 and static.memory_bytes == 4 * 1024**3 and static.scratch_bytes == 1024**3
    dynamic = options(mode="dynamic", members=None, min_members=0, max_members=3, min_age=5, idle=10, interval=1)
    assert (dynamic.min_members, dynamic.max_members, dynamic.idle_s) == (0, 3, 10)
    assert options(members=50).members == 50
    assert options(cores=1, dedicated_manager=True).cores == 1
    assert options(scratch="64M", allow_small_scratch=True).scratch_bytes == 64 * 1024**2


@pytest.mark.parametrize(("overrides", "message"), [
    ({"members": 51}, "hard limit"),
    ({"members": -1}, "outside 0..50"),
    ({"members": None}, "static mode needs --members"),
    ({"mode": "dynamic"}, "--members belongs to --mode static"),
    ({"mode": "dynamic", "members": None, "min_members": 3, "max_members": 1}, "--min (3) ≤ --max (1)"),
    ({"mode": "dynamic", "members": None, "max_members": 51}, "hard limit"),
    ({"min_members": 1}, "--min/--max belong to --mode dynamic"),
    ({"cores": 1}, "no usable core"),
    ({"memory": "100M"}, "at least 512M"),
    ({"memory": "four"}, "not a size"),
    ({"scratch": "10M"}, "between 1G and 16T"),
    ({"scratch": "17T"}, "between 1G and 16T"),
    ({"scratch": "1M", "allow_small_scratch": True}, "at least 16M"),
    ({"idle": -1}, "--idle must not be negative"),
    ({"port": 70000}, "not a TCP port"),
    ({"cluster_id": "bad id!"}, "letters, digits"),
])
def test_bad_options_name_the_problem(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        options(**overrides)
    assert message in str(raised.value)


def test_member_pool_names_and_addresses() -> None:
    config = LocalClusterConfig(cluster_id="c", manager_hostname="vm", grpc_port=50051)
    slots = config.slots()
    assert len(slots) == 50
    assert (slots[0].hostname, slots[0].ip, slots[0].host_veth) == ("bench-m01", "10.231.0.11", "bv01")
    assert (slots[-1].hostname, slots[-1].ip) == ("bench-m50", "10.231.0.60")
    assert len({s.ip for s in slots} | {config.manager_ip}) == 51
    assert all(len(s.host_veth) <= 15 for s in slots)
    assert config.manager_address == "10.231.0.1:50051"
    with pytest.raises(ValueError):
        config.slot(51)


def test_config_round_trips_through_the_state_root(tmp_path: Path) -> None:
    config = LocalClusterConfig(cluster_id="c", manager_hostname="vm", grpc_port=50600,
                                min_scratch_bytes=16)
    config.save(tmp_path)
    assert LocalClusterConfig.load(tmp_path) == config
    with pytest.raises(FileNotFoundError, match="bench-cluster up"):
        LocalClusterConfig.load(tmp_path / "missing")


def test_hosts_block_is_replaced_and_removed_without_touching_other_lines(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 db\n")
    assert write_hosts_block(["10.231.0.11 bench-m01"], hosts)
    assert not write_hosts_block(["10.231.0.11 bench-m01"], hosts)  # unchanged: no rewrite
    assert write_hosts_block(["10.231.0.12 bench-m02"], hosts)
    text = hosts.read_text()
    assert text.count(HOSTS_BEGIN) == 1 and "bench-m01" not in text and "bench-m02" in text
    assert text.startswith("127.0.0.1 localhost\n10.0.0.5 db\n")
    assert remove_hosts_block(hosts)
    assert hosts.read_text() == "127.0.0.1 localhost\n10.0.0.5 db\n"
    assert HOSTS_END not in hosts.read_text()
    assert not remove_hosts_block(hosts)


def test_sge_settings_parse_joins_continuations() -> None:
    text = "min_uid 1000\nreporting_params accounting=true \\\n                 flush_time=00:00:15\n"
    settings = parse_settings(text)
    assert settings == {"min_uid": "1000", "reporting_params": "accounting=true flush_time=00:00:15"}
    assert parse_settings(render_settings(settings)) == settings
