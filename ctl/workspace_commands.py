"""workspace-ctl's `workspace` group (restricted workspaces, issue 20):

  workspace get-settings | set-allowlist --file FILE | add-url URL | remove-url URL
            | set-rights --upload on|off | activity [--since 1h] [--user U] [--action A] [--limit N]
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.client import ManagerEndpoint
from ctl import output
from ctl.output import ago, table, to_dict
from protos.bench.v1 import cluster_pb2

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(ValueError):
    pass


def parse_since(text: str, now: float) -> float:
    """`10m`, `1h`, `2d` (ago) or a UTC date/time (`2026-12-02`, `2026-12-02T01:30:00Z`)."""
    found = _DURATION.match(text.strip())
    if found:
        return now - int(found.group(1)) * _UNITS[found.group(2)]
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text.strip(), pattern)))
        except ValueError:
            continue
    raise UsageError(f"--since {text!r}: give a duration (30s, 10m, 1h, 2d, 1w) or a UTC date "
                     "(2026-12-02 or 2026-12-02T01:30:00Z)")


async def _call(ep: ManagerEndpoint, method: Any, request: Any, args: argparse.Namespace) -> Any:
    return await method(request, metadata=ep.metadata, timeout=args.timeout)


def _print_settings(response: cluster_pb2.WorkspaceSettingsResponse, args: argparse.Namespace) -> int:
    if args.output == "json":
        output.print_json(to_dict(response))
        return 0

    def describe(s: cluster_pb2.WorkspaceSettings) -> list[tuple[str, str]]:
        urls = "\n".join(s.allowlist) if s.allowlist else "(none: unrestricted, outbound traffic not filtered)"
        changed = f"{ago(s.changed_at_unix)} by {s.changed_by}" if s.changed_at_unix else "never"
        return [("restricted", "yes" if s.allowlist else "no"), ("allowed URLs", urls),
                ("upload rights", "on" if s.upload else "off (/data/project read-only on every node)"),
                ("changed", changed)]
    table("workspace settings in force", ("", ""), describe(response.in_force))
    if response.has_pending:
        table("pending (applies at the next cluster start: `workspace-ctl cluster start`)", ("", ""),
              describe(response.pending))
    if response.message:
        print(response.message)
    return 0


async def get_settings(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await _call(ep, stub.GetWorkspaceSettings, cluster_pb2.GetWorkspaceSettingsRequest(), args)
    return _print_settings(response, args)


def _read_file(name: str) -> str:
    return sys.stdin.read() if name == "-" else Path(name).read_text()


async def set_allowlist(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    try:
        text = _read_file(args.file)  # a small local file, read before any call is made
    except (OSError, UnicodeDecodeError) as exc:
        print(f"workspace-ctl: cannot read the allowlist file {args.file}: {exc}", file=sys.stderr)
        return 2
    request = cluster_pb2.SetAllowlistRequest(entries=text.splitlines())
    return _print_settings(await _call(ep, stub.SetAllowlist, request, args), args)


async def add_url(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.AllowedUrlRequest(url=args.url)
    return _print_settings(await _call(ep, stub.AddAllowedUrl, request, args), args)


async def remove_url(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.AllowedUrlRequest(url=args.url)
    return _print_settings(await _call(ep, stub.RemoveAllowedUrl, request, args), args)


async def set_rights(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.SetWorkspaceRightsRequest(upload=args.upload == "on")
    return _print_settings(await _call(ep, stub.SetWorkspaceRights, request, args), args)


async def activity(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    try:
        since = parse_since(args.since, time.time()) if args.since else 0.0
    except UsageError as exc:
        print(f"workspace-ctl: {exc}", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("workspace-ctl: --limit must be at least 1", file=sys.stderr)
        return 2
    request = cluster_pb2.QueryActivityRequest(since_unix=since, user=args.user or "", action=args.action or "",
                                               limit=args.limit)
    response = await _call(ep, stub.QueryActivity, request, args)
    entries = [json.loads(e) for e in response.entries]
    if args.output == "json":
        output.print_json({"entries": entries})
        return 0
    core = ("time", "user", "action", "result")
    rows = [(e.get("time", ""), e.get("user", ""), e.get("action", ""), e.get("result", ""),
             " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(e.items())
                      if k not in core)) for e in entries]
    table("workspace activity", ("time (UTC)", "user", "action", "result", "details"), rows)
    return 0


Command = Callable[[Any, str, Any, str], argparse.ArgumentParser]


def add_workspace_group(groups: Any, command: Command) -> None:
    ws = groups.add_parser("workspace", help="restricted workspace: allowed URLs, upload rights, activity"
                           ).add_subparsers(dest="command", required=True)
    command(ws, "get-settings", get_settings, "allowlist and upload rights, in force and pending")
    p = command(ws, "set-allowlist", set_allowlist, "replace the allowlist with a file's lines (administrator)")
    p.add_argument("--file", required=True, help="one URL a line (# comments); /dev/null lifts the restriction")
    p = command(ws, "add-url", add_url, "allow one more URL (administrator)")
    p.add_argument("url")
    p = command(ws, "remove-url", remove_url, "remove a URL from the allowlist (administrator)")
    p.add_argument("url")
    p = command(ws, "set-rights", set_rights, "upload rights: off makes /data/project read-only (administrator)")
    p.add_argument("--upload", choices=["on", "off"], required=True)
    p = command(ws, "activity", activity, "who did what and when; refused connections with node and destination")
    p.add_argument("--since", help="30s, 10m, 1h, 2d, or a UTC date (default: everything kept)")
    p.add_argument("--user", help="only this user's actions")
    p.add_argument("--action", help="only this action, or actions starting with these words (e.g. 'workspace')")
    p.add_argument("--limit", type=int, default=1000,
                   help="the newest N entries (default 1000; the manager answers at most 10,000 and 3 MiB)")
