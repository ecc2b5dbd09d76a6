"""benchmarks/heartbeats.py keeps working: a tiny run against a real bench-manager and the echo baseline
completes, prints both tables with numbers, and leaves no server process behind (also on Ctrl-C, also
on Ctrl-C while its servers are still starting). No timing is asserted: the figures are for people, the
counts and the clean-up are the behaviour.

The benchmark runs in a process group of its own and says on stderr what it started (`started
bench-manager (pid N)`) and when the load runs. The tests wait for those lines, not for a fixed time, with
bounds generous enough for a loaded 2-core CI machine, and whatever happens they kill the whole group
and every server the benchmark reported, so a failed run leaves nothing behind for the next test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.harness import wait_until

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "heartbeats.py"
AGENTS = 5
# Start-up (interpreter, grpc imports, bench-manager start, registering the agents) takes a few seconds
# on an idle machine; on the 2-core CI machine under a full `make test` it outlasted the fixed 60 s this
# test used to allow.
START_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0  # after Ctrl-C: cancel the load, stop the servers (SIGKILL after 10 s each)
STARTED = re.compile(r"started (bench-manager|echo server) \(pid (\d+)\)")
MANAGER_STARTED = re.compile(r"started bench-manager \(pid (\d+)\)")
MANAGER_LOAD_RUNNING = re.compile(r"bench-manager: \d+ agents registered; load running")
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _ctrl_c_as_in_a_terminal() -> None:
    """A runner started in the background by a non-interactive shell (`make test &`, CI wrappers) has
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in its children: the Ctrl-C
    these tests send would be lost. Give the benchmark the disposition it has in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Benchmark:
    """heartbeats.py as a subprocess leading a process group of its own, its output (stdout and stderr)
    read line by line by a thread, so that every wait here is bounded. Leaving the `with` block kills
    the whole group and every server process the benchmark reported, whatever state the run is in."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, preexec_fn=_ctrl_c_as_in_a_terminal)
        self.pgid = self.proc.pid
        self.servers: list[psutil.Process] = []
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="benchmark-output", daemon=True)
        self._reader.start()

    def __enter__(self) -> Benchmark:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_everything()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            started = STARTED.search(line)
            if started:  # identify it now, while it is surely ours (pid not yet reaped)
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.servers.append(psutil.Process(int(started.group(2))))
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float, what: str) -> re.Match[str]:
        """The first output line matching `pattern`, waiting up to `timeout_s` for it to be printed."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        with self._changed:
            while True:
                for line in self._lines[checked:]:
                    if match := pattern.search(line):
                        return match
                checked = len(self._lines)
                if self._eof:
                    raise AssertionError(f"the benchmark ended (exit code {self.proc.poll()}) before {what}; "
                                         f"its output:\n{''.join(self._lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; "
                                         f"output so far:\n{''.join(self._lines)}")
                self._changed.wait(remaining)

    def wait(self, timeout_s: float) -> int:
        """The exit code, once the benchmark has exited and its output has been read to the end."""
        code = self.proc.wait(timeout_s)
        self._reader.join(timeout_s)
        return code

    def leftovers(self, grace_s: float = 10.0) -> list[str]:
        """Processes of the benchmark's group, and servers it reported, still running after up to `grace_s`."""
        deadline = time.monotonic() + grace_s
        while True:
            left = {p.pid: p for p in self.servers if _alive(p)}
            left.update((p.pid, p) for p in _group_members(self.pgid))
            if not left or time.monotonic() >= deadline:
                return [_describe(p) for p in left.values()]
            time.sleep(0.1)

    def kill_everything(self) -> None:
        # While the benchmark is not reaped its pid cannot be reused, so the group id is surely ours; after
        # that only a group that still has members is signalled.
        if self.proc.returncode is None or _group_members(self.pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        for server in self.servers:  # in case a server was ever started outside the benchmark's group
            if _alive(server):
                with contextlib.suppress(psutil.Error):
                    server.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(process.pid) == pgid and _alive(process):
                members.append(process)
    return members


def _describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid} ({process.status()}): {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {process.pid}"


def _sigterm_pending(process: psutil.Process) -> bool:
    """SIGTERM sent to the (stopped) process and not yet delivered: /proc/PID/status, ShdPnd or SigPnd."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return False
    masks = (int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("ShdPnd:", "SigPnd:")))
    return any(mask & SIGTERM_BIT for mask in masks)


def run_benchmark(*args: str, timeout_s: float = 240) -> tuple[int, str]:
    with Benchmark(*args) as bench:
        code = bench.wait(timeout_s)
        leftovers = bench.leftovers()
        output = bench.output
    assert not leftovers, f"the benchmark exited with {code} but left processes running: {leftovers}\n{output}"
    return code, output


def test_tiny_run_prints_figures_for_manager_and_echo(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    code, output = run_benchmark("--agents", str(AGENTS), "--seconds", "3", "--session-seconds", "1",
                                 "--json", str(out), "--keep-dir", str(tmp_path / "work"))
    assert code == 0, output
    for label in ("heartbeats/s handled", "command round trip p50 (ms)", "command round trip p99 (ms)",
                  "server CPU %", "bench-manager", "echo", "ratio"):
        assert label in output, f"{label!r} missing from:\n{output}"
    figures = json.loads(out.read_text())
    for server in ("bench_manager", "echo", "bench_manager_plaintext"):
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
    assert printed_ratio in output
    # TLS on and off in the same run, and the cost of TLS printed as a ratio
    assert "Cost of TLS" in output
    assert f"{figures['tls_ratios']['server_cpu_percent']:,.2f}" in output
    # the manager served the agents it logged; both servers were reported, and stopped (run_benchmark)
    manager_log = (tmp_path / "work" / "manager-r1" / "manager.log").read_text()
    assert "hb-bench-0000" in manager_log
    assert MANAGER_STARTED.search(output) and "started echo server (pid" in output


def test_bad_arguments_are_refused_before_any_server_starts(tmp_path: Path) -> None:
    (tmp_path / "old-run.log").write_text("left from an earlier run")
    for args, message in ((("--agents", "0"), "--agents"), (("--seconds", "nine"), "is not a float"),
                          (("--interval", "0"), "--interval"), (("--keep-dir", str(tmp_path)), "is not empty")):
        code, output = run_benchmark(*args, timeout_s=60)
        assert code == 2, output
        assert message in output
        assert "Heartbeat load" not in output and not STARTED.search(output)


def test_ctrl_c_stops_the_servers_it_started(tmp_path: Path) -> None:
    with Benchmark("--agents", str(AGENTS), "--seconds", "120", "--keep-dir", str(tmp_path)) as bench:
        # the manager is up and agents are heartbeating into it (its log names them) before the interrupt
        bench.wait_for_line(MANAGER_LOAD_RUNNING, START_TIMEOUT_S, "the load on bench-manager to start")
        manager = bench.servers[0]
        wait_until(lambda: "hb-bench-0000" in (tmp_path / "manager-r1" / "manager.log").read_text(), 60,
                   "agents connected to the manager")
        bench.proc.send_signal(signal.SIGINT)
        code = bench.wait(EXIT_TIMEOUT_S)
        output = bench.output
        leftovers = bench.leftovers()  # before the clean-up on leaving the block
        manager_left = _alive(manager)
    assert code == 130, output
    assert "interrupted" in output
    assert not manager_left, f"bench-manager (pid {manager.pid}) is still running after the benchmark exited"
    assert not leftovers, f"the benchmark exited on Ctrl-C but left processes running: {leftovers}\n{output}"


@pytest.mark.parametrize("second_ctrl_c", [False, True], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_while_the_manager_is_starting_leaves_nothing_behind(tmp_path: Path, second_ctrl_c: bool) -> None:
    """Ctrl-C after bench-manager was spawned and before it serves. The manager is held stopped (SIGSTOP)
    as soon as the benchmark reports its pid, so the interrupt lands in its start-up on any machine, and
    the benchmark's reaction can be seen: the SIGTERM it sends stays pending on the stopped process.
    Then either the manager goes on (and dies of that SIGTERM), or an impatient second Ctrl-C arrives
    while the benchmark waits for a manager that does not react: it must still not be left behind."""
    with Benchmark("--agents", str(AGENTS), "--seconds", "120", "--keep-dir", str(tmp_path)) as bench:
        started = bench.wait_for_line(MANAGER_STARTED, START_TIMEOUT_S, "the benchmark to start bench-manager")
        manager = bench.servers[0]
        assert manager.pid == int(started.group(1))
        manager.suspend()
        # SIGSTOP takes effect once the process is scheduled; a SIGTERM arriving before that kills it at once
        wait_until(lambda: manager.status() == psutil.STATUS_STOPPED, 60, "bench-manager to stop on SIGSTOP",
                   interval_s=0.01)
        bench.proc.send_signal(signal.SIGINT)
        wait_until(lambda: _sigterm_pending(manager), EXIT_TIMEOUT_S, "the benchmark to send bench-manager SIGTERM")
        if second_ctrl_c:
            bench.proc.send_signal(signal.SIGINT)
        else:
            manager.resume()
        code = bench.wait(EXIT_TIMEOUT_S)
        output = bench.output
        leftovers = bench.leftovers()  # before the clean-up on leaving the block
        manager_left = _alive(manager)
    assert "bench-manager serving" not in output
    assert code == 130, output
    assert "interrupted" in output
    assert not manager_left, f"bench-manager (pid {manager.pid}) is still running after the benchmark exited"
    assert not leftovers, f"the benchmark exited on Ctrl-C but left processes running: {leftovers}\n{output}"
