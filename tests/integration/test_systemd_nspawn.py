"""The units under a real systemd: a clean Debian root, install-node.sh, first boot, then the daemons.

1. debootstrap a minimal Debian 12 root with systemd (cached under /var/cache/bench-tests);
2. copy it and run packer/scripts/install-node.sh inside it (chroot) with the wheel built from this
   checkout: the same install the Packer image gets (apt and pip downloads are cached, the install runs);
3. boot it with systemd-nspawn (own network namespace: only its loopback) with user-data for the manager
   role, so bench-first-boot enables bench-manager (provider none) and bench-agent (dialling 127.0.0.1);
4. an enabled one-shot driver unit inside records `systemctl show`, checks the sandbox from outside the
   services, freezes each daemon's main loop (BENCH_DEBUG_ALLOW_HANG=1, kill -USR2) and records the
   watchdog restart, then powers the container off. The test reads the results from a bind mount.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require, require_root

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BENCH_TEST_CACHE", "/var/cache/bench-tests"))
BASE_ROOT = CACHE / "bookworm-systemd-base"
MIRROR = os.environ.get("BENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DAEMONS = ("bench-manager", "bench-agent")
HANG_WATCHDOG_S = 3  # the test drop-in shortens WatchdogSec so a hang is noticed quickly
BOOT_TIMEOUT_S = 300

USER_DATA = """#bench-cluster-userdata v1
role = "manager"
cluster_id = "nspawn"
manager_address = "127.0.0.1:50051"
cores = 2
memory_bytes = 4294967296
scratch_bytes = 1073741824

[manager]
provider = "none"
sge = false
# Not used with provider none; proves first boot carries nested settings into manager.toml intact.
ec2 = { region = "eu-central-1", image_id = "ami-12c6146b", instance_types = { "4/16G" = "m6i.xlarge" } }
"""

# Test-only drop-in: the debug hang hook on, a short watchdog, and a quick restart.
HANG_DROPIN = f"""[Service]
Environment=BENCH_DEBUG_ALLOW_HANG=1
WatchdogSec={HANG_WATCHDOG_S}
RestartSec=1
"""

# Runs inside the agent's sandbox after start: root with CAP_DAC_OVERRIDE, yet / must be read-only.
AGENT_PROBE_DROPIN = """[Service]
ExecStartPost=/bin/sh -c 'if touch /etc/bench-sandbox-probe 2>/dev/null; then r=writable; else r=read-only; fi; \
if touch /data/logs/.probe 2>/dev/null; then w=writable; else w=read-only; fi; \
echo "etc=$r data_logs=$w" > /data/logs/agent-sandbox-probe'
# The recipe for mounts that SGE jobs can see: join PID 1's mount namespace first (the unit allows
# exactly this: CAP_SYS_CHROOT, RestrictNamespaces=mnt, setns in the syscall filter).
ExecStartPost=/usr/bin/nsenter --mount=/proc/1/ns/mnt -- /bin/sh -c 'mountpoint -q /data/mounts/setns-probe || \
{ mkdir -p /data/mounts/setns-probe && mount -t tmpfs -o size=1m probe /data/mounts/setns-probe && \
echo made-in-agent-unit > /data/mounts/setns-probe/hello; }'
"""

# Runs inside the manager's sandbox (unprivileged user, no capabilities): SGE must still answer, and list
# bench-manager among its managers (first boot registered it), or qconf/qmod calls of the daemon would fail.
MANAGER_PROBE_DROPIN = """[Service]
ExecStartPost=/bin/sh -c 'for i in $(seq 1 40); do /usr/bin/qconf -sm > /data/logs/manager-qconf-probe 2>&1 && break; \
sleep 0.5; done; true'
"""

DRIVER_UNIT = """[Unit]
Description=bench test driver: record the daemons' states, prove the watchdog, power off
After=bench-first-boot.service multi-user.target
Wants=bench-first-boot.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bench-test-driver
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=append:/results/driver.log
StandardError=append:/results/driver.log

