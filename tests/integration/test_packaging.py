"""Production packaging checked with the real tools: systemd-analyze on the units, packer on the template.

The units are checked inside a throwaway root (`--root=`) holding stub executables at the real install
paths, so nothing is written to this machine's /opt and the check sees exactly the paths a node has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
PACKER = REPO / "packer"
TEMPLATE = PACKER / "bench-node.pkr.hcl"
BENCH_UNITS = ("bench-manager.service", "bench-agent.service")
ALL_UNITS = (*BENCH_UNITS, "bench-first-boot.service", "bench-imds-guard.service", "sge-qmaster.service",
             "sge-execd.service", "bench-spark-master.service")
# Goals from issue 8 (systemd-analyze's 0-10 exposure scale; lower is safer).
EXPOSURE_GOALS = {"bench-manager.service": 2.5, "bench-agent.service": 5.0}
STUB_EXECUTABLES = (
    "opt/bench/venv/bin/bench-manager",
    "opt/bench/venv/bin/bench-agent",
    "opt/bench/venv/bin/bench-imds-guard",
    "opt/bench/venv/bin/bench-spark-master",
    "usr/local/sbin/bench-first-boot",
    "usr/lib/gridengine/sge_qmaster",
    "usr/lib/gridengine/sge_execd",
)


def run(*args: str | Path, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} on PATH (make deps)")
    assert path is not None
    return path


@pytest.fixture()
def unit_root(tmp_path: Path) -> Path:
    """A root with the system's own unit library (targets, mounts), stub binaries and our units."""
    require_tool("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for relative in STUB_EXECUTABLES:
        stub = root / relative
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in ALL_UNITS:
        shutil.copy(UNITS / unit, target / unit)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return run("systemd-analyze", "verify", f"--root={root}", unit)


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file; keys may repeat, so values are collected in order."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# --- systemd ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_unit_verifies_without_any_output(unit_root: Path, unit: str) -> None:
    # systemd-analyze verify exits 0 on bad keys and values and only prints a warning: any output fails.
    result = verify(unit_root, unit)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", (
        f"systemd-analyze verify {unit}:\n{result.stdout}{result.stderr}")


def test_verify_check_catches_a_bad_value(unit_root: Path) -> None:
    """The check above must be able to fail: a misspelt restart policy produces output."""
    unit = unit_root / "etc/systemd/system/bench-manager.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = verify(unit_root, "bench-manager.service")
    assert "restart specifier" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", BENCH_UNITS)
def test_exposure_meets_the_goal(unit_root: Path, unit: str) -> None:
    result = run("systemd-analyze", "security", "--offline=yes", f"--root={unit_root}", unit)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}{result.stderr}"
    exposure = float(match.group(1))
    assert exposure <= EXPOSURE_GOALS[unit], f"{unit}: exposure {exposure} > goal {EXPOSURE_GOALS[unit]}"


@pytest.mark.parametrize("unit", BENCH_UNITS)
def test_daemon_units_are_watched_notify_services(unit: str) -> None:
    settings = unit_settings(unit)
    daemon = unit.removesuffix(".service")
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["Restart"] == ["on-failure"]
    assert settings["ExecStart"] == [f"/opt/bench/venv/bin/{daemon} --config /etc/bench/{daemon[6:]}.toml"]
    assert "network-online.target" in " ".join(settings["After"])
    assert "network-online.target" in " ".join(settings["Wants"])
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert any(path.startswith("-/etc/bench/") for path in settings["EnvironmentFile"])


def test_agent_may_write_only_its_data_paths_and_mount_fuse() -> None:
    settings = unit_settings("bench-agent.service")
    writable = set(" ".join(settings["ReadWritePaths"]).split())
    assert writable == {"/data/mounts", "/data/logs", "/scratch"}
    assert settings["StateDirectory"] == ["bench-agent"]
    assert "CAP_SYS_ADMIN" in settings["CapabilityBoundingSet"][0].split()
    assert "sys-fs-fuse-connections.mount" in " ".join(settings["After"])
    assert "/dev/fuse rw" in settings["DeviceAllow"]


def test_manager_runs_unprivileged() -> None:
    settings = unit_settings("bench-manager.service")
    assert settings["User"] == ["bench-manager"]
    # only to take a requesting user's ids in the child that checks a mount source as that user
    assert settings["CapabilityBoundingSet"] == ["CAP_SETUID CAP_SETGID"]
    # /data/.spark: the Spark status and conf it publishes for kernels, and their registration directory
    writable = {path.lstrip("-") for path in " ".join(settings["ReadWritePaths"]).split()}
    assert writable == {"/data/logs", "/data/.spark"}


