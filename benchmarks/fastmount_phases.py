"""Where the time of a small file goes through the fast mount: listing, open, read and close, each timed.

    sudo .venv/bin/python benchmarks/fastmount_phases.py [--files 10000] [--file-kib 128] [--source-on disk]

benchmarks/fastmount.py gives one figure per case; this one splits the small-file case into its system
calls, cold (page cache dropped first) and warm (the same pass again), for a direct read of the source and
for the native engine with kernel passthrough (the default), the same with its request threads sleeping
between requests (`--spin-us 0`; the default polls briefly first, see agent/fastmount/native/receive.h),
without reading listings ahead (`--no-dir-read-ahead`, see agent/fastmount/native/dirstream.h) and
without passthrough (zero-message open: no OPEN and no RELEASE request, reads kept in the mount's own
page cache). It is what those choices were measured with; the table prints microseconds per file and each
total's ratio to direct. The source is a private tmpfs unless `--source-on disk` puts it on /var/tmp's disk.

It also prints what bounds any FUSE server on the machine it runs on: the CPU time the reading process
spends itself (its system calls included; a worker cannot make that smaller), the worker's CPU time, a
cold `ls -l` of the same directory, and a round trip between two processes (pipe ping-pong), which every
FUSE request costs at least.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/fastmount_phases.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.fastmount import (
    MiB,
    add_source_on_argument,
    drop_caches,
    fastmount_argv,
    list_long,
    run_interruptibly,
    workspace,
)

console = Console(width=160)
VIEWS = {"native, passthrough (default)": [], "native, --spin-us 0": ["--spin-us", "0"],
         "native, --no-dir-read-ahead": ["--no-dir-read-ahead"], "native, --no-passthrough": ["--no-passthrough"]}
LONG_LISTING = "ls -l, cold"


@dataclass
class Phases:
    listing: float = 0.0
    open: float = 0.0
    read: float = 0.0
    close: float = 0.0
    reader_cpu: float = 0.0  # this process's own CPU time (its system calls, in the kernel, included)
    server_cpu: float | None = None  # the FUSE worker's, all threads; None for the direct view

    @property
    def total(self) -> float:
        return self.listing + self.open + self.read + self.close


class CpuClock:
    """CPU seconds spent by this process and by the view's worker process (if any) since start()."""

    def __init__(self, worker: psutil.Process | None) -> None:
        self.worker = worker

    def _now(self) -> tuple[float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        theirs = 0.0 if self.worker is None else sum(self.worker.cpu_times()[:2])
        return me.ru_utime + me.ru_stime, theirs

    def start(self) -> None:
        self._started = self._now()

    def per_unit_us(self, units: int) -> tuple[float, float | None]:
        """Microseconds of CPU per file or entry since start(): this process's, and the worker's (or None)."""
        mine, theirs = self._now()
        scale = 1e6 / units
        return ((mine - self._started[0]) * scale,
                None if self.worker is None else (theirs - self._started[1]) * scale)


def timed_pass(directory: Path, cpu: CpuClock) -> Phases:
    """One pass as `cat dir/*` does it: list, then open, read to the end and close every file."""
    phases = Phases()
    cpu.start()
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
    reader_cpu, server_cpu = cpu.per_unit_us(len(names))
    per_file = 1e6 / len(names)
    return Phases(phases.listing * per_file, phases.open * per_file, phases.read * per_file,
                  phases.close * per_file, reader_cpu, server_cpu)


def timed_long_listing(directory: Path, cpu: CpuClock) -> Phases:
    """`ls -l` of the directory: every name and its attributes (all of it counted as listing)."""
    cpu.start()
    started = time.perf_counter()
    entries = list_long(directory)
    seconds = time.perf_counter() - started
    reader_cpu, server_cpu = cpu.per_unit_us(entries)
    return Phases(listing=seconds * 1e6 / entries, reader_cpu=reader_cpu, server_cpu=server_cpu)


def process_round_trip_us(polling: bool, rounds: int = 20_000) -> float:
    """A one-byte request and its answer between two processes over pipes, in microseconds. The asking
    side sleeps for the answer, as an opener sleeps for a FUSE reply; the answering side sleeps for the
    request too, or polls for it (`polling`, as the native engine's request thread does after a request).

    A FUSE request costs at least this (the opener's CPU goes idle and must be woken by the reply), so it
    bounds what any FUSE filesystem can reach per file on this machine, whatever the server does.
    """
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.set_blocking(request_r, not polling)
            for _ in range(rounds):
                while True:
                    try:
                        request = os.read(request_r, 1)
                        break
                    except BlockingIOError:
                        continue
                os.write(answer_w, request)
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
    with workspace(args.files * args.file_kib * 1024 + 64 * MiB, args.source_on) as (home, mounts):
        source = home / "source"
        (source / "small").mkdir(parents=True)
        chunk = os.urandom(args.file_kib * 1024)
        for i in range(args.files):
            (source / "small" / f"s{i:06d}").write_bytes(chunk)
        views: dict[str, tuple[Path, psutil.Process | None]] = {"direct": (source, None)}
        for label, extra in VIEWS.items():
            point = home.parent / f"mount-{len(views)}"
            mounts.start(fastmount_argv(source, point, "native") + extra, point, home.parent / f"{point.name}.log")
            views[label] = (point, psutil.Process(mounts.procs[-1].pid))
        results: dict[tuple[str, str], Phases] = {}
        for label, (root, worker) in views.items():
            console.print(f"[dim]measuring {label} ...[/dim]")
            cpu = CpuClock(worker)
            drop_caches()
            results[(label, "cold")] = timed_pass(root / "small", cpu)
            results[(label, "warm")] = timed_pass(root / "small", cpu)
            drop_caches()
            results[(label, LONG_LISTING)] = timed_long_listing(root / "small", cpu)
        print_table(results, args)
    print_floor(results, process_round_trip_us(polling=False), process_round_trip_us(polling=True), args)


def print_table(results: dict[tuple[str, str], Phases], args: argparse.Namespace) -> None:
    table = Table(title=f"source on {args.source_on}: {args.files} files of {args.file_kib} KiB: microseconds "
                        f"per file (cold = page cache dropped first; warm = the same pass again; "
                        f"{LONG_LISTING}: per entry; CPU = time on a CPU, the lister's own system calls included)")
    for column in ("view", "pass", "listing", "open", "read", "close", "total", "lister CPU", "worker CPU",
                   "vs direct"):
        table.add_column(column, justify="left" if column in ("view", "pass") else "right")
    for (label, kind), phases in results.items():
        direct = results[("direct", kind)].total
        table.add_row(label, kind, f"{phases.listing:.1f}", f"{phases.open:.1f}", f"{phases.read:.1f}",
                      f"{phases.close:.1f}", f"{phases.total:.1f}", f"{phases.reader_cpu:.1f}",
                      "-" if phases.server_cpu is None else f"{phases.server_cpu:.1f}",
                      "" if label == "direct" else f"{direct / phases.total:.2f}x speed")
    console.print(table)


def print_floor(results: dict[tuple[str, str], Phases], sleeping: float, polling: float,
                args: argparse.Namespace) -> None:
    """What no FUSE server could beat on this machine, from the figures above."""
    direct = results[("direct", "warm")].total
    console.print(f"Machine floor: a round trip between two processes (pipe ping-pong, from Python) costs "
                  f"{sleeping:.1f} us here with both sides sleeping, {polling:.1f} us with the answering side "
                  f"polling. With passthrough a file still needs its OPEN round trip, so no FUSE server can do "
                  f"better than about {direct / (direct + polling):.2f}x direct per {args.file_kib} KiB file on "
                  f"this machine (direct: {direct:.1f} us), or {direct / (direct + sleeping):.2f}x when it "
                  f"sleeps between requests.")
    listing = results[("direct", LONG_LISTING)].total
    lister_cpu = min(phases.reader_cpu for (label, kind), phases in results.items()
                     if kind == LONG_LISTING and label != "direct")
    console.print(f"{LONG_LISTING}: through the mount the lister alone spends {lister_cpu:.1f} us of CPU per "
                  f"entry (its own code and system calls: the kernel's side of FUSE, an inode for each entry), "
                  f"against {listing:.1f} us for the whole direct "
                  f"listing, so even a worker that cost nothing would list at most "
                  f"{listing / lister_cpu:.2f}x as fast as direct.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-kib", type=int, default=128)
    add_source_on_argument(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: it mounts a tmpfs and FUSE filesystems and drops the page cache")
    if not 1 <= args.files <= 100_000 or not 1 <= args.file_kib <= 16 * 1024:
        parser.error("--files must be 1..100000 and --file-kib 1..16384")
    return run_interruptibly(run, args)


if __name__ == "__main__":
    sys.exit(main())
