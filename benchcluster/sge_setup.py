"""Configure Debian's Sun Grid Engine for a bench cluster and run its qmaster.

Idempotent and non-interactive: every step reads SGE's current configuration, changes only what
differs, and loads it back with `qconf -M*`/`-A*` from files (qconf's editor mode is not scriptable).
Runs on the manager node (the host namespace) after `scripts/install-system-deps.sh` installed the
gridengine packages with the cell already initialised by debconf.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchcluster.supervise import MODULE as SUPERVISE_MODULE
from manager.providers.local_processes import alive, stop_process
from manager.sge.client import EXECHOST_TEMPLATE

QUEUE = "all.q"
HOSTGROUP = "@allhosts"
QCONF_TIMEOUT_S = 30.0

# Our complexes: requestable and consumable, with the seed's defaults (1 core, 2G).
COMPLEX_LINES = {
    "static_cores": "static_cores        sc         INT       <=    YES         YES        1        0",
    "static_mem": "static_mem          sm         MEMORY    <=    YES         YES        2G       0",
    # A load value, not requestable: 1 while the member's agent has fenced it (agent/orphan.py).
    "bench_orphaned": "bench_orphaned      bo         INT       >=    NO          NO         0        0",
}

# Jobs run as root inside the member namespaces, so the uid/gid floor must go; a short load report
# lets a new member show up in qhost within seconds instead of 40 s.
GLOBAL_SETTINGS = {
    "min_uid": "0",
    "min_gid": "0",
    "load_report_time": "00:00:05",
    "max_unheard": "00:01:00",
    # accounting records reach qacct within a second instead of 15 s
    "reporting_params": "accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00",
}

# seqno sorting plus per-host sequence numbers (set when a host joins) fills members one after
# another, so surplus members go idle and the autoscaler can remove them. Load adjustments are off
# because every namespace reports the same host-wide load.
SCHEDULER_SETTINGS = {
    "schedule_interval": "0:0:1",
    "queue_sort_method": "seqno",
    "job_load_adjustments": "NONE",
    "load_adjustment_decay_time": "0:0:0",
    "flush_submit_sec": "1",
    "flush_finish_sec": "1",
}

QUEUE_SETTINGS = {
    "hostlist": HOSTGROUP,
    "seq_no": "0",
    # An orphaned member (its manager gone, agent/orphan.py) reports bench_orphaned=1 through the load
    # sensor: its queue instance goes into alarm and gets no new job, without qmod (members are not
    # admin hosts). The host-wide np_load_avg is not a threshold: every namespace reports the same load.
    "load_thresholds": "bench_orphaned=1",
    "pe_list": "NONE",
    "rerun": "TRUE",  # lets a drain reschedule running jobs with qmod -rj
    "slots": "1",  # per-host values (= static_cores) are set when a member joins
    "tmpdir": "/scratch",  # per-job $TMPDIR on the member's /scratch
    "shell": "/bin/bash",
}
LOAD_SENSOR_NAME = "bench-load-sensor.sh"
# SGE's load sensor protocol: a line on stdin asks for a report (begin / host:name:value / end), "quit"
# ends it. Only a root-owned flag counts (/scratch is world-writable: a job must not fence its member).
LOAD_SENSOR_SCRIPT = """#!/bin/sh
# Installed by bench-cluster: reports bench_orphaned=1 while this member's agent has fenced it.
host=$(hostname)
flag=/scratch/.bench-orphaned
while read -r request; do
  [ "$request" = quit ] && exit 0
  value=0
  if [ -f "$flag" ] && [ "$(stat -c %u "$flag")" = 0 ]; then value=1; fi
  printf 'begin\n%s:bench_orphaned:%s\nend\n' "$host" "$value"
done
"""
STARTER_NAME = "bench-job-starter.sh"
# SGE puts the per-job directory in TMPDIR and TMP, but the job is started as a secure-exec program
# and glibc drops TMPDIR on the way in; this starter (run in place of the job's shell) restores it.
STARTER_SCRIPT = """#!/bin/sh
# Installed by bench-cluster: restores $TMPDIR (the per-job directory on /scratch) for SGE jobs.
if [ -n "$TMP" ] && [ -z "$TMPDIR" ]; then
  TMPDIR="$TMP"
  export TMPDIR