# --- packer ----------------------------------------------------------------------------------------------


@pytest.fixture()
def wheel_file(tmp_path: Path) -> Path:
    # packer validate checks that file provisioner sources exist; the content does not matter to it.
    wheel = tmp_path / "bench_cluster-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return wheel


def packer_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    require_tool("packer")
    # Offline on purpose: validation must not depend on (or talk to) AWS. CHECKPOINT_DISABLE keeps
    # packer from phoning home for update checks.
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_LOG": ""}
    return run("packer", *args, cwd=PACKER, env=env)


def test_packer_template_is_formatted() -> None:
    result = packer_run("fmt", "-check", "-diff", TEMPLATE)
    assert result.returncode == 0, f"packer fmt -check:\n{result.stdout}{result.stderr}"


def test_packer_template_validates(wheel_file: Path) -> None:
    result = packer_run("validate", "-var", f"wheel_path={wheel_file}", TEMPLATE)
    assert result.returncode == 0, f"packer validate:\n{result.stdout}{result.stderr}"


def test_packer_validate_names_a_missing_wheel(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.whl"
    result = packer_run("validate", "-var", f"wheel_path={missing}", TEMPLATE)
    assert result.returncode != 0
    assert str(missing) in result.stdout + result.stderr


def _text(value: Any) -> str:
    """python-hcl2 8 keeps the quotes of string literals; strip them."""
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _provisioners() -> list[tuple[str, dict[str, Any]]]:
    with TEMPLATE.open() as handle:
        template = hcl2.load(handle)
    (build,) = template["build"]
    return [(_text(kind), body) for block in build["provisioner"] for kind, body in block.items()]


def test_template_provisioners_upload_files_that_exist() -> None:
    uploads = {}
    for kind, body in _provisioners():
        if kind != "file":
            continue
        source = _text(body["source"])
        if source == "${var.wheel_path}":
            continue  # supplied by the caller; checked by packer validate above
        local = Path(source.replace("${path.root}", str(PACKER))).resolve()
        assert local.exists(), f"file provisioner uploads {source}, which does not exist ({local})"
        uploads[f"{_text(body['destination'])}/{local.name}"] = local
    assert uploads, "the template uploads nothing from the repository"

    commands = [_text(line) for kind, body in _provisioners() if kind == "shell" for line in body["inline"]]
    install = [command for command in commands if "install-node.sh" in command]
    assert len(install) == 1, f"install-node.sh must run exactly once, commands: {commands}"
    script = install[0].split()[install[0].split().index("bash") + 1]
    uploaded_dir, _, rest = script.partition("/scripts/")
    local_scripts = uploads.get(f"{uploaded_dir}/scripts")
    assert local_scripts is not None, f"{script} is not inside an uploaded directory ({sorted(uploads)})"
    assert (local_scripts / rest).is_file(), f"{script} maps to missing {local_scripts / rest}"
    assert "--wheel" in install[0] and "--src" in install[0]
    # Every unit install-node.sh installs must be uploaded with the systemd directory.
    assert any(local == UNITS for local in uploads.values()), "systemd/ is not uploaded"


# --- node scripts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["install-node.sh", "first-boot.sh"])
def test_node_scripts_parse(script: str) -> None:
    result = run("bash", "-n", PACKER / "scripts" / script)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("args", "message"), [
    ((), "--wheel PATH is required"),
    (("--wheel", "/nonexistent/x.whl"), "does not exist"),
    (("--wheel",), "--wheel needs a path"),
    (("--colour", "blue"), "unknown argument --colour"),
])
def test_install_script_rejects_bad_arguments(args: tuple[str, ...], message: str) -> None:
    # The argument checks run before apt, useradd or any write, so these runs change nothing.
    result = run("bash", PACKER / "scripts" / "install-node.sh", *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_install_script_rejects_a_file_that_is_not_a_wheel(tmp_path: Path) -> None:
    not_a_wheel = tmp_path / "bench.tar.gz"
    not_a_wheel.write_text("x")
    result = run("bash", PACKER / "scripts" / "install-node.sh", "--wheel", not_a_wheel)
    assert result.returncode != 0
    assert "is not a .whl file" in result.stderr
