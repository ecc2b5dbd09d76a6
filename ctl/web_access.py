"""workspace-ctl's `cluster web-access` commands (issue 19):

  cluster web-access enable | disable | status   (administrator)
  cluster web-access url                          (any user: a one-time login link with your role)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from common.client import ManagerEndpoint
from ctl import output
from ctl.output import table, to_dict
from protos.bench.v1 import cluster_pb2


async def _call(ep: ManagerEndpoint, method: Any, request: Any, args: argparse.Namespace) -> Any:
    return await method(request, metadata=ep.metadata, timeout=args.timeout)


def _print_status(status: cluster_pb2.WebAccessStatus, args: argparse.Namespace) -> int:
    if args.output == "json":
        output.print_json(to_dict(status))
        return 0
    rows: list[tuple[str, Any]] = [("web access", "enabled" if status.enabled else "disabled (port closed)")]
    if status.base_url:
        rows += [("URL", status.base_url), ("listening", ", ".join(status.listening)),
                 ("browser sessions", status.sessions),
                 ("log in", "workspace-ctl cluster web-access url  (prints a one-time link)")]
    table("web access", ("", ""), rows)
    if status.message:
        print(status.message)
    return 0


async def enable(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.SetWebAccessRequest(enabled=True)
    return _print_status(await _call(ep, stub.SetWebAccess, request, args), args)


async def disable(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    request = cluster_pb2.SetWebAccessRequest(enabled=False)
    return _print_status(await _call(ep, stub.SetWebAccess, request, args), args)


async def status(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    return _print_status(await _call(ep, stub.GetWebAccess, cluster_pb2.GetWebAccessRequest(), args), args)


async def url(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    link = await _call(ep, stub.WebAccessLoginLink, cluster_pb2.WebAccessLoginLinkRequest(), args)
    if args.output == "json":
        output.print_json(to_dict(link))
        return 0
    print(link.url)
    minutes = max(int((link.expires_at_unix - time.time()) // 60), 1)
    print(f"(one-time link: it works once, within {minutes} min; it opens a session with your role)")
    return 0


Command = Callable[[Any, str, Any, str], argparse.ArgumentParser]


def add_commands(cluster: Any, command: Command) -> None:
    web = cluster.add_parser("web-access", help="web interface of the manager: enable, disable, status, url"
                             ).add_subparsers(dest="action", required=True)
    command(web, "enable", enable, "open the HTTPS port of the web interface (administrator)")
    command(web, "disable", disable, "close the port and end every browser session (administrator)")
    command(web, "status", status, "enabled or not, URL, live sessions (administrator)")
    command(web, "url", url, "print a one-time login link (single use, expires within minutes)")