[Install]
WantedBy=multi-user.target
"""

DRIVER = r"""#!/bin/bash
# Every wait is bounded; results go to /results (a bind mount the test reads after power-off).
set -u
R=/results
show() { systemctl show -p ActiveState,SubState,MainPID,NRestarts,Result "$1" > "$R/$2"; }
prop() { systemctl show -p "$2" --value "$1"; }
wait_active() {
  for _ in $(seq 1 120); do
    [ "$(prop "$1" ActiveState)" = active ] && [ "$(prop "$1" SubState)" = running ] && return 0
    sleep 0.5
  done
  return 1
}
for d in bench-manager bench-agent; do wait_active "$d" || echo "$d never became active" >> "$R/driver.log"; done
for u in bench-first-boot bench-manager bench-agent sge-qmaster bench-spark-master; do show "$u" "initial-$u.txt"; done
# The Spark master's JVM answers on its REST port and is ALIVE (a JVM takes a while to start, and a
# master with recovery state answers STANDBY / RECOVERING first: bounded wait).
for _ in $(seq 1 120); do
  /opt/bench/venv/bin/python -c 'import json, sys, urllib.request as u
body = u.urlopen("http://127.0.0.1:8080/json/", timeout=2).read().decode()
print(body)
sys.exit(0 if json.loads(body).get("status") == "ALIVE" else 1)' > "$R/spark-master.json" 2>/dev/null \
    && break
  sleep 1
done
# The manager publishes the cluster's Spark status for the kernels on /data (bounded wait).
for _ in $(seq 1 60); do
  [ -s /data/.spark/cluster.json ] && cp /data/.spark/cluster.json "$R/spark-status.json" && break
  sleep 1
done
# Users edit the kernels' spark-defaults.conf as themselves: a member of bench-users may, another may read.
conf=/data/.spark/local/conf/spark-defaults.conf
useradd -m sparkeditor && usermod -aG bench-users sparkeditor
useradd -m sparkreader
stat -c '%a %U %G %n' /data/.spark/local/conf "$conf" > "$R/spark-conf-modes.txt" 2>&1
runuser -u sparkeditor -- sh -c "echo 'spark.executor.memory 1g' >> $conf" > "$R/spark-conf-edit.txt" 2>&1
echo "editor rc=$?" >> "$R/spark-conf-edit.txt"
runuser -u sparkreader -- sh -c "echo 'spark.executor.cores 64' >> $conf" >> "$R/spark-conf-edit.txt" 2>&1
echo "reader rc=$?" >> "$R/spark-conf-edit.txt"
runuser -u sparkreader -- cat "$conf" > "$R/spark-conf-read.txt" 2>&1
journalctl -b --no-pager > "$R/journal-initial.txt" 2>&1
for d in bench-manager bench-agent; do
  pid=$(prop "$d" MainPID)
  awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo" | tail -n 1 > "$R/rootfs-$d.txt"
  awk '$5 == "/data/mounts" || $5 == "/scratch" || $5 == "/data/logs" {print $5, $6}' "/proc/$pid/mountinfo" \
    > "$R/writable-$d.txt"
  grep -E '^(CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status" > "$R/status-$d.txt"
done
# The agent registered with the manager over loopback (READY member in the manager's registry).
for _ in $(seq 1 60); do
  /opt/bench/venv/bin/workspace-ctl cluster members --output json > "$R/members.json" 2>> "$R/driver.log" \
    && grep -q READY "$R/members.json" && break
  sleep 0.5
done
# A mount made by the sandboxed agent must be visible where SGE jobs run (outside the agent's unit).
mkdir -p /data/project/src && echo hello-from-source > /data/project/src/hello.txt
agent_pid=$(prop bench-agent MainPID)
/opt/bench/venv/bin/workspace-ctl data create-mount \
  --mount-path /data/mounts/probe --source /data/project/src --mode read-write > "$R/create-mount.txt" 2>&1
for _ in $(seq 1 40); do
  grep -q " /data/mounts/probe " "/proc/$agent_pid/mountinfo" && break
  sleep 0.5
