"""One supervisor process per daemon of the local cluster's manager node (bench-manager, its agent,
sge_qmaster, the Spark master): what systemd's Restart=on-failure is on a production node, for a
machine where systemd is not PID 1.

    python -m benchcluster.supervise --name manager --log FILE -- bench-manager --listen ...

It starts the daemon, restarts it after a crash with capped exponential backoff
(`manager.providers.supervision`), and on SIGTERM stops it (SIGTERM, then SIGKILL after a grace
period) and exits. The daemon's output goes to FILE, the supervisor's own lines too. The supervisor
runs in its own session (started detached by `bench-cluster up`), so it outlives `up`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from manager.providers.supervision import MAX_QUICK_FAILURES, Supervised, log

POLL_S = 0.1
STOP_GRACE_S = 15.0
MODULE = "benchcluster.supervise"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="what the daemon is called in the log lines")
    parser.add_argument("--log", required=True, type=Path, help="file the daemon's output is appended to")
    parser.add_argument("--max-quick-failures", type=int, default=MAX_QUICK_FAILURES,
                        help="give up after this many crashes in a row, each within 30 s of its start")
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE_S,
                        help="seconds between SIGTERM and SIGKILL when stopping the daemon")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the daemon's command line")
    return parser


def _reap(child: Supervised) -> None:
    while child.pid is not None:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            child.exited(-1, time.monotonic())
            return
        if pid == 0:
            return
        child.exited(os.waitstatus_to_exitcode(status), time.monotonic())


def _stop(child: Supervised, grace_s: float) -> None:
    if child.pid is None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid = child.pid
            if pid:
                child.pid = None
                return
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(f"{MODULE}: give the daemon's command after --", file=sys.stderr)
        return 2
    args.log.parent.mkdir(parents=True, exist_ok=True)
    child = Supervised(args.name, command, dict(os.environ), args.log,
                       max_quick_failures=args.max_quick_failures)
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stopping:
        _reap(child)
        if child.gave_up:
            return 1
        if child.due and time.monotonic() >= child.restart_at:
            try:
                child.start(time.monotonic())
            except OSError as exc:  # e.g. the binary vanished: count it as a quick failure
                log(f"cannot start {args.name}: {exc}")
                child.started_at = time.monotonic()
                child.exited(-1, time.monotonic())
        time.sleep(POLL_S)
    log(f"stopping {args.name}")
    _stop(child, args.stop_grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
