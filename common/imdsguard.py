"""The instance metadata service, reachable by root only: an nftables table of our own on every node.

On EC2 any process can ask the metadata service for the instance's role credentials and user-data; an
SGE job (any user) must not. As ParallelCluster does, outgoing packets to the metadata addresses (and to
the configured spot-metadata URL, if elsewhere) from sockets not owned by root are rejected
(`meta skuid != 0 ... reject`: the connect fails at once). Root daemons (bench-agent's spot watcher,
first boot) still reach it.

One table (`inet bench_imds_guard`) holds everything, replaced atomically on every `apply` and deleted by
`remove`, so no other rule on the machine is touched. Installed before SGE and any job starts: by
`bench-imds-guard.service` on production nodes, in each member's network namespace by the local provider
before the member's init starts, and on the local manager node by `bench-cluster up` (removed by `down`).

    bench-imds-guard apply [--agent-config /etc/bench/agent.toml] [--url URL ...] [--netns NS]
    bench-imds-guard remove [--netns NS]
    bench-imds-guard show [--netns NS]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TABLE = "bench_imds_guard"
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")  # EC2's IPv4 and IPv6 (Nitro) endpoints
COMMAND_TIMEOUT_S = 30.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class GuardError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    address: IPAddress
    port: int | None  # None: every port

    def rule(self) -> str:
        family = "ip" if self.address.version == 4 else "ip6"
        port = f" tcp dport {self.port}" if self.port is not None else ""
        return f"meta skuid != 0 {family} daddr {self.address}{port} counter reject"


def endpoints(urls: Iterable[str] = ()) -> list[Endpoint]:
    """The metadata service's addresses (every port), plus each URL's host and port when it lives elsewhere."""
    out = [Endpoint(ipaddress.ip_address(a), None) for a in METADATA_ADDRESSES]
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url)
        if not parts.hostname:
            raise GuardError(f"metadata URL {url!r} has no host; use http://HOST[:PORT]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for address in _addresses(parts.hostname):
            if not any(e.address == address and e.port is None for e in out):
                candidate = Endpoint(address, port)
                if candidate not in out:
                    out.append(candidate)
    return out


def _addresses(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise GuardError(f"cannot resolve metadata host {host!r}: {exc}") from None
    return sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)


def ruleset(eps: Sequence[Endpoint]) -> str:
    """An nft script that replaces our table in one transaction (add, delete, define: never a gap)."""
    rules = "\n".join(f"\t\t{e.rule()}" for e in eps)
    return (f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            f"\tchain output {{\n"
            f"\t\ttype filter hook output priority filter; policy accept;\n"
            f"{rules}\n"
            f"\t}}\n"
            f"}}\n")


def _nft(args: Sequence[str], netns: str | None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    try:
        return subprocess.run([*prefix, "nft", *args], input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise GuardError("nft is not installed (Debian package nftables; scripts/install-system-deps.sh)") from None


def apply(eps: Sequence[Endpoint], netns: str | None = None) -> None:
    result = _nft(["-f", "-"], netns, ruleset(eps))
    if result.returncode != 0:
        where = f" in network namespace {netns}" if netns else ""
        raise GuardError(f"loading the metadata guard{where} failed: {result.stderr.strip()}")


def remove(netns: str | None = None) -> bool:
    """Delete our table; False when there was none."""
    result = _nft(["delete", "table", "inet", TABLE], netns)
    if result.returncode == 0:
        return True
    if "No such file" in result.stderr or "does not exist" in result.stderr:
        return False
    raise GuardError(f"removing the metadata guard failed: {result.stderr.strip()}")


def show(netns: str | None = None) -> str | None:
    result = _nft(["list", "table", "inet", TABLE], netns)
    return result.stdout if result.returncode == 0 else None


def urls_from_agent_config(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GuardError(f"{path} is unreadable: {exc}") from None
    url = data.get("spot_metadata_url", "")
    return [url] if isinstance(url, str) and url else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-imds-guard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    apply_p = sub.add_parser("apply", help="load (or replace) the guard table")
    apply_p.add_argument("--agent-config", type=Path, help="also guard this agent config's spot_metadata_url")
    apply_p.add_argument("--url", action="append", default=[], help="also guard this metadata URL's host:port")
    for p in (apply_p, sub.add_parser("remove", help="delete the guard table"),
              sub.add_parser("show", help="print the guard table")):
        p.add_argument("--netns", help="network namespace to act in (default: this one)")
    args = parser.parse_args(argv)
    try:
        if args.command == "apply":
            urls = list(args.url) + (urls_from_agent_config(args.agent_config) if args.agent_config else [])
            eps = endpoints(urls)
            apply(eps, args.netns)
            print(f"metadata guard loaded: {', '.join(f'{e.address}' + (f':{e.port}' if e.port else '') for e in eps)}"
                  " reachable by root only")
        elif args.command == "remove":
            print("metadata guard removed" if remove(args.netns) else "no metadata guard was loaded")
        else:
            text = show(args.netns)
            if text is None:
                print("no metadata guard is loaded", file=sys.stderr)
                return 1
            print(text, end="")
    except GuardError as exc:
        print(f"bench-imds-guard: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