done
grep " /data/mounts/probe " "/proc/$agent_pid/mountinfo" > "$R/mount-in-agent.txt"
grep " /data/mounts/probe " /proc/1/mountinfo > "$R/mount-outside.txt"
cat /data/mounts/probe/hello.txt > "$R/mount-read-outside.txt" 2>&1
cat /data/mounts/setns-probe/hello > "$R/setns-probe.txt" 2>&1
cp /data/logs/manager-qconf-probe "$R/" 2>> "$R/driver.log"
cp /data/logs/agent-sandbox-probe /etc/bench/manager.toml /etc/bench/agent.toml "$R/" 2>> "$R/driver.log"
stat -c '%a %U %G %n' /etc/bench/root.credential /etc/bench/manager-agent.credential /etc/bench/tls/manager.key \
  /etc/bench/tls/ca.key /etc/bench/tls/ca.crt > "$R/tokens.txt"
# An ordinary user: an administrator (root, from first boot) adds them; they use workspace-ctl over TLS.
useradd -m nspawnuser
/opt/bench/venv/bin/workspace-ctl admin add-user nspawnuser --role viewer > "$R/add-user.txt" 2>&1
su -s /bin/sh nspawnuser -c 'BENCH_USER=root /opt/bench/venv/bin/workspace-ctl cluster status; echo "status=$?"; \
  /opt/bench/venv/bin/workspace-ctl cluster scale --static 1; echo "scale=$?"' > "$R/user-ctl.txt" 2>&1
grep '"cluster scale"' /data/logs/activity.log > "$R/user-audit.txt" 2>&1
for d in bench-manager bench-agent; do
  old=$(prop "$d" MainPID); restarts=$(prop "$d" NRestarts)
  echo "$old $restarts" > "$R/before-hang-$d.txt"
  kill -USR2 "$old"
  for _ in $(seq 1 90); do
    new=$(prop "$d" MainPID)
    if [ "$new" != "$old" ] && [ "$new" != 0 ] && [ "$(prop "$d" SubState)" = running ]; then break; fi
    sleep 0.5
  done
  show "$d" "after-hang-$d.txt"
  journalctl -u "$d" --no-pager -o cat > "$R/journal-$d.txt" 2>&1
done
journalctl -b --no-pager > "$R/journal.txt" 2>&1
echo done > "$R/finished"
"""


MEMBER_HOST = "bench-member"
MEMBER_USER_DATA = """#bench-cluster-userdata v1
role = "member"
cluster_id = "nspawn"
manager_address = "bench-manager-host:50051"
join_token = "bcj_nspawn-one-time-join-token-0123456789"
ca_cert = "-----BEGIN CERTIFICATE-----\\nnot-used-offline\\n-----END CERTIFICATE-----\\n"
cores = 4
memory_bytes = 17179869184
scratch_bytes = 1073741824
"""

# The member boot has no manager to reach (private network): record what first boot set up, power off.
MEMBER_DRIVER = r"""#!/bin/bash
set -u
R=/results
for _ in $(seq 1 120); do
  [ "$(systemctl show -p ActiveState --value bench-agent)" = active ] && break
  sleep 0.5
done
for u in bench-first-boot bench-agent sge-execd bench-manager sge-qmaster; do
  systemctl show -p ActiveState,SubState,UnitFileState "$u" > "$R/member-$u.txt"
done
cp /etc/bench/agent.toml "$R/member-agent.toml"
cp /var/lib/gridengine/default/common/act_qmaster "$R/member-act_qmaster"
ls /etc/bench > "$R/member-etc-bench.txt"
stat -c '%a %U %n' /var/lib/bench-agent/join.token /etc/bench/tls/ca.crt > "$R/member-secrets.txt" 2>&1
journalctl -b --no-pager > "$R/member-journal.txt" 2>&1
echo done > "$R/member-finished"
"""


def sh(*args: str | Path, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=timeout,
                            check=False, **kwargs)  # type: ignore[call-overload]
    return result  # type: ignore[no-any-return]


def must(*args: str | Path, timeout: float = 600, **kwargs: object) -> str:
    result = sh(*args, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    return result.stdout


def ensure_base_root() -> Path:
    """A debootstrapped Debian 12 with systemd, built once and reused (built aside, renamed when done)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    marker = BASE_ROOT.with_suffix(".ok")
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and BASE_ROOT.is_dir():
            return BASE_ROOT
        building = CACHE / "bookworm-systemd-base.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(BASE_ROOT, ignore_errors=True)
        must("debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus", "bookworm", building,
             MIRROR, timeout=900)
        building.rename(BASE_ROOT)
        marker.write_text("bookworm minbase + systemd, systemd-sysv, dbus\n")
    return BASE_ROOT


