"""Entry point of one fast-mount worker process: mount, serve until SIGTERM/SIGINT, unmount.

    python -m agent.fastmount.worker --source S --mount-path P [--stats-file F]

The agent starts one of these per read-only mount and supervises it; the counters go to the stats file
(replaced atomically) every `--stats-interval` seconds and once more on exit.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import pyfuse3
import structlog
import trio

from agent.fastmount import caps
from agent.fastmount.engine import ENGINE_CHOICES, choose_engine, describe_source, native_available
from agent.fastmount.fs import FastMountFS
from agent.fastmount.metadata import CacheConfig
from agent.fastmount.prefetch import MiB, PrefetchConfig
from agent.fastmount.stats import Counters, write_stats
from agent.hostns import enter_host_mount_ns
from agent.mountsys import read_mount_table

log = structlog.get_logger("fastmount.worker")

PR_SET_PDEATHSIG = 1
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
FSTYPE_SUBTYPE = "bench-fastmount"
PYFUSE3_READAHEAD_KIB = 8192
ATTR_TIMEOUT_S = 1.0  # attributes decide the kernel's permission checks: never trust older ones
DEFAULT_SPIN_US = 50  # measured with benchmarks/fastmount_phases.py --spin-us: see the README


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent.fastmount.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="directory to expose read-only")
    parser.add_argument("--mount-path", required=True, help="empty directory to mount on")
    parser.add_argument("--stats-file", type=Path, help="JSON file for bytes_read/errors/opens")
    parser.add_argument("--stats-interval", type=float, default=2.0, help="seconds between stats writes")
    parser.add_argument("--memory-budget-mib", type=int, default=256,
                        help="read-ahead buffers of all open files together (MiB)")
    parser.add_argument("--max-window-mib", type=int, default=64, help="largest read-ahead window per file")
    parser.add_argument("--fetch-threads", type=int, default=16, help="parallel block reads of the source")
    parser.add_argument("--kernel-readahead-kib", type=int,
                        help=f"kernel read-ahead for this mount (default: {PYFUSE3_READAHEAD_KIB} for the pyfuse3 "
                             "engine, so reads arrive in large requests; the kernel's own for the native engine, "
                             "whose reads mostly pass straight through to the source)")
    parser.add_argument("--readdirplus", choices=("adaptive", "always", "auto"), default="adaptive",
                        help="native engine, listings: adaptive = names only unless the directory's entries "
                             "get looked up (ls -l, reading every file), learnt per directory; always = "
                             "attributes with every entry; auto = the kernel's own heuristic")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                        help="native (C, libfuse) for local sources, python (pyfuse3 with parallel read-ahead) "
                             "for remote or FUSE sources; auto picks by the source's filesystem")
    parser.add_argument("--threads", type=int, default=4, help="native engine: request threads")
    parser.add_argument("--spin-us", type=int, default=DEFAULT_SPIN_US,
                        help="native engine: after each request, poll for the next one this many microseconds "
                             "(yielding the CPU between polls) before sleeping; saves a wake-up per request in "
                             "bursts of small-file opens and listings. 0: always sleep")
    parser.add_argument("--no-dir-read-ahead", action="store_true",
                        help="native engine: read, stat and build a listing's next batch only when the kernel "
                             "asks for it, not while the kernel takes in the last one")
    parser.add_argument("--no-passthrough", action="store_true",
                        help="native engine: serve reads itself instead of the kernel's FUSE passthrough "
                             "(used automatically when the kernel declines it)")
    parser.add_argument("--attr-timeout", type=float, default=ATTR_TIMEOUT_S,
                        help="seconds the kernel may keep a file's attributes; they decide its permission checks, "
                             "so a chmod or a file swapped in the source counts after at most this long "
                             "(longer: fewer getattr round trips on repeated `ls -l`)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="get SIGTERM (and unmount) when the supervising process dies")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.source):
        parser.error(f"--source {args.source!r} is not a directory")
    args.source = os.path.abspath(args.source)
    if os.path.realpath(args.source) != args.source:
        # The engines open the source refusing any symlink on its path (a link swapped in after the agent
        # validated it must not lead the mount elsewhere); say so up front.
        parser.error(f"--source {args.source!r} goes through a symlink (it resolves to "
                     f"{os.path.realpath(args.source)!r}); give the resolved path")
    if not os.path.isdir(args.mount_path):
        parser.error(f"--mount-path {args.mount_path!r} is not a directory")
    if args.memory_budget_mib <= 0 or args.fetch_threads <= 0 or args.max_window_mib <= 0:
        parser.error("--memory-budget-mib, --max-window-mib and --fetch-threads must be positive")
    if args.kernel_readahead_kib is not None and not 0 <= args.kernel_readahead_kib <= 1024 * 1024:
        parser.error("--kernel-readahead-kib must be between 0 and 1048576")
    if not 1 <= args.threads <= 256:
        parser.error("--threads must be between 1 and 256")
    if not 0 < args.attr_timeout <= 60:
        parser.error("--attr-timeout must be more than 0 and at most 60 seconds")
    if not 0 <= args.spin_us <= 1_000_000:
        parser.error("--spin-us must be between 0 and 1000000")
    return args


def tune_kernel_readahead(mount_path: str, kib: int) -> None:
    """Raise the mount's read-ahead so the kernel sends ~1 MiB reads instead of 128 KiB ones.

    FUSE sets the backing device's read-ahead from the INIT reply; it can only be raised afterwards through
    sysfs. Fewer, larger requests cut the per-request Python cost that limits a FUSE filesystem.
    """
    entry = read_mount_table().get(mount_path)  # from mountinfo: never touches the mount itself
    if entry is None:
        log.warning("readahead-not-tuned", reason="mount not found in mountinfo", mount_path=mount_path)
        return
    knob = Path(f"/sys/class/bdi/{entry.device}/read_ahead_kb")
    try:
        knob.write_text(str(kib))
    except OSError as exc:
        log.warning("readahead-not-tuned", reason=exc.strerror, knob=str(knob))


def keep_freed_memory_for_reuse() -> None:
    """Serve 1 MiB read buffers from the heap instead of fresh mmaps.

    Profiled: with glibc's defaults each block buffer was a new mapping, and the page faults on it plus
    the unmapping (TLB shootdowns across the fetch threads, costly in a VM) dominated the first read
    of a page-cached file. Reusing heap memory removes both.
    """
    libc = ctypes.CDLL(None)
    libc.mallopt(M_MMAP_THRESHOLD, 64 * MiB)
    libc.mallopt(M_TRIM_THRESHOLD, 256 * MiB)


async def _serve(fs: FastMountFS, args: argparse.Namespace) -> None:
    async def publish_stats() -> None:
        while True:
            write_stats(args.stats_file, fs.counters, os.getpid(), "python")
            await trio.sleep(args.stats_interval)

    async def stop_on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                pyfuse3.terminate()
                return

    async def tune_after_init() -> None:
        await fs.initialised.wait()
        # The INIT reply has been written by the time this task runs, so the kernel will not undo it.
        await trio.to_thread.run_sync(tune_kernel_readahead, args.mount_path,
                                      PYFUSE3_READAHEAD_KIB if args.kernel_readahead_kib is None
                                      else args.kernel_readahead_kib)
        log.info("mounted", source=args.source, mount_path=args.mount_path)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signal)
        nursery.start_soon(tune_after_init)
        if args.stats_file is not None:
            nursery.start_soon(publish_stats)
        await pyfuse3.main(min_tasks=4, max_tasks=64)
        nursery.cancel_scope.cancel()


def mount_options(source: str) -> list[str]:
    # libfuse splits -o on commas: escape them (and the escape character) in the source path
    fsname = source.replace("\\", "\\\\").replace(",", "\\,")
    options = sorted(pyfuse3.default_options | {"ro", f"fsname={fsname}", f"subtype={FSTYPE_SUBTYPE}"})
    if os.geteuid() == 0:
        options.append("allow_other")  # SGE jobs run as the users, not as the agent's root
    return options


def drop_capabilities(keep: set[int]) -> None:
    """Once mounted, keep only what serving needs (agent/fastmount/caps.py); called before any thread starts."""
    caps.keep_only(keep)
    log.info("capabilities", kept=caps.names(caps.effective()))


def serve_python(args: argparse.Namespace) -> None:
    keep_freed_memory_for_reuse()
    fs = FastMountFS(args.source,
                     cache=CacheConfig(attr_timeout=args.attr_timeout),
                     prefetch=PrefetchConfig(max_window=args.max_window_mib * MiB),
                     memory_budget=args.memory_budget_mib * MiB,
                     fetch_threads=args.fetch_threads)
    pyfuse3.init(fs, args.mount_path, set(mount_options(args.source)))
    try:
        # Mounted, and no thread yet (trio's and the fetchers' start in trio.run): they inherit this.
        drop_capabilities({caps.CAP_DAC_READ_SEARCH})
        trio.run(_serve, fs, args)
    finally:
        pyfuse3.close(unmount=True)
        fs.shutdown()
        if args.stats_file is not None:
            write_stats(args.stats_file, fs.counters, os.getpid(), "python")


def serve_native(args: argparse.Namespace) -> None:
    from agent.fastmount import _native

    def publish_once() -> None:
        bytes_read, errors, opens, inodes = _native.counters()
        write_stats(args.stats_file, Counters(bytes_read=bytes_read, errors=errors, opens=opens), os.getpid(),
                    "native", inodes=inodes)

    stop = threading.Event()

    def publish_stats() -> None:
        while not stop.wait(args.stats_interval):
            publish_once()

    publisher = threading.Thread(target=publish_stats, name="stats", daemon=True)
    if args.stats_file is not None:
        publish_once()

    def on_mounted() -> None:
        # In the mounting thread, before libfuse's request threads and the stats thread exist: all inherit
        # the reduced sets. Passthrough registers backing files, which the kernel allows CAP_SYS_ADMIN only.
        drop_capabilities({caps.CAP_DAC_READ_SEARCH} | (set() if args.no_passthrough else {caps.CAP_SYS_ADMIN}))
        if args.stats_file is not None:
            publisher.start()

    log.info("mounting", source=args.source, mount_path=args.mount_path, engine="native")
    try:
        # Blocks until SIGTERM/SIGINT (libfuse's handlers end the loop) or an unmount; unmounts itself.
        _native.serve(args.source, args.mount_path, ",".join(mount_options(args.source)),
                      threads=args.threads, readahead_kib=args.kernel_readahead_kib or 0,  # None: the kernel's own
                      readdirplus_always=args.readdirplus != "auto",
                      adaptive_attrs=args.readdirplus == "adaptive", passthrough=not args.no_passthrough,
                      spin_us=args.spin_us, dir_read_ahead=not args.no_dir_read_ahead, debug=args.debug,
                      attr_timeout=args.attr_timeout,
                      on_mounted=on_mounted)
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join(5)
        if args.stats_file is not None:
            publish_once()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr)
    structlog.configure(logger_factory=structlog.stdlib.LoggerFactory(),
                        processors=[structlog.processors.TimeStamper(fmt="iso"),
                                    structlog.processors.JSONRenderer()])
    if args.exit_with_parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            return 1  # the parent died before the death signal was armed
    enter_host_mount_ns()  # before any thread starts: mount where the whole node (SGE jobs) sees it
    args.mount_path = os.path.realpath(args.mount_path)
    fstype = describe_source(args.source)
    try:
        engine, why = choose_engine(args.engine, fstype, native_available())
    except (RuntimeError, ValueError) as exc:
        log.error("no-engine", error=str(exc))
        return 2
    log.info("engine", engine=engine, reason=why, source_fstype=fstype)
    if engine == "native":
        serve_native(args)
    else:
        serve_python(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
