"""Where the time of a small file goes through the fast mount: listing, open, read and close, each timed.

    sudo .venv/bin/python benchmarks/fastmount_phases.py [--files 10000] [--file-kib 128]

benchmarks/fastmount.py gives one figure per case; this one splits the small-file case into its system
calls, cold (page cache dropped first) and warm (the same pass again), for a direct read of the source and
for the native engine with kernel passthrough (the default) and without it (zero-message open: no OPEN and
no RELEASE request, reads kept in the mount's own page cache). It is what the choice between the two
was measured with; the table prints microseconds per file and each total's ratio to direct.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/fastmount_phases.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from benchmarks.fastmount import MiB, drop_caches, fastmount_argv, run_interruptibly, workspace

console = Console(width=160)
VIEWS = {"native, passthrough (default)": [], "native, --no-passthrough": ["--no-passthrough"]}


@dataclass
class Phases:
    listing: float = 0.0
    open: float = 0.0
    read: float = 0.0
    close: float = 0.0

    @property
    def total(self) -> float:
        return self.listing + self.open + self.read + self.close


def timed_pass(directory: Path) -> Phases:
    """One pass as `cat dir/*` does it: list, then open, read to the end and close every file."""
    phases = Phases()
    started = time.perf_counter()
    names = sorted(os.listdir(directory))
    phases.listing = time.perf_counter() - started
    prefix = f"{directory}/"
    for name in names:
        t0 = time.perf_counter()
        fd = os.open(prefix + name, os.O_RDONLY)
        t1 = time.perf_counter()
        while os.read(fd, MiB):
            pass
        t2 = time.perf_counter()
        os.close(fd)
        t3 = time.perf_counter()
        phases.open += t1 - t0
        phases.read += t2 - t1
        phases.close += t3 - t2
    per_file = 1e6 / len(names)
    return Phases(phases.listing * per_file, phases.open * per_file, phases.read * per_file,
                  phases.close * per_file)


def process_round_trip_us(rounds: int = 20_000) -> float:
    """A one-byte request and its answer between two processes over pipes, in microseconds.

    A FUSE request is at least this (the opener sleeps, the server wakes, answers, the opener wakes), so
    it bounds what any FUSE filesystem can reach per file on this machine, whatever the server does.
    """
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(rounds):
                os.write(answer_w, os.read(request_r, 1))
        finally:
            os._exit(0)
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            os.write(request_w, b"x")
            os.read(answer_r, 1)
        return (time.perf_counter() - started) / rounds * 1e6
    finally:
        for fd in (request_r, request_w, answer_r, answer_w):
            os.close(fd)
        os.waitpid(pid, 0)


def run(args: argparse.Namespace) -> None:
    with workspace(args.files * args.file_kib * 1024 + 64 * MiB) as (tmpfs, mounts):
        source = tmpfs / "source"
        (source / "small").mkdir(parents=True)
        chunk = os.urandom(args.file_kib * 1024)
        for i in range(args.files):
            (source / "small" / f"s{i:06d}").write_bytes(chunk)
        views = {"direct": source}
        for label, extra in VIEWS.items():
            point = tmpfs.parent / f"mount-{len(views)}"
            mounts.start(fastmount_argv(source, point, "native") + extra, point, tmpfs.parent / f"{point.name}.log")
            views[label] = point
        results: dict[tuple[str, str], Phases] = {}
        for label, root in views.items():
            console.print(f"[dim]measuring {label} ...[/dim]")
            drop_caches()
            results[(label, "cold")] = timed_pass(root / "small")
            results[(label, "warm")] = timed_pass(root / "small")
        print_table(results, args)
    round_trip = process_round_trip_us()
    direct = results[("direct", "warm")].total
    console.print(f"Machine floor: a round trip between two processes (pipe ping-pong, from Python) costs "
                  f"{round_trip:.1f} us here. With passthrough a file still needs its OPEN round trip, so no "
                  f"FUSE server can do better than about {direct / (direct + round_trip):.2f}x direct per "
                  f"{args.file_kib} KiB file on this machine (direct: {direct:.1f} us).")


def print_table(results: dict[tuple[str, str], Phases], args: argparse.Namespace) -> None:
    table = Table(title=f"{args.files} files of {args.file_kib} KiB: microseconds per file "
                        "(cold = page cache dropped first; warm = the same pass again)")
    for column in ("view", "pass", "listing", "open", "read", "close", "total", "vs direct"):
        table.add_column(column, justify="left" if column in ("view", "pass") else "right")
    for (label, kind), phases in results.items():
        direct = results[("direct", kind)].total
        table.add_row(label, kind, f"{phases.listing:.1f}", f"{phases.open:.1f}", f"{phases.read:.1f}",
                      f"{phases.close:.1f}", f"{phases.total:.1f}",
                      "" if label == "direct" else f"{direct / phases.total:.2f}x speed")
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-kib", type=int, default=128)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: it mounts a tmpfs and FUSE filesystems and drops the page cache")
    if not 1 <= args.files <= 100_000 or not 1 <= args.file_kib <= 16 * 1024:
        parser.error("--files must be 1..100000 and --file-kib 1..16384")
    return run_interruptibly(run, args)


if __name__ == "__main__":
    sys.exit(main())