@contextmanager
def chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /sys, /dev for apt and pip, plus persistent download caches (the install itself still runs)."""
    apt_cache, pip_cache = CACHE / "apt-archives", CACHE / "pip-cache"
    for cache in (apt_cache / "partial", pip_cache):
        cache.mkdir(parents=True, exist_ok=True)
    (root / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
    mounts = [
        (["-t", "proc", "proc"], root / "proc"),
        (["-t", "sysfs", "sysfs"], root / "sys"),
        (["--rbind", "/dev"], root / "dev"),
        (["--bind", str(apt_cache)], root / "var/cache/apt/archives"),
        (["--bind", str(pip_cache)], root / "root/.cache/pip"),
    ]
    done: list[Path] = []
    try:
        for options, target in mounts:
            must("mount", *options, target)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            sh("umount", "-R", "-l", target)


def build_wheel(out: Path) -> Path:
    must(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, REPO,
         timeout=300)
    (wheel,) = out.glob("bench_cluster-*.whl")
    return wheel


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def read_props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    for tool in ("debootstrap", "systemd-nspawn", "chroot"):
        require(shutil.which(tool) is not None, f"{tool} (make deps)")
    started = time.monotonic()
    work = tmp_path_factory.mktemp("nspawn")
    base = ensure_base_root()
    root = work / "bench-node"
    must("cp", "-a", "--reflink=auto", base, root, timeout=300)
    try:
        wheel = build_wheel(work / "dist")
        src = root / "tmp/bench-src"
        shutil.copytree(REPO / "systemd", src / "systemd")
        shutil.copytree(REPO / "packer" / "scripts", src / "packer" / "scripts")
        shutil.copy(wheel, src / wheel.name)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        # Trust what this host trusts (site CAs, e.g. a TLS-inspecting proxy in front of PyPI); install-node's
        # ca-certificates step folds them into the root's bundle.
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        write(root / "etc/hostname", "bench-node\n")
        with chroot_mounts(root):
            result = sh("chroot", root, "/bin/bash", "/tmp/bench-src/packer/scripts/install-node.sh",
                        "--wheel", f"/tmp/bench-src/{wheel.name}", "--src", "/tmp/bench-src", timeout=900)
        (work / "install.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, f"install-node.sh failed in a clean root:\n{result.stdout[-3000:]}" \
                                       f"{result.stderr[-3000:]}"
        installed_at = time.monotonic()
        # A pristine copy of the installed image for the member-role boot (test_member_role_*).
        must("cp", "-a", "--reflink=auto", root, work / MEMBER_HOST, timeout=300)

        write(root / "etc/bench/user-data.toml", USER_DATA, 0o600)
        for daemon in DAEMONS:
            write(root / f"etc/systemd/system/{daemon}.service.d/50-test-hang.conf", HANG_DROPIN)
        write(root / "etc/systemd/system/bench-agent.service.d/60-test-probe.conf", AGENT_PROBE_DROPIN)
        write(root / "etc/systemd/system/bench-manager.service.d/60-test-probe.conf", MANAGER_PROBE_DROPIN)
        write(root / "etc/systemd/system/bench-test-driver.service", DRIVER_UNIT)
        write(root / "usr/local/sbin/bench-test-driver", DRIVER, 0o755)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "bench-test-driver.service").symlink_to("/etc/systemd/system/bench-test-driver.service")

        results = work / "results"
        results.mkdir()
        boot = boot_container(root, results)
        (results / "nspawn-console.log").write_text(boot.stdout + boot.stderr)
        finished = time.monotonic()
        (results / "timing.json").write_text(json.dumps({
            "install_s": round(installed_at - started, 1), "boot_and_checks_s": round(finished - installed_at, 1),
            "total_s": round(finished - started, 1)}))
        print(f"\nnspawn test timing: {(results / 'timing.json').read_text()}")
        assert (results / "finished").exists(), (
            f"the driver did not finish; console:\n{(boot.stdout + boot.stderr)[-4000:]}\n"
            f"driver log:\n{_tail(results / 'driver.log')}")
        yield results
    finally:
        keep = os.environ.get("BENCH_KEEP_NSPAWN_ROOT") == "1"
        if not keep:
            for tree in (root, work / MEMBER_HOST):
                sh("rm", "-rf", "--one-file-system", tree, timeout=300)


@pytest.fixture(scope="module")
def member_booted(booted: Path) -> Path:
    """The same installed image booted with member user-data."""
    root = booted.parent / MEMBER_HOST
    write(root / "etc/hostname", f"{MEMBER_HOST}\n")
    write(root / "etc/bench/user-data.toml", MEMBER_USER_DATA, 0o600)
    write(root / "etc/systemd/system/bench-test-driver.service", DRIVER_UNIT)
    write(root / "usr/local/sbin/bench-test-driver", MEMBER_DRIVER, 0o755)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "bench-test-driver.service").symlink_to("/etc/systemd/system/bench-test-driver.service")
    results = booted.parent / "member-results"
    results.mkdir()
    boot = boot_container(root, results, MEMBER_HOST)
    assert (results / "member-finished").exists(), f"member boot did not finish:\n{boot.stdout[-4000:]}"
    return results


def test_member_role_runs_agent_and_execd_only(member_booted: Path) -> None:
    states = {unit: read_props(member_booted / f"member-{unit}.txt")
              for unit in ("bench-agent", "sge-execd", "bench-manager", "sge-qmaster")}
    assert states["bench-agent"]["ActiveState"] == "active", _tail(member_booted / "member-journal.txt")
    assert states["bench-agent"]["UnitFileState"] == "enabled"
    assert states["sge-execd"]["UnitFileState"] == "enabled"
    assert states["bench-manager"]["UnitFileState"] == "disabled"
    assert states["sge-qmaster"]["UnitFileState"] == "disabled"
    assert states["bench-manager"]["ActiveState"] == "inactive"


def test_member_role_points_agent_and_sge_at_the_manager(member_booted: Path) -> None:
    agent = tomllib.loads((member_booted / "member-agent.toml").read_text())
    assert (agent["manager"], agent["role"], agent["node_id"]) == ("bench-manager-host:50051", "member", MEMBER_HOST)
    assert (agent["cores"], agent["memory_bytes"]) == (4, 16 * 1024**3)  # the launcher's resource model
    assert (member_booted / "member-act_qmaster").read_text().strip() == "bench-manager-host"
    assert "manager.toml" not in (member_booted / "member-etc-bench.txt").read_text().split()


def test_member_boots_with_a_one_time_join_token_only(member_booted: Path) -> None:
    """Nothing long-lived from user-data: the join token (0600, in the agent's state) and the public CA."""
    agent = tomllib.loads((member_booted / "member-agent.toml").read_text())
    assert agent["join_token_file"] == "/var/lib/bench-agent/join.token"
    assert agent["credential_file"] == "/var/lib/bench-agent/credential"
    lines = (member_booted / "member-secrets.txt").read_text().splitlines()
    modes = {line.split()[-1]: line.split()[:2] for line in lines}
    assert modes == {"/var/lib/bench-agent/join.token": ["600", "root"], "/etc/bench/tls/ca.crt": ["644", "root"]}
    listed = (member_booted / "member-etc-bench.txt").read_text().split()
    assert not any(name.endswith((".token", ".credential")) for name in listed), listed


def boot_container(root: Path, results: Path, machine: str = "bench-node") -> subprocess.CompletedProcess[str]:
    """Boot until the driver powers off; on timeout ask the container to shut down before killing it."""
    argv = ["systemd-nspawn", "-D", str(root), "--boot", "--console=pipe", "--register=no", "--keep-unit",
            "--private-network", f"--bind={results}:/results", f"--machine={machine}"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=BOOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # nspawn turns SIGTERM into an orderly poweroff of the container
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, process.returncode, output, "")


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(missing)"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_daemon_reaches_active_running(booted: Path, daemon: str) -> None:
    props = read_props(booted / f"initial-{daemon}.txt")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), (
        f"{daemon}: {props}\n{_tail(booted / f'journal-{daemon}.txt')}")
    assert int(props["MainPID"]) > 0


