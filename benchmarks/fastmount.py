"""Fast-mount throughput against direct reads and its peers (bindfs -r, rclone mount), all in one run.

    sudo .venv/bin/python benchmarks/fastmount.py [--size 1024] [--small-files 10000] [--dir-entries 100000]

The source lives in a private tmpfs by default (so dropping the page cache drops only the mounts' cached
pages, never the source's: "cold" is then the hardest case for any FUSE mount), or with `--source-on disk`
in a directory on the disk filesystem holding /var/tmp (as project data on a node's own disk: dropping the
caches makes direct reads go to the device too). Everything is unmounted and removed at the end, also on
Ctrl-C or a failure. Each figure is the
median of --repeats runs, printed as MiB/s (or entries/s) with its ratio to the direct read measured in the
same run. The slow-source case reads through `benchmarks/slowfs.py`, a clearly labelled EMULATION of a
network store (fixed latency per request + per-request bandwidth), because `tc netem` is unavailable here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.fastmount.engine import describe_source
from agent.mountsys import read_mount_table

MiB = 1024 * 1024
READ_SIZE = 1 * MiB
REPO = Path(__file__).resolve().parents[1]
MOUNT_TIMEOUT_S = 20.0
console = Console(width=200)


# ---- reading ---------------------------------------------------------------------------------------------

def read_file(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        total = 0
        while chunk := os.read(fd, READ_SIZE):
            total += len(chunk)
        return total
    finally:
        os.close(fd)


def timed(action: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    amount = action()
    return amount, time.perf_counter() - started


def read_concurrently(paths: list[Path]) -> int:
    totals = [0] * len(paths)
    errors: list[BaseException] = []

    def reader(i: int) -> None:
        try:
            totals[i] = read_file(paths[i])
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise errors[0]
    return sum(totals)


def read_small_files(directory: Path) -> int:
    return sum(read_file(directory / name) for name in sorted(os.listdir(directory)))


def list_long(directory: Path) -> int:
    """Like `ls -l`: names and the attributes of each entry."""
    count = 0
    with os.scandir(directory) as it:
        for entry in it:
            entry.stat(follow_symlinks=False)
            count += 1
    return count


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# ---- mounts ----------------------------------------------------------------------------------------------

@dataclass
class Mounts:
    """Every mount and process this run starts, so teardown can undo all of them whatever happened."""

    points: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait_mounted(self, point: Path, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while str(point) not in read_mount_table():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"mount process for {point} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{point} was not mounted within {MOUNT_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def start(self, argv: list[str], point: Path, log: Path) -> None:
        point.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO)
        self.procs.append(proc)
        self.points.append(point)
        self.wait_mounted(point, proc)

    def run(self, argv: list[str], point: Path) -> None:
        point.mkdir(parents=True, exist_ok=True)
        self.points.append(point)
        subprocess.run(argv, check=True, timeout=MOUNT_TIMEOUT_S, capture_output=True)
        self.wait_mounted(point, None)

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for point in reversed(self.points):
            if str(point) in read_mount_table():
                subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True, timeout=30)


SOURCE_PLACES = ("tmpfs", "disk")
DISK_DIR = Path("/var/tmp")


def check_disk_room(size_needed: int) -> None:
    fstype = describe_source(str(DISK_DIR))
    if fstype in ("tmpfs", "ramfs", "overlay", None):
        raise SystemExit(f"--source-on disk: {DISK_DIR} is on {fstype or 'an unknown filesystem'}, not a disk")
    free = shutil.disk_usage(DISK_DIR).free
    if free < size_needed * 1.2:
        raise SystemExit(f"--source-on disk: needs {size_needed * 1.2 / MiB:,.0f} MiB free in {DISK_DIR}, "
                         f"has {free / MiB:,.0f} MiB (try a smaller --size/--files)")


@contextlib.contextmanager
def workspace(size_needed: int, source_on: str = "tmpfs") -> Iterator[tuple[Path, Mounts]]:
    """A directory for the source (`source_on`: a private tmpfs, or a directory on /var/tmp's disk) and
    the Mounts to start views with; all of it unmounted and removed on the way out."""
    if source_on == "disk":
        check_disk_room(size_needed)
    base = Path(tempfile.mkdtemp(prefix="fastmount-bench-", dir=DISK_DIR if source_on == "disk" else None))
    home = base / source_on
    home.mkdir()
    mounts = Mounts()
    try:
        if source_on == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_needed // MiB + 512}m", "bench-src",
                            str(home)], check=True, timeout=30)
        yield home, mounts
    finally:
        mounts.teardown()
        if str(home) in read_mount_table():
            subprocess.run(["umount", "-l", str(home)], check=False, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def write_file(path: Path, size: int, block: bytes) -> bytes:
    """Write `size` bytes from `block`, rotated between writes so no two blocks are alike."""
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)
            block = block[1:] + block[:1]
    return block


def make_source(src: Path, args: argparse.Namespace) -> None:
    console.print(f"[dim]writing the source: 4 x {args.size} MiB, {args.small_files} x 128 KiB, "
                  f"{args.dir_entries} names, {args.slow_size} MiB for the slow case ...[/dim]")
    (src / "large").mkdir()
    block = os.urandom(64 * MiB)
    for i in range(4):
        block = write_file(src / "large" / f"file{i}.bin", args.size * MiB, block)
    small = src / "small"
    small.mkdir()
    chunk = os.urandom(128 * 1024)
    for i in range(args.small_files):
        (small / f"s{i:05d}").write_bytes(chunk)
    big_dir = src / "bigdir"
    big_dir.mkdir()
    for i in range(args.dir_entries):
        os.close(os.open(big_dir / f"entry-{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
    (src / "slow").mkdir()
    write_file(src / "slow" / "file.bin", args.slow_size * MiB, block)


# ---- measuring -------------------------------------------------------------------------------------------

@dataclass
class Result:
    value: float
    unit: str


def median_rate(action: Callable[[], int], repeats: int, before: Callable[[], None] | None = None,
                per: float = MiB) -> float:
    rates = []
    for _ in range(repeats):
        if before is not None:
            before()
        amount, seconds = timed(action)
        rates.append(amount / per / seconds)
    return statistics.median(rates)


def measure_view(root: Path, args: argparse.Namespace, first_listing: bool, repeats: int) -> dict[str, Result]:
    large = root / "large"
    big = large / "file0.bin"
    r = repeats
    out: dict[str, Result] = {}
    if first_listing:  # the very first look at the big directory through a fresh mount
        out[f"listing {args.dir_entries} entries, first (names+attrs)"] = Result(
            median_rate(lambda: list_long(root / "bigdir"), 1, per=1), "entries/s")
    out["1 file, first read (cache dropped)"] = Result(median_rate(lambda: read_file(big), r, drop_caches), "MiB/s")
    read_file(big)
    out["1 file, warm repeat read"] = Result(median_rate(lambda: read_file(big), r), "MiB/s")
    out["4 readers, same file (cold)"] = Result(
        median_rate(lambda: read_concurrently([big] * 4), r, drop_caches), "MiB/s")
    out["4 readers, 4 files (cold)"] = Result(
        median_rate(lambda: read_concurrently([large / f"file{i}.bin" for i in range(4)]), r, drop_caches),
        "MiB/s")
    # "cold": the kernel's caches are dropped before each run, so every file and entry is new to the mount
    # (a tmpfs source keeps its own, a disk source's are dropped too); "again": the same right after, as a
    # user's second look sees it.
    out[f"{args.small_files} small files of 128 KiB (cold)"] = Result(
        median_rate(lambda: read_small_files(root / "small"), r, drop_caches), "MiB/s")
    out[f"{args.small_files} small files of 128 KiB, again"] = Result(
        median_rate(lambda: read_small_files(root / "small"), r), "MiB/s")
    out[f"listing {args.dir_entries} entries, cold (names)"] = Result(
        median_rate(lambda: len(os.listdir(root / "bigdir")), r, drop_caches, per=1), "entries/s")
    out[f"listing {args.dir_entries} entries, cold (names+attrs)"] = Result(
        median_rate(lambda: list_long(root / "bigdir"), r, drop_caches, per=1), "entries/s")
    out[f"listing {args.dir_entries} entries, again (names+attrs)"] = Result(
        median_rate(lambda: list_long(root / "bigdir"), r, per=1), "entries/s")
    return out


def fastmount_argv(source: Path, point: Path, engine: str) -> list[str]:
    return [sys.executable, "-m", "agent.fastmount.worker", "--source", str(source), "--mount-path", str(point),
            "--engine", engine]


ENGINES = {"fastmount native": "native", "fastmount pyfuse3": "python"}


def run(args: argparse.Namespace) -> None:
    need = (4 * args.size + args.small_files // 8 + args.slow_size) * MiB
    with workspace(need, args.source_on) as (home, mounts):
        src = home / "source"
        src.mkdir()
        make_source(src, args)
        views: dict[str, Path] = {"direct": src}
        mnt = home.parent / "mnt"
        for view, engine in ENGINES.items():
            point = mnt / f"fastmount-{engine}"
            mounts.start(fastmount_argv(src, point, engine), point, home.parent / f"fastmount-{engine}.log")
            views[view] = point
        if shutil.which("bindfs"):
            mounts.run(["bindfs", "-r", str(src), str(mnt / "bindfs")], mnt / "bindfs")
            views["bindfs -r"] = mnt / "bindfs"
        if shutil.which("rclone") and not args.skip_rclone:
            mounts.start(["rclone", "mount", "--read-only", "--vfs-cache-mode", "off", "--config", "/dev/null",
                          str(src), str(mnt / "rclone")], mnt / "rclone", home.parent / "rclone.log")
            views["rclone (cache off)"] = mnt / "rclone"

        results: dict[str, dict[str, Result]] = {}
        for name, root in views.items():
            console.print(f"[dim]measuring {name} ...[/dim]")
            repeats = args.repeats if name == "direct" or name in ENGINES else args.peer_repeats
            results[name] = measure_view(root, args, first_listing=True, repeats=repeats)

        console.print("[dim]slow source: EMULATED network store (slowfs.py) ...[/dim]")
        slow = mnt / "slowfs"
        mounts.start([sys.executable, str(REPO / "benchmarks" / "slowfs.py"), "--source", str(src / "slow"),
                      "--mount-path", str(slow), "--latency-ms", str(args.latency_ms),
                      "--bandwidth-mib", str(args.bandwidth_mib)], slow, home.parent / "slowfs.log")
        slow_rates = {"direct sequential read of the slow source":
                      median_rate(lambda: read_file(slow / "file.bin"), args.repeats, drop_caches)}
        # auto picks the pyfuse3 engine here (the source is a FUSE filesystem); native is shown for contrast
        for label, engine in (("fastmount, engine auto (pyfuse3, parallel read-ahead)", "auto"),
                              ("fastmount, engine native (no read-ahead of its own)", "native")):
            point = mnt / f"over-slow-{engine}"
            mounts.start(fastmount_argv(slow, point, engine), point, home.parent / f"over-slow-{engine}.log")
            slow_file = point / "file.bin"
            slow_rates[label] = median_rate(functools.partial(read_file, slow_file), args.repeats, drop_caches)
        print_table(results, args, slow_rates)


def print_table(results: dict[str, dict[str, Result]], args: argparse.Namespace,
                slow_rates: dict[str, float]) -> None:
    names = list(results)
    table = Table(title=f"fast mount vs peers (source on {args.source_on}; {args.size} MiB files, "
                        f"{args.small_files} small files, {args.dir_entries} entries; median of {args.repeats} "
                        "runs for direct and fastmount, "
                        f"{args.peer_repeats} for peers; ratio = view / direct)")
    table.add_column("case")
    for name in names:
        table.add_column(name, justify="right")
    for case in results["direct"]:
        direct = results["direct"][case].value
        cells = [case]
        for name in names:
            res = results[name].get(case)
            if res is None:
                cells.append("-")
                continue
            cells.append(f"{res.value:,.0f} {res.unit}" + ("" if name == "direct" else f" ({res.value / direct:.2f}x)"))
        table.add_row(*cells)
    console.print(table)
    slow_table = Table(title=f"slow source: EMULATED network store ({args.latency_ms} ms per request, "
                             f"{args.bandwidth_mib} MiB/s per request; {args.slow_size} MiB file, cache dropped)")
    slow_table.add_column("reader")
    slow_table.add_column("MiB/s", justify="right")
    slow_table.add_column("vs direct", justify="right")
    slow_direct = next(iter(slow_rates.values()))
    for label, rate in slow_rates.items():
        slow_table.add_row(label, f"{rate:,.0f}", f"{rate / slow_direct:.2f}x")
    console.print(slow_table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="MiB per large file (4 are written)")
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--dir-entries", type=int, default=100_000)
    parser.add_argument("--slow-size", type=int, default=256, help="MiB of the file behind the slow source")
    parser.add_argument("--latency-ms", type=float, default=4.0)
    parser.add_argument("--bandwidth-mib", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=1,
                        help="runs per figure for bindfs and rclone (rclone alone takes minutes per run)")
    parser.add_argument("--skip-rclone", action="store_true")
    add_source_on_argument(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: it mounts a tmpfs and FUSE filesystems and drops the page cache")
    for name, value, low, high in (("--size", args.size, 1, 8192), ("--small-files", args.small_files, 1, 100_000),
                                   ("--dir-entries", args.dir_entries, 1, 1_000_000),
                                   ("--slow-size", args.slow_size, 1, 4096), ("--repeats", args.repeats, 1, 20),
                                   ("--peer-repeats", args.peer_repeats, 1, 20)):
        if not low <= value <= high:
            parser.error(f"{name} must be between {low} and {high}")
    return run_interruptibly(run, args)


def add_source_on_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-on", choices=SOURCE_PLACES, default="tmpfs",
                        help=f"where the source lives: a private tmpfs (default) or a directory on {DISK_DIR}'s "
                             "disk filesystem, whose caches are dropped along with the mounts' for cold runs")


def run_interruptibly(body: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Run a benchmark; SIGTERM behaves like Ctrl-C so the cleanup in `workspace` runs either way."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        body(args)
    except KeyboardInterrupt:
        console.print("interrupted; mounts and temporary files removed")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
