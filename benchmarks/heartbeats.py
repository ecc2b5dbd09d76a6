"""Heartbeat load on a real bench-manager, next to a minimal grpc.aio echo server measured in the same run.

    .venv/bin/python benchmarks/heartbeats.py                     # 100 agents, a beat every 0.1 s each, 20 s
    .venv/bin/python benchmarks/heartbeats.py --agents 1000 --seconds 30 --json out.json

What runs: a `bench-manager` subprocess (loopback port, temp dir with its own SQLite file and tokens,
`--no-sge --provider none`, LOST detection pushed to an hour) and N simulated agents shared by
`--processes` load processes (`heartbeat_workers.py`; each runs its slice on its own asyncio loop; one TCP
connection per agent as real agents hold them, or `--agents-per-connection`, see `heartbeat_load.py`), so
one Python event loop does not cap the figures. The agents' first connects are spread over `--ramp-seconds`.
Each agent registers, then keeps opening sessions as the real agent does: Register, then `Connect`: Hello,
heartbeats at `--interval`, close after about `--session-seconds`, reconnect (a failed session is retried
with the real agent's backoff, 0.2 s doubling up to 5 s, jittered). The same agents, rates and session
pattern are also pointed at `echo_server.py`, a grpc.aio server whose one bidirectional stream returns every
message (and a unary call returning its request, in place of Register). Both are measured by the same code,
one after the other, on the same machine; the ratio is the figure. With `--rounds 2` (or more) each server
gets several phases in alternating order (manager, echo, echo, manager, ...), each with a fresh server, so
drifting background load on the machine weighs on both.

TLS: the manager is measured twice per round, with TLS (as deployed: cluster CA, each simulated agent
enrolled with AddNode, joined with its one-time token and connected with its own credential) and with
`--insecure-plaintext`; the "Cost of TLS" table gives TLS / plaintext for the same load (goal: server
CPU ≤ 1.3x at 1,000 agents). The echo baseline serves TLS too (its own CA), so the manager/echo ratios
compare like with like; `--echo-plaintext` measures it without.

Figures, for each server:
- heartbeats/s handled: heartbeats written on sessions the server then ended with OK, divided by the
  time from the first session to the last one closed. A server ends a stream only after reading every
  message written before the client's half-close, and bench-manager rejects a bad heartbeat by aborting
  the stream, so a session ending OK means all its heartbeats were read, validated and applied. For the
  manager, ListMembers is also checked at the end: every agent's `last_heartbeat` must lie inside the run.
- command round trip p50/p99: the time from writing a session's Hello to the first reply arriving. For
  bench-manager that reply is a command: every session starts with the manager sending `SyncMounts`
  (look up the member, attach the session, read the stored mounts, queue the command, stream it out),
  and the simulated agent acknowledges it at once. Heartbeats do not wait for it (nor do the real
  agent's), so the command goes out while the stream is busy with heartbeats. It is the one command the
  manager sends on its own, so it can be timed from outside without adding anything to the manager
  (nothing sends `Ping` unprompted; a mount fan-out would time N agents' answers as one figure). The
  acknowledgement's arrival at the manager cannot be observed from outside and is not in the figure;
  the command's way out is. For the echo server the reply is the Hello itself coming back on a fresh
  stream: the same "new stream, first message, first answer" path with no work behind it. One sample
  per session; reconnecting sessions give many samples per agent while heartbeats keep the server busy.
- server CPU%: the server process's user+system CPU time over the load window (psutil), 100% = one core.
  Printed alongside, because on a small machine they shape every figure: the load generator's own CPU%
  (it shares the cores), how late its event loop woke up (that lag is inside both servers' latency
  figures), and the CPU all other processes on the machine used meanwhile. Only ratios measured in the
  same run mean anything, and only when the other load was about the same in both phases.

Progress goes to stderr as it happens: each server's pid once started, its address once serving, and a
line once the agents are registered and the load runs. Ctrl-C (or SIGTERM) stops the run and every
server it started, also during start-up, and exits with 130; the servers share the benchmark's process
group, so `kill -- -PGID` reaches all of them as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/heartbeats.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.bench_servers import (
    Announce,
    RunningServer,
    ServerFailed,
    bench_manager,
    echo_server,
    stop_child_processes,
    temp_work_dir,
)
from benchmarks.echo_server import FULL_METHOD
from benchmarks.heartbeat_figures import Figures, MachineCpu, Phase, ProcessCpu, ratios
from benchmarks.heartbeat_load import EchoTarget, LoadSettings, ManagerTarget
from benchmarks.heartbeat_workers import LoadWorkers, TargetSpec, WorkerFailed
from common.auth import bearer
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc

MAX_AGENTS = 10_000  # the most members the manager accepts (--hard-limit); each simulated agent is one
MAX_SECONDS = 600.0
DEFAULT_PROCESSES = max(2, psutil.cpu_count() or 2)
PLAINTEXT_NAME = "bench-manager (plaintext)"
MAX_ROUNDS = 10


def progress(message: str) -> None:
    """One line of progress on stderr, at once (the tables go to stdout at the end)."""
    print(f"heartbeats.py: {message}", file=sys.stderr, flush=True)


async def members_with_fresh_heartbeat(server: RunningServer, member_ids: set[str], since_unix: float) -> int:
    """How many of our members the manager reports with a last heartbeat at or after `since_unix`."""
    async with server.channel() as channel:
        reply = await cluster_pb2_grpc.ClusterServiceStub(channel).ListMembers(
            cluster_pb2.ListMembersRequest(), metadata=bearer(server.admin_credential), timeout=30)
    return sum(1 for m in reply.members if m.member_id in member_ids and m.last_heartbeat_unix >= since_unix)


async def measure(spec: TargetSpec, server: RunningServer, settings: LoadSettings, processes: int,
                  check_members: bool, announce: Announce = progress) -> Phase:
    workers = LoadWorkers(spec, settings, processes)
    async with workers.start():
        await workers.register_all()  # not in the window: it is a one-off per agent
        announce(f"{spec.name}: {settings.agents} agents registered; load running for {settings.seconds:g} s "
                 f"({len(workers.pids)} load processes)")
        server_cpu, machine_cpu = ProcessCpu(server.pid), MachineCpu()
        since_unix = time.time()
        for meter in (server_cpu, machine_cpu):
            meter.start()
        stopped: list[float] = []
        result = await workers.drive(lambda: stopped.extend((server_cpu.stop(), machine_cpu.stop())))
        rss = psutil.Process(server.pid).memory_info().rss
        seen = (await members_with_fresh_heartbeat(server, set(result.member_ids), since_unix)
                if check_members else None)
    return Phase(result.stats, result.window_s, stopped[0], result.cpu_s, stopped[1], members_seen=seen,
                 server_rss_bytes=rss, load_processes=len(workers.pids))


async def run(settings: LoadSettings, rounds: int, keep_dir: Path | None, processes: int = 2,
              plaintext: bool = True, announce: Announce = progress,
              echo_tls: bool = True) -> tuple[Figures, Figures, Figures | None]:
    """`rounds` phases per server, rotating which goes first (A B C, C B A, ...) so that a change in the
    machine's other load during the run weighs on all servers alike. Every phase gets a fresh server.
    The manager runs twice per round: with TLS (as deployed) and plaintext, for the cost of TLS."""
    manager_phases: list[Phase] = []
    plain_phases: list[Phase] = []
    echo_phases: list[Phase] = []

    async def manager_phase(work: Path) -> None:
        async with bench_manager(work, settings.interval_s, announce, tls=True, max_members=settings.agents) as server:
            spec = TargetSpec("manager", ManagerTarget.name, server.address, _ca(server), server.admin_credential)
            manager_phases.append(await measure(spec, server, settings, processes, True, announce))

    async def plaintext_phase(work: Path) -> None:
        async with bench_manager(work, settings.interval_s, announce, tls=False,
                                 max_members=settings.agents) as server:
            spec = TargetSpec("manager", PLAINTEXT_NAME, server.address, None, server.admin_credential)
            plain_phases.append(await measure(spec, server, settings, processes, True, announce))

    async def echo_phase(work: Path) -> None:
        async with echo_server(work, announce, tls=echo_tls, max_members=settings.agents) as server:
            # a token of the manager's token length keeps the request metadata the same size
            spec = TargetSpec("echo", EchoTarget.name, server.address, _ca(server), "x" * 43, FULL_METHOD)
            echo_phases.append(await measure(spec, server, settings, processes, False, announce))

    with temp_work_dir(keep_dir) as root:
        for number in range(1, rounds + 1):
            order = [("manager", manager_phase), ("plaintext", plaintext_phase), ("echo", echo_phase)]
            if not plaintext:
                del order[1]
            for name, phase in order if number % 2 else reversed(order):
                work = Path(root) / f"{name}-r{number}"
                work.mkdir(exist_ok=True)
                await phase(work)
    return (Figures.from_phases(ManagerTarget.name, settings.agents, manager_phases),
            Figures.from_phases(EchoTarget.name, settings.agents, echo_phases),
            Figures.from_phases(PLAINTEXT_NAME, settings.agents, plain_phases) if plain_phases else None)


def _ca(server: RunningServer) -> str | None:
    return None if server.ca_file is None else str(server.ca_file)


# report ---------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def print_report(console: Console, settings: LoadSettings, manager: Figures, echo: Figures) -> None:
    offered = settings.agents / settings.interval_s
    details = Table(title=f"Heartbeat load: {settings.agents} agents, a beat every {settings.interval_s:g} s each "
                          f"(offered {offered:,.0f}/s), {settings.seconds:g} s x {manager.phases} phase(s) per server, "
                          f"sessions ~{settings.session_s:g} s, {settings.agents_per_connection} agent(s) "
                          f"a connection, "
                          f"first connects within {settings.ramp_s or settings.interval_s:g} s")
    details.add_column("")
    for figures in (manager, echo):
        details.add_column(figures.server, justify="right")
    rows: list[tuple[str, str, str]] = [
        ("load window, all phases (s)", _num(manager.window_s, 2), _num(echo.window_s, 2)),
        ("heartbeats accepted", f"{manager.heartbeats_accepted:,}", f"{echo.heartbeats_accepted:,}"),
        ("heartbeats unconfirmed", f"{manager.heartbeats_unconfirmed:,}", f"{echo.heartbeats_unconfirmed:,}"),
        ("sessions ok / failed", f"{manager.sessions_ok:,} / {manager.sessions_failed}",
         f"{echo.sessions_ok:,} / {echo.sessions_failed}"),
        ("round-trip samples", f"{manager.latency_samples:,}", f"{echo.latency_samples:,}"),
        ("load generator processes", str(manager.load_processes), str(echo.load_processes)),
        ("client (load generator, all processes) CPU %", _num(manager.client_cpu_percent),
         _num(echo.client_cpu_percent)),
        ("client event-loop lag p99 (ms)", _num(manager.client_loop_lag_p99_ms, 2),
         _num(echo.client_loop_lag_p99_ms, 2)),
        ("other processes' CPU meanwhile (cores of " + str(psutil.cpu_count()) + ")",
         _num(manager.other_load_cores, 2), _num(echo.other_load_cores, 2)),
        ("members with a heartbeat this run", f"{manager.members_heartbeat_seen}/{manager.agents}", "-"),
    ]
    for row in rows:
        details.add_row(*row)
    console.print(details)

    r = ratios(manager, echo)
    summary = Table(title="Figures (ratio = bench-manager / echo, same run)")
    summary.add_column("figure")
    summary.add_column("bench-manager", justify="right")
    summary.add_column("echo", justify="right")
    summary.add_column("ratio", justify="right")
    summary.add_row("heartbeats/s handled", _num(manager.heartbeats_per_s), _num(echo.heartbeats_per_s),
                    _num(r["heartbeats_per_s"], 2))
    summary.add_row("command round trip p50 (ms)", _num(manager.latency_p50_ms, 2), _num(echo.latency_p50_ms, 2),
                    _num(r["latency_p50_ms"], 2))
    summary.add_row("command round trip p99 (ms)", _num(manager.latency_p99_ms, 2), _num(echo.latency_p99_ms, 2),
                    _num(r["latency_p99_ms"], 2))
    summary.add_row("  reconnects only (after each agent's first session): p50", _num(manager.later_latency_p50_ms, 2),
                    _num(echo.later_latency_p50_ms, 2), _num(r["later_latency_p50_ms"], 2))
    summary.add_row("  reconnects only: p99", _num(manager.later_latency_p99_ms, 2),
                    _num(echo.later_latency_p99_ms, 2), _num(r["later_latency_p99_ms"], 2))
    summary.add_row("server CPU %", _num(manager.server_cpu_percent), _num(echo.server_cpu_percent),
                    _num(r["server_cpu_percent"], 2))
    summary.add_row("server CPU % per 1,000 heartbeats/s", _num(manager.server_cpu_percent_per_1k_hb_s, 2),
                    _num(echo.server_cpu_percent_per_1k_hb_s, 2), _num(r["server_cpu_percent_per_1k_hb_s"], 2))
    summary.add_row("server RSS at the end (MiB)", _num(manager.server_rss_mib), _num(echo.server_rss_mib),
                    _num(r["server_rss_mib"], 2))
    summary.add_row("server CPU ms per 1000 heartbeats", _num(manager.server_cpu_ms_per_1k_heartbeats, 2),
                    _num(echo.server_cpu_ms_per_1k_heartbeats, 2), _num(r["server_cpu_ms_per_1k_heartbeats"], 2))
    console.print(summary)


def print_tls_cost(console: Console, tls: Figures, plain: Figures) -> None:
    r = ratios(tls, plain)
    table = Table(title="Cost of TLS (ratio = bench-manager with TLS / the same manager plaintext, same run; "
                        "goal: server CPU ≤ 1.3x)")
    table.add_column("figure")
    table.add_column("TLS", justify="right")
    table.add_column("plaintext", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("heartbeats/s handled", _num(tls.heartbeats_per_s), _num(plain.heartbeats_per_s),
                  _num(r["heartbeats_per_s"], 2))
    table.add_row("command round trip p50 (ms)", _num(tls.latency_p50_ms, 2), _num(plain.latency_p50_ms, 2),
                  _num(r["latency_p50_ms"], 2))
    table.add_row("server CPU %", _num(tls.server_cpu_percent), _num(plain.server_cpu_percent),
                  _num(r["server_cpu_percent"], 2))
    table.add_row("server CPU ms per 1000 heartbeats", _num(tls.server_cpu_ms_per_1k_heartbeats, 2),
                  _num(plain.server_cpu_ms_per_1k_heartbeats, 2), _num(r["server_cpu_ms_per_1k_heartbeats"], 2))
    console.print(table)


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="heartbeats.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=_bounded(int, 1, MAX_AGENTS), default=100,
                        help="simulated agents (default 100)")
    parser.add_argument("--seconds", type=_bounded(float, 1, MAX_SECONDS), default=20.0,
                        help="load duration per server (default 20)")
    parser.add_argument("--interval", type=_bounded(float, 0.01, 60), default=0.1,
                        help="seconds between one agent's heartbeats (default 0.1)")
    parser.add_argument("--session-seconds", type=_bounded(float, 0.2, MAX_SECONDS), default=3.0,
                        help="mean session length before an agent reconnects (default 3)")
    parser.add_argument("--agents-per-connection", type=_bounded(int, 1, 64), default=1,
                        help="simulated agents sharing one TCP/TLS connection (default 1, as real agents: each "
                             "holds its own; the manager allows 64 streams per connection)")
    parser.add_argument("--ramp-seconds", type=_bounded(float, 0, MAX_SECONDS), default=0.0,
                        help="spread the agents' first connects over this many seconds (default: one "
                             "--interval, i.e. every agent within 5 s, as after a manager restart)")
    parser.add_argument("--rounds", type=_bounded(int, 1, MAX_ROUNDS), default=1,
                        help="phases per server, alternating which goes first (default 1; 2 = ABBA)")
    parser.add_argument("--processes", type=_bounded(int, 1, 64), default=DEFAULT_PROCESSES,
                        help=f"load generator processes sharing the agents (default {DEFAULT_PROCESSES})")
    parser.add_argument("--no-plaintext", action="store_true",
                        help="skip the plaintext manager phase (and the cost-of-TLS table)")
    parser.add_argument("--echo-plaintext", action="store_true",
                        help="run the echo baseline without TLS (default: TLS, as the manager it is compared with)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the phase and session-length jitter")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep-dir", type=Path,
                        help="run in this new or empty directory and keep the servers' logs and state")
    args = parser.parse_args(argv)
    if args.keep_dir is not None and args.keep_dir.exists() and any(args.keep_dir.iterdir()):
        # a previous run's SQLite file would carry its members into this run
        parser.error(f"--keep-dir {args.keep_dir} is not empty; give a new or empty directory")
    return args


async def _main(args: argparse.Namespace, console: Console) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = LoadSettings(agents=args.agents, interval_s=args.interval, seconds=args.seconds,
                            session_s=args.session_seconds, seed=args.seed,
                            agents_per_connection=args.agents_per_connection, ramp_s=args.ramp_seconds)
    try:
        manager, echo, plain = await run(settings, args.rounds, args.keep_dir, args.processes,
                                         not args.no_plaintext, echo_tls=not args.echo_plaintext)
    except (ServerFailed, WorkerFailed) as exc:
        console.print(f"[red]heartbeats.py: {exc}[/red]")
        return 2
    print_report(console, settings, manager, echo)
    figures: dict[str, Any] = {"settings": asdict(settings), "load_processes": args.processes,
                               "bench_manager": asdict(manager), "echo": asdict(echo),
                               "ratios": ratios(manager, echo)}
    problems = manager.problems() + echo.problems()
    if plain is not None:
        print_tls_cost(console, manager, plain)
        figures.update(bench_manager_plaintext=asdict(plain), tls_ratios=ratios(manager, plain))
        problems += plain.problems()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    for problem in problems:
        console.print(f"[red]problem: {problem}[/red]")
    return 1 if problems else 0


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for a bounded clean-up: a second Ctrl-C must not cut it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    interrupted = False
    try:
        code = asyncio.run(_main(args, console))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The first Ctrl-C cancels the run and every server context stops its server; a second one
        # (KeyboardInterrupt) can cut that short, which the sweep below makes up for.
        interrupted, code = True, 130
    finally:
        with _interrupts_ignored():
            left = stop_child_processes()  # whatever path ended the run: no server outlives the benchmark
        if left:
            progress(f"stopped server processes left running: {', '.join(left)}")
    if interrupted:
        console.print("heartbeats.py: interrupted; servers stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