def test_first_boot_took_the_manager_role(booted: Path) -> None:
    props = read_props(booted / "initial-bench-first-boot.txt")
    assert (props["ActiveState"], props["Result"]) == ("active", "success"), _tail(booted / "journal.txt")
    # The manager role initialised an SGE cell for this host's name at boot, and its qmaster runs.
    qmaster = read_props(booted / "initial-sge-qmaster.txt")
    assert (qmaster["ActiveState"], qmaster["SubState"]) == ("active", "running"), qmaster


def test_manager_role_runs_the_spark_master(booted: Path) -> None:
    """First boot configures Spark on the manager role: the master runs and the manager knows its URLs."""
    props = read_props(booted / "initial-bench-spark-master.txt")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    master = json.loads((booted / "spark-master.json").read_text() or "{}")
    assert master.get("status") == "ALIVE", _tail(booted / "journal.txt")
    manager = tomllib.loads((booted / "manager.toml").read_text())
    assert manager["spark_master_url"] == "spark://127.0.0.1:7077"
    assert manager["spark_ui_url"] == "http://127.0.0.1:8080"


def test_manager_publishes_the_spark_status_for_kernels(booted: Path) -> None:
    """The hardened manager unit may write /data/.spark (its status file and the kernels' registrations)."""
    status = booted / "spark-status.json"
    assert status.exists(), _tail(booted / "journal.txt")
    assert "spark://127.0.0.1:7077" in status.read_text()


