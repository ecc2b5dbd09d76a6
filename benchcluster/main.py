"""`bench-cluster`: a whole local cluster (manager + K namespace members, real SGE) on this machine.

    bench-cluster up --members 2 [--cores 2 --memory 4G --scratch-size 1G]
    bench-cluster up --mode dynamic --min 0 --max 3 [--min-age S --idle S --interval S]
    bench-cluster status [--output json]
    bench-cluster exec bench-m01 -- hostname
    bench-cluster down

Exit status: 0 success, 1 the operation failed (message says what is missing), 2 bad input (nothing
was created).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from rich.console import Console

from benchcluster import sge_setup
from benchcluster.down import down
from benchcluster.options import UsageError, build_options, check_machine
from benchcluster.state import STATE_ENV, ClusterPaths, resolve_state_root
from benchcluster.status import collect, exec_in_member, print_status
from benchcluster.up import UpFailed, cluster_exists, repair, up
from common import imdsguard
from common.console import make_console
from manager.providers.netns import NetworkError

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"bench-cluster: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench-cluster", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-root", help=f"where the cluster keeps its state (default ${STATE_ENV} "
                                             "or /var/lib/bench-cluster)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_up = sub.add_parser("up", help="start manager + members and wait until all are READY")
    p_up.add_argument("--members", type=int, help="static mode: number of members (0..50)")
    p_up.add_argument("--cores", type=int, default=2, help="cores per member (resource model; default 2)")
    p_up.add_argument("--memory", default="4G", help="memory per member (default 4G)")
    p_up.add_argument("--scratch-size", default="1G", help="/scratch per member, 1G..16T (default 1G; sparse)")
    p_up.add_argument("--allow-small-scratch", action="store_true", help="tests: allow /scratch below 1G")
    p_up.add_argument("--mode", choices=["static", "dynamic"], default="static")
    p_up.add_argument("--min", dest="min_members", type=int, help="dynamic mode: minimum members")
    p_up.add_argument("--max", dest="max_members", type=int, help="dynamic mode: maximum members")
    p_up.add_argument("--min-age", type=float, help="seconds a member stays at least")
    p_up.add_argument("--idle", type=float, help="seconds idle before a member is removed")
    p_up.add_argument("--interval", type=float, help="autoscaler poll interval in seconds")
    p_up.add_argument("--orphan-timeout", type=float,
                      help="seconds without the manager after which a dynamic member ends itself (default 600)")
    p_up.add_argument("--dedicated-manager", action="store_true",
                      help="the manager node runs no jobs, so no core is reserved on members")
    p_up.add_argument("--economy", action="store_true",
                      help="economy mode: members are spot nodes whose agents watch for interruption notices")
    p_up.add_argument("--spot-metadata-url", default="",
                      help="economy mode: instance-metadata endpoint the members' agents poll (IMDSv2)")
    p_up.add_argument("--no-spark", dest="spark", action="store_false",
                      help="no Spark master, executor slots or PySpark kernels")
    p_up.add_argument("--port", type=int, default=50051, help="manager gRPC port (default 50051)")
    p_up.add_argument("--cluster-id", default="local", help="cluster id (default local)")
    p_up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for READY (default 240)")

    p_status = sub.add_parser("status", help="members, manager and qmaster liveness")
    p_status.add_argument("--output", choices=["table", "json"], default="table")

    p_exec = sub.add_parser("exec", help="run a command inside a member's namespaces")
    p_exec.add_argument("member", help="member hostname (bench-m01) or id")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")

    p_down = sub.add_parser("down", help="remove everything the cluster created (also after a crash)")
    p_down.add_argument("--keep-qmaster", action="store_true", help="leave sge_qmaster running")
    return parser


def _run(args: argparse.Namespace, console: Console) -> int:
    paths = ClusterPaths(resolve_state_root(args.state_root))
    if args.command == "up":
        check_root("bench-cluster up")
        if cluster_exists(paths):
            repair(paths, console)
            return 0
        options = build_options(args.members, args.cores, args.memory, args.scratch_size, args.allow_small_scratch,
                                args.mode, args.min_members, args.max_members, args.min_age, args.idle,
                                args.interval, args.dedicated_manager, args.port, args.timeout, args.cluster_id,
                                economy=args.economy, spot_metadata_url=args.spot_metadata_url)
        options = dataclasses.replace(options, spark=args.spark, orphan_timeout_s=args.orphan_timeout)
        check_machine(sge_setup.SgeInstall().bin_dir, options.port)
        up(paths, options, console)
        console.print("cluster is up: try `workspace-ctl cluster members` or `qhost`")
        return 0
    if args.command == "status":
        print_status(collect(paths), console, args.output == "json")
        return 0
    if args.command == "exec":
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return exec_in_member(paths, args.member, command)
    if args.command == "down":
        check_root()
        leftovers = down(paths, console, stop_qmaster=not args.keep_qmaster)
        if not leftovers.empty():
            console.print(f"[red]left behind:[/] {leftovers.describe()}")
            return EXIT_FAILED
        console.print("[green]✓[/] nothing left")
        return 0
    raise AssertionError(args.command)


def check_root(what: str = "bench-cluster down") -> None:
    if os.geteuid() != 0:
        raise UsageError(f"{what} needs root (it manages namespaces, mounts, daemons and SGE hosts)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = make_console(stderr=True)
    try:
        return _run(args, console)
    except UsageError as exc:
        console.print(f"[red]bench-cluster: error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    except (UpFailed, sge_setup.SgeSetupError, NetworkError, imdsguard.GuardError) as exc:
        console.print(f"[red]bench-cluster {args.command} failed:[/] {exc}", highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("interrupted; `bench-cluster down` removes whatever was created")
        return 130


if __name__ == "__main__":
    sys.exit(main())