fi
exec "$@"
"""


class SgeSetupError(Exception):
    """SGE could not be configured or started; the message says what to do."""


@dataclass(frozen=True)
class SgeInstall:
    sge_root: Path = Path("/var/lib/gridengine")
    cell: str = "default"
    bin_dir: Path = Path("/usr/lib/gridengine")

    @property
    def common_dir(self) -> Path:
        return self.sge_root / self.cell / "common"

    @property
    def qmaster_pid_file(self) -> Path:
        return Path("/var/spool/gridengine/qmaster/qmaster.pid")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SGE_ROOT"] = str(self.sge_root)
        env["SGE_CELL"] = self.cell
        return env

    def check_installed(self) -> None:
        needed = (self.bin_dir / "sge_qmaster", self.bin_dir / "qconf", self.common_dir / "bootstrap")
        missing = [p for p in needed if not p.exists()]
        if missing:
            raise SgeSetupError(
                "Sun Grid Engine is not installed or its cell is not initialised "
                f"(missing {', '.join(map(str, missing))}); run scripts/install-system-deps.sh as root")


def _qconf(install: SgeInstall, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(install.bin_dir / "qconf"), *args], env=install.env(), capture_output=True,
                          text=True, timeout=QCONF_TIMEOUT_S, check=False)
    if check and proc.returncode != 0:
        raise SgeSetupError(f"qconf {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _load_file(install: SgeInstall, flag: str, name: str, text: str) -> None:
    """qconf -M*/-A* read a file; for -Mconf the file must be named after the configuration."""
    with tempfile.TemporaryDirectory(prefix="bench-sge-") as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        _qconf(install, flag, str(path))


def parse_settings(text: str) -> dict[str, str]:
    """`name value` lines, with backslash continuations joined."""
    settings: dict[str, str] = {}
    lines = text.replace("\\\n", " ").splitlines()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings[key.strip()] = " ".join(value.split())
    return settings


def render_settings(settings: dict[str, str]) -> str:
    return "".join(f"{key:<34} {value}\n" for key, value in settings.items())


def _apply_settings(current_text: str, wanted: dict[str, str]) -> tuple[dict[str, str], bool]:
    current = parse_settings(current_text)
    changed = any(current.get(k) != v for k, v in wanted.items())
    current.update(wanted)
    return current, changed


def write_host_aliases(install: SgeInstall, manager_hostname: str) -> None:
    """127.0.0.1 reverse-resolves to `localhost` here, so qmaster would reject commands issued from
    this host ("client IP resolved to host name localhost") without this alias."""
    path = install.common_dir / "host_aliases"
    line = f"{manager_hostname} localhost"
    existing = path.read_text().splitlines() if path.exists() else []
    if line in existing:
        return
    kept = [entry for entry in existing if entry.split()[:1] != [manager_hostname]]
    path.write_text("\n".join([*kept, line]) + "\n")


def qmaster_pid(install: SgeInstall) -> int | None:
    try:
        pid = int(install.qmaster_pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"sge_qmaster" in cmdline else None


def qmaster_answers(install: SgeInstall) -> bool:
    try:
        return _qconf(install, "-sh", check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


QMASTER_SUPERVISOR_LOG = Path("/var/spool/gridengine/qmaster/bench-supervise.log")
# After SIGTERM, qmaster 8.1.9 logs "controlled shutdown" and usually exits within ~8 s, but now and then
# hangs until killed (30 s and more seen in CI). It is crash-safe — kill -9 of qmaster is one of the chaos
# soak's faults, with 0 tasks lost — so waiting longer than this buys nothing.
QMASTER_STOP_GRACE_S = 12


def qmaster_supervisor_pid() -> int | None:
    """The supervisor keeping sge_qmaster up (one per machine: every local cluster shares qmaster)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if SUPERVISE_MODULE.encode() in argv and b"sge_qmaster" in argv and alive(int(entry.name)):
            return int(entry.name)
    return None


