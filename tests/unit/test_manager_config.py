from __future__ import annotations

from pathlib import Path

import pytest

from manager.config import ConfigError, ManagerConfig, load_config


def test_defaults_are_valid() -> None:
    config = ManagerConfig()
    assert config.scaler_log == Path("/data/logs/sge-scaler.log")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"listen": ("nohost",)}, "HOST:PORT"),
    ({"mode": "elastic"}, "mode must be static or dynamic"),
    ({"members": 51}, "hard limit"),
    ({"min_members": 3, "max_members": 2}, "min (3)"),
    ({"max_members": 60}, "must not exceed the hard limit 50"),
    ({"lost_after_s": 2.0, "heartbeat_interval_s": 5.0}, "longer than the heartbeat interval"),
    ({"member_cores": 1}, "leaves no usable core"),
    ({"scratch_bytes": "512M"}, "between 1G and 16T"),
    ({"scratch_bytes": "17T"}, "between 1G and 16T"),
    ({"member_memory_bytes": "lots"}, "not a size"),
    ({"spark_conf_group": "Bench Users"}, "spark_conf_group must be a Unix group name"),
    ({"spark_conf_group": "x" * 33}, "spark_conf_group must be a Unix group name"),
])
def test_bad_values_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "manager.toml"
    path.write_text('listen = ["127.0.0.1:6000"]\nmode = "dynamic"\nmax_members = 5\nscratch_bytes = "2G"\n'
                    '[ec2]\nregion = "eu-west-1"\n')
    config = load_config(path, {"max_members": 7})
    assert config.listen == ("127.0.0.1:6000",) and config.max_members == 7
    assert config.scratch_bytes == 2 * 1024**3 and config.ec2["region"] == "eu-west-1"


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "manager.toml"
    path.write_text("lost_afer_s = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(path, {})


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})