def test_users_of_the_editors_group_edit_the_spark_conf_others_read_it(booted: Path) -> None:
    """Under the manager's UMask=0027 the kernels (ordinary users) still read the files; bench-users edit them."""
    modes = (booted / "spark-conf-modes.txt").read_text().splitlines()
    assert modes == ["2775 bench-manager bench-users /data/.spark/local/conf",
                     "664 bench-manager bench-users /data/.spark/local/conf/spark-defaults.conf"]
    edit = (booted / "spark-conf-edit.txt").read_text()
    assert "editor rc=0" in edit and "reader rc=0" not in edit and "Permission denied" in edit, edit
    read = (booted / "spark-conf-read.txt").read_text()
    assert re.search(r"^spark\.master +local\[\*\]$", read, re.M) and read.endswith("spark.executor.memory 1g\n"), read


def test_first_boot_wrote_the_role_configuration(booted: Path) -> None:
    manager = tomllib.loads((booted / "manager.toml").read_text())
    assert manager["cluster_id"] == "nspawn"
    assert manager["listen"] == ["0.0.0.0:50051"]
    assert manager["ec2"] == {"region": "eu-central-1", "image_id": "ami-12c6146b",
                              "instance_types": {"4/16G": "m6i.xlarge"}}
    agent = tomllib.loads((booted / "agent.toml").read_text())
    assert (agent["manager"], agent["role"], agent["node_id"]) == ("127.0.0.1:50051", "manager", "bench-node")
    assert manager["tls_cert_file"] == "/etc/bench/tls/manager.crt" and manager["host_agent_id"] == "bench-node"
    # Secrets: readable by root and the bench group (the unprivileged manager), nobody else; the CA key
    # by root alone; the CA certificate by everyone (users pin it).
    modes = {line.split()[-1]: line.split()[:3] for line in (booted / "tokens.txt").read_text().splitlines()}
    assert modes == {"/etc/bench/root.credential": ["640", "root", "bench"],
                     "/etc/bench/manager-agent.credential": ["640", "root", "bench"],
                     "/etc/bench/tls/manager.key": ["640", "root", "bench"],
                     "/etc/bench/tls/ca.key": ["600", "root", "root"],
                     "/etc/bench/tls/ca.crt": ["644", "root", "root"]}