def _launch_supervised_qmaster(install: SgeInstall) -> None:
    """sge_qmaster in the foreground (SGE_ND) under a supervisor of its own session, so a crashed or
    killed qmaster comes back by itself, as systemd's sge-qmaster unit brings it back on a real node."""
    env = install.env() | {"SGE_ND": "1"}
    QMASTER_SUPERVISOR_LOG.parent.mkdir(parents=True, exist_ok=True)
    with QMASTER_SUPERVISOR_LOG.open("ab") as log:
        subprocess.Popen([sys.executable, "-m", SUPERVISE_MODULE, "--name", "sge_qmaster",
                          "--log", str(QMASTER_SUPERVISOR_LOG), "--stop-grace", str(QMASTER_STOP_GRACE_S), "--",
                          str(install.bin_dir / "sge_qmaster")],
                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd="/")


def start_qmaster(install: SgeInstall, timeout_s: float = 60.0, attempts: int = 3) -> int:
    """Make sure sge_qmaster runs under its supervisor and answers; returns its pid. A qmaster started
    earlier without one (by hand, or an older bench-cluster) is left as it is. A supervisor that gave
    up (qmaster failing again and again) has exited: it is started again, a bounded number of times."""
    per_attempt_s = timeout_s / attempts
    for attempt in range(1, attempts + 1):
        if qmaster_pid(install) is None and qmaster_supervisor_pid() is None:
            _launch_supervised_qmaster(install)
        deadline = time.monotonic() + per_attempt_s
        delay = 0.2
        while time.monotonic() < deadline:
            pid = qmaster_pid(install)
            if pid is not None and qmaster_answers(install):
                return pid
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        time.sleep(attempt)
    raise SgeSetupError(f"sge_qmaster did not answer within {timeout_s:.0f} s ({attempts} launches); "
                        f"see /var/spool/gridengine/qmaster/messages and {QMASTER_SUPERVISOR_LOG}")


def stop_qmaster(install: SgeInstall, timeout_s: float = QMASTER_STOP_GRACE_S) -> None:
    """Stop qmaster: its supervisor first (which stops qmaster cleanly and does not bring it back),
    then a qmaster running without one: SIGTERM, SIGKILL after the timeout. Idempotent."""
    supervisor = qmaster_supervisor_pid()
    if supervisor is not None:
        stop_process(supervisor, timeout_s + 15.0)
    pid = qmaster_pid(install)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if qmaster_pid(install) is None:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _write_load_sensor(install: SgeInstall) -> Path:
    path = install.common_dir / LOAD_SENSOR_NAME
    if not path.exists() or path.read_text() != LOAD_SENSOR_SCRIPT:
        path.write_text(LOAD_SENSOR_SCRIPT)
    path.chmod(0o755)
    return path


def _ensure_global_config(install: SgeInstall) -> None:
    current = _qconf(install, "-sconf", "global").stdout
    body = "\n".join(line for line in current.splitlines() if not line.startswith("#"))
    wanted = {**GLOBAL_SETTINGS, "load_sensor": str(_write_load_sensor(install))}
    settings, changed = _apply_settings(body, wanted)
    if changed:
        _load_file(install, "-Mconf", "global", render_settings(settings))


def _ensure_scheduler(install: SgeInstall) -> None:
    settings, changed = _apply_settings(_qconf(install, "-ssconf").stdout, SCHEDULER_SETTINGS)
    if changed:
        _load_file(install, "-Msconf", "sched_conf", render_settings(settings))


def _ensure_complexes(install: SgeInstall) -> None:
    current = _qconf(install, "-sc").stdout
    names = {line.split()[0] for line in current.splitlines() if line.strip() and not line.startswith("#")}
    missing = [line for name, line in COMPLEX_LINES.items() if name not in names]
    if missing:
        kept = [line for line in current.splitlines() if line.strip() and not line.startswith("#")]
        _load_file(install, "-Mc", "complexes", "\n".join([*kept, *missing]) + "\n")


def _ensure_hostgroup(install: SgeInstall) -> None:
    if _qconf(install, "-shgrp", HOSTGROUP, check=False).returncode != 0:
        _load_file(install, "-Ahgrp", "hostgroup", f"group_name {HOSTGROUP}\nhostlist NONE\n")


