"""benchmarks/heartbeats.py keeps working: a tiny run against a real bench-manager and the echo baseline
completes, prints both tables with numbers, and leaves no server process behind (also on Ctrl-C).
No timing is asserted: the figures are for people, the counts and the clean-up are the behaviour."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.harness import wait_until

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "heartbeats.py"
AGENTS = 5


def run_benchmark(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s)


def test_tiny_run_prints_figures_for_manager_and_echo(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = run_benchmark("--agents", str(AGENTS), "--seconds", "3", "--session-seconds", "1", "--json", str(out),
                           "--keep-dir", str(tmp_path / "work"))
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("heartbeats/s handled", "command round trip p50 (ms)", "command round trip p99 (ms)",
                  "server CPU %", "bench-manager", "echo", "ratio"):
        assert label in result.stdout, f"{label!r} missing from:\n{result.stdout}"
    figures = json.loads(out.read_text())
    for server in ("bench_manager", "echo"):
        f = figures[server]
        assert f["agents"] == AGENTS
        assert f["heartbeats_accepted"] > 0 and f["heartbeats_unconfirmed"] == 0
        assert f["heartbeats_per_s"] > 0
        assert f["sessions_failed"] == 0 and f["agents_gave_up"] == 0
        # one sample per session; sessions of ~1 s in a 3 s run reconnect, so every agent has several
        assert f["latency_samples"] == f["sessions_ok"] > AGENTS
        assert 0 < f["latency_p50_ms"] <= f["latency_p99_ms"]
        assert f["server_cpu_percent"] > 0
    # the manager really took every agent's heartbeats: ListMembers saw all of them during the run
    assert figures["bench_manager"]["members_heartbeat_seen"] == AGENTS
    assert all(isinstance(v, float) and v > 0 for v in figures["ratios"].values()), figures["ratios"]
    printed_ratio = f"{figures['ratios']['heartbeats_per_s']:,.2f}"
    assert printed_ratio in result.stdout
    # the manager served the agents it logged, and the servers were stopped at the end
    manager_log = (tmp_path / "work" / "manager-r1" / "manager.log").read_text()
    assert "hb-bench-0000" in manager_log


def test_bad_arguments_are_refused_before_any_server_starts(tmp_path: Path) -> None:
    (tmp_path / "old-run.log").write_text("left from an earlier run")
    for args, message in ((("--agents", "0"), "--agents"), (("--seconds", "nine"), "is not a float"),
                          (("--interval", "0"), "--interval"), (("--keep-dir", str(tmp_path)), "is not empty")):
        result = run_benchmark(*args, timeout_s=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr
        assert "Heartbeat load" not in result.stdout


def test_ctrl_c_stops_the_servers_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--agents", str(AGENTS), "--seconds", "120",
                             "--keep-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        bench = psutil.Process(proc.pid)

        def manager_children() -> list[psutil.Process]:
            return [c for c in bench.children(recursive=True) if "bench-manager" in " ".join(c.cmdline())]

        # the manager is up and agents are heartbeating into it (its log names them) before the interrupt
        servers = wait_until(manager_children, 60, "the benchmark's bench-manager process")
        wait_until(lambda: "hb-bench-0000" in (tmp_path / "manager-r1" / "manager.log").read_text(), 60,
                   "agents connected to the manager")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(s) for s in servers):
        time.sleep(0.1)
    leaked = [s for s in servers if _alive(s)]
    for server in leaked:  # do not leave a failed run's manager behind for the next test
        server.kill()
    assert not leaked, "the benchmark exited on Ctrl-C but left its bench-manager running"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