def test_ordinary_user_runs_workspace_ctl_with_their_own_credential(booted: Path) -> None:
    assert "credential installed at /home/nspawnuser/.config/bench-cluster/credential" in \
        (booted / "add-user.txt").read_text(), _tail(booted / "add-user.txt")
    out = (booted / "user-ctl.txt").read_text()
    assert "status=0" in out and "scale=5" in out, out
    assert "needs the administrator role" in out
    audit = [json.loads(line) for line in (booted / "user-audit.txt").read_text().splitlines()]
    assert audit and {a["user"] for a in audit} == {"nspawnuser"}, audit  # not BENCH_USER=root


def test_agent_joined_the_manager_over_loopback(booted: Path) -> None:
    members = json.loads((booted / "members.json").read_text())["members"]
    assert [member["state"] for member in members] == ["READY"], members
    assert members[0]["member_id"] == "bench-node"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_watchdog_restarts_a_hung_daemon(booted: Path, daemon: str) -> None:
    old_pid, old_restarts = (int(x) for x in (booted / f"before-hang-{daemon}.txt").read_text().split())
    after = read_props(booted / f"after-hang-{daemon}.txt")
    journal = _tail(booted / f"journal-{daemon}.txt", 6000)
    assert int(after["NRestarts"]) > old_restarts, f"{daemon} was not restarted: {after}\n{journal}"
    assert int(after["MainPID"]) not in (0, old_pid), after
    assert (after["ActiveState"], after["SubState"]) == ("active", "running"), after
    assert "Watchdog timeout" in journal, f"{daemon} restarted, but not by the watchdog:\n{journal}"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_root_filesystem_is_read_only_inside_the_service(booted: Path, daemon: str) -> None:
    options = (booted / f"rootfs-{daemon}.txt").read_text().split()
    assert options and options[-1].split(",")[0] == "ro", f"{daemon} sees / as {options}"
    status = (booted / f"status-{daemon}.txt").read_text()
    assert "NoNewPrivs:\t1" in status
    assert "Seccomp:\t2" in status  # a filter is installed


def test_agent_writes_only_inside_read_write_paths(booted: Path) -> None:
    probe = (booted / "agent-sandbox-probe").read_text().split()
    assert probe == ["etc=read-only", "data_logs=writable"], probe
    writable = dict(line.split() for line in (booted / "writable-bench-agent.txt").read_text().splitlines())
    for path in ("/data/mounts", "/data/logs", "/scratch"):
        assert writable.get(path, "").split(",")[0] == "rw", f"{path} not writable for the agent: {writable}"


def test_agent_can_mount_inside_its_sandbox(booted: Path) -> None:
    assert (booted / "mount-in-agent.txt").read_text().strip(), (
        f"the agent made no mount at /data/mounts/probe:\n{_tail(booted / 'create-mount.txt')}\n"
        f"{_tail(booted / 'journal-bench-agent.txt')}")


def test_agent_unit_can_mount_into_the_node_namespace(booted: Path) -> None:
    """From inside bench-agent.service, setns() into PID 1's mount namespace makes a mount all can see."""
    assert (booted / "setns-probe.txt").read_text().strip() == "made-in-agent-unit", (
        f"{_tail(booted / 'setns-probe.txt')}\n{_tail(booted / 'journal-bench-agent.txt')}")


def test_agent_mounts_are_visible_outside_its_sandbox(booted: Path) -> None:
    """What SGE jobs see: the mount must exist in the node's namespace, not only in the agent's unit."""
    assert (booted / "mount-read-outside.txt").read_text().strip() == "hello-from-source", (
        f"mount invisible outside bench-agent.service: {_tail(booted / 'mount-read-outside.txt')}")


def test_manager_sandbox_can_administer_sge(booted: Path) -> None:
    managers = (booted / "manager-qconf-probe").read_text().split()
    assert "bench-manager" in managers, f"qconf -sm from bench-manager.service said: {managers}"


def test_manager_has_only_the_capabilities_of_the_mount_check(booted: Path) -> None:
    """CAP_SETGID (6) and CAP_SETUID (7) only: the manager checks a mount source as the requesting user
    (manager/mountaccess.py, a setpriv child); nothing else, and no new privileges."""
    status = (booted / "status-bench-manager.txt").read_text()
    assert "CapBnd:\t00000000000000c0" in status, status
    assert "NoNewPrivs:\t1" in status, status