def _queue_template(install: SgeInstall) -> str:
    """qconf has no 'show template' command: run `-aq` with `cat` as the editor to read it (the add
    itself then fails harmlessly on the reserved name 'template')."""
    env = install.env()
    env["EDITOR"] = "cat"
    proc = subprocess.run([str(install.bin_dir / "qconf"), "-aq"], env=env, capture_output=True, text=True,
                          timeout=QCONF_TIMEOUT_S, check=False)
    if "qname" not in proc.stdout:
        raise SgeSetupError(f"could not read SGE's queue template: {proc.stderr.strip()}")
    return proc.stdout


def _write_starter(install: SgeInstall) -> Path:
    """On the SGE cell's common directory, which members see through the shared host filesystem."""
    path = install.common_dir / STARTER_NAME
    if not path.exists() or path.read_text() != STARTER_SCRIPT:
        path.write_text(STARTER_SCRIPT)
    path.chmod(0o755)
    return path


def _ensure_queue(install: SgeInstall) -> None:
    wanted = {**QUEUE_SETTINGS, "starter_method": str(_write_starter(install))}
    shown = _qconf(install, "-sq", QUEUE, check=False)
    if shown.returncode != 0:
        settings, _ = _apply_settings(_queue_template(install), {"qname": QUEUE, **wanted})
        _load_file(install, "-Aq", "queue", render_settings(settings))
        return
    current = parse_settings(shown.stdout)
    # slots keeps its per-host entries ("1,[bench-m01=2]"); only the default part is compared.
    for key, value in wanted.items():
        have = current.get(key, "")
        if key in ("slots", "seq_no"):
            have = have.split(",")[0]
        if have != value:
            # -mattr refuses NONE for list attributes (load_thresholds, pe_list): -rattr replaces the list
            _qconf(install, "-rattr" if value == "NONE" else "-mattr", "queue", key, value, QUEUE)


def _ensure_submit_host(install: SgeInstall, hostname: str) -> None:
    hosts = _qconf(install, "-ss", check=False).stdout.split()
    if hostname not in hosts:
        _qconf(install, "-as", hostname)


PLACEHOLDER_COMPLEX_VALUES = "slots=0,static_cores=0,static_mem=0"


def _ensure_placeholder_instance(install: SgeInstall, manager_hostname: str) -> None:
    """SGE 8.1.9's qsub exits 1 ("job is not allowed to run in any queue") while the queue has no
    instance at all, which is the normal state of a dynamic cluster with no members yet. A disabled,
    zero-capacity instance on the manager node (which runs no execd) keeps submissions working and
    never receives a job."""
    hosts = _qconf(install, "-sel", check=False).stdout.split()
    if manager_hostname not in hosts:
        placeholder = EXECHOST_TEMPLATE.format(hostname=manager_hostname, values=PLACEHOLDER_COMPLEX_VALUES)
        _load_file(install, "-Ae", "exechost", placeholder)
    group = _qconf(install, "-shgrp", HOSTGROUP).stdout.replace("\\", " ").split()
    if manager_hostname not in group:
        _qconf(install, "-aattr", "hostgroup", "hostlist", manager_hostname, HOSTGROUP)
    _qconf(install, "-mattr", "queue", "slots", "0", f"{QUEUE}@{manager_hostname}")
    _qconf(install, "-mattr", "queue", "seq_no", "0", f"{QUEUE}@{manager_hostname}")
    subprocess.run([str(install.bin_dir / "qmod"), "-d", f"{QUEUE}@{manager_hostname}"], env=install.env(),
                   capture_output=True, text=True, timeout=QCONF_TIMEOUT_S, check=False)


def configure(install: SgeInstall, manager_hostname: str) -> None:
    """Everything cluster-wide; per-member exec host setup is the manager's SGE adapter's job."""
    _ensure_global_config(install)
    _ensure_scheduler(install)
    _ensure_complexes(install)
    _ensure_hostgroup(install)
    _ensure_queue(install)
    _ensure_submit_host(install, manager_hostname)
    _ensure_placeholder_instance(install, manager_hostname)


def bring_up(install: SgeInstall, manager_hostname: str) -> int:
    install.check_installed()
    write_host_aliases(install, manager_hostname)
    pid = start_qmaster(install)
    configure(install, manager_hostname)
    return pid
