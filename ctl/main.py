"""workspace-ctl: the user's CLI for the workspace cluster (talks to bench-manager over gRPC).

  workspace-ctl cluster status | members [--history MEMBER] | scale (--min A --max B | --static N)
                        | drain MEMBER [--deadline S] | start | stop | web-access enable|disable|status|url
  workspace-ctl data get-mounts | create-mount --mount-path P --source S [--mode read-only|read-write]
                     | delete-mount --mount-path P
  workspace-ctl compute get-pools | scale-pool | get-cluster-details | get-logs   (product aliases)
  workspace-ctl admin add-user NAME --role viewer|contributor|administrator | list-users | remove-user NAME
                      | add-node NODE_ID [--hostname H --ip IP] | whoami
  workspace-ctl workspace get-settings | set-allowlist --file F | add-url URL | remove-url URL
                          | set-rights --upload on|off | activity [--since 1h] [--user U] [--action A]
Every command takes --output json. Exit codes: 0 ok, 1 refused by the manager, 2 usage or local
configuration, 3 manager unreachable, 4 credential refused, 5 beyond your role (permission denied).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from common.client import ClientConfigError, ManagerEndpoint, resolve_endpoint
from common.mountmodes import MODE_NAMES, MODE_VALUES
from ctl import admin, output, web_access
from ctl.output import ago, size, table, to_dict
from ctl.workspace_commands import add_workspace_group
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNAUTHENTICATED = 4
EXIT_PERMISSION_DENIED = 5

Handler = Callable[[cluster_pb2_grpc.ClusterServiceStub, argparse.Namespace, ManagerEndpoint], Awaitable[int]]


async def _call(endpoint: ManagerEndpoint, method: Any, request: Any, deadline_s: float) -> Any:
    return await method(request, metadata=endpoint.metadata, timeout=deadline_s)


# cluster ----------------------------------------------------------------------------------------
async def cluster_status(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    status: cluster_pb2.ClusterStatus = await _call(ep, stub.GetStatus, cluster_pb2.GetStatusRequest(), args.timeout)
    if args.output == "json":
        output.print_json(to_dict(status))
        return 0
    p = status.policy
    policy = f"static, {p.static_members} members" if p.mode == "static" else \
        f"dynamic, {p.min_members}..{p.max_members} members"
    states = ", ".join(f"{k}={v}" for k, v in sorted(status.members_by_state.items())) or "no members"
    rows = [("cluster", f"{status.cluster_id} ({status.state})"), ("policy", policy), ("members", states),
            ("cores", f"{status.usable_cores} usable of {status.total_cores}"),
            ("memory", size(status.total_memory_bytes)), ("running jobs", status.running_jobs),
            ("pending tasks", status.pending_tasks),
            ("operation", status.operation_in_flight or "none")]
    if status.HasField("last_decision"):
        d = status.last_decision
        rows.append(("last decision", f"{d.action} {d.count or ''} ({ago(d.at_unix)}): {d.reason}"))
    if status.scaler_brake:
        rows.append(("scaler brake", status.scaler_brake))
    rows += spark_rows(status.spark)
    rows.append(("web access", status.web_access_url or "disabled"))
    table("workspace cluster", ("", ""), rows)
    return 0


def spark_rows(spark: cluster_pb2.SparkStatus) -> list[tuple[str, Any]]:
    if not spark.enabled:
        return [("spark", "not set up on this cluster")]
    master = f"{spark.master_url} ({spark.master_status or 'unknown'})" + (f": {spark.error}" if spark.error else "")
    rows: list[tuple[str, Any]] = [("spark master", master), ("spark UI", spark.ui_url),
                                   ("spark workers", f"{spark.alive_workers} alive, {spark.cores_used}/{spark.cores} "
                                                     "cores in use")]
    for app in spark.apps:
        rows.append(("spark app", f"{app.app_id} {app.name} ({app.user}, {app.state}, {app.cores_granted} cores)"
                     + (f": {app.wants}" if app.wants else "")))
    if not spark.apps:
        rows.append(("spark apps", "none running"))
    return rows


async def cluster_members(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.ListMembersRequest(member_id=args.history or "", include_history=bool(args.history))
    response = await _call(ep, stub.ListMembers, request, args.timeout)
    if args.output == "json":
        output.print_json(to_dict(response))
        return 0
    if args.history:
        member = response.members[0]
        table(f"story of {member.member_id} (now {member.state})", ("when", "from", "to", "stimulus", "reason"),
              [(ago(t.at_unix), t.from_state, t.to_state, t.stimulus, t.reason) for t in member.history])
        return 0
    rows = []
    for m in response.members:
        drain = f"{m.drain_step}: {m.drain_progress}" if m.drain_step else ""
        rows.append((m.member_id, m.hostname, m.ip, m.state, ago(m.state_since_unix), m.capacity.cores,
                     size(m.capacity.memory_bytes), size(m.capacity.scratch_free_bytes), m.running_jobs,
                     len(m.mounts), ago(m.last_heartbeat_unix), drain, spark_member(m)))
    table("cluster members", ("member", "hostname", "ip", "state", "since", "cores", "memory", "scratch free",
                              "jobs", "mounts", "heartbeat", "drain", "spark"), rows)
    return 0


def spark_member(m: cluster_pb2.Member) -> str:
    """Spark worker state, executors and cores in use on one member ('' for the manager node)."""
    if m.role == "manager" or not m.HasField("spark"):
        return ""
    s = m.spark
    if not s.workers:
        return "no worker"
    return f"{s.workers} worker(s), {s.executors} executor(s), {s.cores_used}/{s.cores} cores"


async def cluster_scale(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    if args.static is not None:
        if args.min is not None or args.max is not None:
            return _usage("use either --static N or --min A --max B, not both")
        request = cluster_pb2.ScaleRequest(static_members=args.static)
    elif args.min is not None and args.max is not None:
        request = cluster_pb2.ScaleRequest(dynamic=cluster_pb2.DynamicRange(min_members=args.min,
                                                                            max_members=args.max))
    else:
        return _usage("give --static N, or both --min A and --max B")
    response = await _call(ep, stub.Scale, request, args.timeout)
    if args.output == "json":
        output.print_json(to_dict(response))
    else:
        p = response.policy
        print(f"scaling policy: {p.mode}" + (f", {p.static_members} members" if p.mode == "static"
                                             else f", {p.min_members}..{p.max_members} members"))
    return 0


async def cluster_drain(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.DrainMemberRequest(member_id=args.member, deadline_s=args.deadline)
    response = await _call(ep, stub.DrainMember, request, args.timeout)
    if args.output == "json":
        output.print_json(to_dict(response))
    else:
        print(f"{response.member.member_id}: {response.member.state} — {response.message}; follow it with "
              f"`workspace-ctl cluster members`")
    return 0


async def cluster_start(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    status = await _call(ep, stub.StartCluster, cluster_pb2.StartClusterRequest(), args.timeout)
    output.print_json(to_dict(status)) if args.output == "json" else print(f"cluster {status.state}")
    return 0


async def cluster_stop(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    status = await _call(ep, stub.StopCluster, cluster_pb2.StopClusterRequest(), args.timeout)
    output.print_json(to_dict(status)) if args.output == "json" else \
        print(f"cluster {status.state}: members drain (running jobs finish) and are removed")
    return 0


# data -------------------------------------------------------------------------------------------
async def data_get_mounts(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await _call(ep, stub.GetMounts, cluster_pb2.GetMountsRequest(), args.timeout)
    if args.output == "json":
        mounts = []
        for m in response.mounts:
            mode = MODE_NAMES[m.spec.mode]
            mounts.append({"mount_path": m.spec.mount_path, "source": m.spec.source, "mode": mode,
                           "nodes": [to_dict(n) for n in m.nodes]})
        output.print_json({"mounts": mounts})
        return 0
    rows = []
    for m in response.mounts:
        mode = MODE_NAMES[m.spec.mode]
        for n in m.nodes or [cluster_pb2.NodeMountState(member_id="-", state="no nodes")]:
            rows.append((m.spec.mount_path, m.spec.source, mode, n.member_id, n.state, size(n.bytes_read),
                         n.errors, n.message))
    table("mounts", ("mount path", "source", "mode", "node", "state", "read", "errors", "message"), rows)
    return 0


async def data_create_mount(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    spec = types_pb2.MountSpec(mount_path=args.mount_path, source=args.source, mode=MODE_VALUES[args.mode])
    response = await _call(ep, stub.CreateMount, cluster_pb2.CreateMountRequest(spec=spec), args.timeout)
    return _print_mount_outcome(response, args)


async def data_delete_mount(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await _call(ep, stub.DeleteMount, cluster_pb2.DeleteMountRequest(mount_path=args.mount_path),
                           args.timeout)
    return _print_mount_outcome(response, args)


def _print_mount_outcome(response: cluster_pb2.MountOperationResponse, args: argparse.Namespace) -> int:
    if args.output == "json":
        output.print_json(to_dict(response))
    else:
        print(f"{response.spec.mount_path}: {response.message}")
        for r in response.results:
            print(f"  {r.member_id}: {'ok' if r.ok else f'{r.error_code}: {r.message}'}")
    return 0


# compute (product aliases) ----------------------------------------------------------------------
async def compute_get_logs(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await _call(ep, stub.GetScalerLog, cluster_pb2.GetScalerLogRequest(tail=args.tail), args.timeout)
    if args.output == "json":
        output.print_json({"lines": list(response.lines)})
    else:
        for line in response.lines:
            print(line)
    return 0


async def compute_get_pools(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    status = await _call(ep, stub.GetStatus, cluster_pb2.GetStatusRequest(), args.timeout)
    p = status.policy
    pool = {"pool_id": status.cluster_id, "type": p.mode, "member_count": sum(status.members_by_state.values()),
            "min": p.min_members, "max": p.max_members, "static_members": p.static_members}
    if args.output == "json":
        output.print_json({"pools": [pool]})
    else:
        table("pools", tuple(pool), [tuple(pool.values())])
    return 0


def _usage(message: str) -> int:
    print(f"workspace-ctl: {message}", file=sys.stderr)
    return 2


# parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    def common_options(suppress: bool) -> argparse.ArgumentParser:
        # Sub-commands repeat the options with SUPPRESS defaults so that `workspace-ctl -o json cluster
        # members` keeps the value given before the sub-command.
        p = argparse.ArgumentParser(add_help=False)

        def default(value: object) -> object:
            return argparse.SUPPRESS if suppress else value
        p.add_argument("--manager", default=default(None),
                       help="HOST:PORT of bench-manager (default: $BENCH_MANAGER or bench-cluster's config)")
        p.add_argument("--credential-file", "--token-file", dest="credential_file", default=default(None),
                       help="your credential (default: $BENCH_CREDENTIAL_FILE, else "
                            "~/.config/bench-cluster/credential)")
        p.add_argument("--ca-file", default=default(None),
                       help="the cluster CA certificate (default: $BENCH_CA_FILE, else bench-cluster's config, "
                            "else /etc/bench/tls/ca.crt)")
        p.add_argument("--output", "-o", choices=["table", "json"], default=default("table"))
        p.add_argument("--timeout", type=float, default=default(120.0),
                       help="seconds to wait for the manager (default 120)")
        return p

    common = common_options(suppress=True)
    parser = argparse.ArgumentParser(prog="workspace-ctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[common_options(suppress=False)])
    groups = parser.add_subparsers(dest="group", required=True, metavar="{cluster,data,compute,admin,workspace}")

    def command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    cluster = groups.add_parser("cluster", help="cluster status, members, scaling, drains").add_subparsers(
        dest="command", required=True)
    command(cluster, "status", cluster_status, "mode, range, members, capacity, last scaler decision")
    members = command(cluster, "members", cluster_members, "list members (or one member's story)")
    members.add_argument("--history", metavar="MEMBER",
                         help="show every transition of MEMBER (member id or hostname) with its cause")
    scale = command(cluster, "scale", cluster_scale, "set the scaling policy")
    scale.add_argument("--min", type=int)
    scale.add_argument("--max", type=int)
    scale.add_argument("--static", type=int, metavar="N")
    drain = command(cluster, "drain", cluster_drain, "drain a member (running jobs finish) and remove it")
    drain.add_argument("member", help="member id or hostname (as qhost shows it)")
    drain.add_argument("--deadline", type=int, default=0,
                       help="seconds running jobs get before they are rescheduled elsewhere (0 = wait)")
    command(cluster, "start", cluster_start, "start the cluster (members come per policy)")
    command(cluster, "stop", cluster_stop, "stop the cluster: drain and remove every member")
    web_access.add_commands(cluster, command)  # issue 19

    data = groups.add_parser("data", help="fast mounts on every node").add_subparsers(dest="command", required=True)
    command(data, "get-mounts", data_get_mounts, "mounts and their state on every node")
    create = command(data, "create-mount", data_create_mount, "mount a /data folder on every node")
    create.add_argument("--mount-path", required=True, help="where, under /data/mounts/")
    create.add_argument("--source", required=True, help="what, under /data/ (e.g. /data/project/mydata)")
    create.add_argument("--mode", choices=list(MODE_VALUES), default="read-only")
    delete = command(data, "delete-mount", data_delete_mount, "unmount from every node")
    delete.add_argument("--mount-path", required=True)

    compute = groups.add_parser("compute", help="product-compatible aliases").add_subparsers(
        dest="command", required=True)
    command(compute, "get-pools", compute_get_pools, "the cluster's member pool")
    command(compute, "get-cluster-details", cluster_status, "same as `cluster status`")
    logs = command(compute, "get-logs", compute_get_logs, "the autoscaler log (sge-scaler.log)")
    logs.add_argument("--tail", type=int, default=50)
    pool = command(compute, "scale-pool", cluster_scale, "same as `cluster scale`")
    pool.add_argument("--pool-id", help="accepted for compatibility; a cluster has one pool")
    pool.add_argument("--min", type=int)
    pool.add_argument("--max", type=int)
    pool.add_argument("--static", "--member-count", dest="static", type=int, metavar="N")
    admin.add_commands(groups, command)
    add_workspace_group(groups, command)  # restricted workspaces (issue 20)
    return parser


async def _run(args: argparse.Namespace) -> int:
    try:
        endpoint = resolve_endpoint(args.manager, args.credential_file, args.ca_file)
    except ClientConfigError as exc:
        print(f"workspace-ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with endpoint.channel() as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        try:
            handler: Handler = args.handler
            return await handler(stub, args, endpoint)
        except aio.AioRpcError as exc:
            return _report_rpc_error(exc, endpoint)


def _report_rpc_error(exc: aio.AioRpcError, endpoint: ManagerEndpoint) -> int:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and any(w in (exc.details() or "").lower() for w in ("ssl", "handshake",
                                                                                               "certificate")):
        print(f"workspace-ctl: TLS with the manager at {endpoint.address} failed ({exc.details()}): its certificate "
              "does not chain to the cluster CA you trust (--ca-file), or it does not name that address",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        print(f"workspace-ctl: the manager at {endpoint.address} is unreachable ({code.name}: {exc.details()}). "
              "Is the cluster up? (`bench-cluster status`)", file=sys.stderr)
        return EXIT_UNREACHABLE
    if code == grpc.StatusCode.UNAUTHENTICATED:
        print(f"workspace-ctl: the manager refused the credential ({endpoint.credential_source}): {exc.details()}",
              file=sys.stderr)
        return EXIT_UNAUTHENTICATED
    if code == grpc.StatusCode.PERMISSION_DENIED:
        print(f"workspace-ctl: permission denied: {exc.details()}", file=sys.stderr)
        return EXIT_PERMISSION_DENIED
    print(f"workspace-ctl: {code.name.lower().replace('_', ' ')}: {exc.details()}", file=sys.stderr)
    return EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
