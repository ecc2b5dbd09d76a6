"""The egress guard of a restricted node: every refused outbound connection, reset and recorded.

Runs in the node's network namespace next to squid, started and supervised by the node's agent
(agent/restrictions.py). Two jobs, each turning a refusal into one entry (user, node, destination,
reason) in the agent's refusal spool, which the agent forwards to the manager's activity log
(agent/refusals.py):
- nftables sends outbound TCP for ports other than 80/443 here; the guard reads the destination the
  connection was meant for (SO_ORIGINAL_DST), records it and, once the client speaks (or after a
  second), closes with SO_LINGER 0, so the client sees "connection reset by peer";
- it follows squid's access log for the requests and TLS connections squid refused (destination not
  in the allowlist, or a name that does not resolve to the address connected to).

Usage: python -m agent.egress_guard --node NAME --spool PATH --squid-log PATH [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import pwd
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from common import activity_file
from common.egress_config import GUARD_PORT

SO_ORIGINAL_DST = 80
UNKNOWN = "unknown"
POLL_S = 0.5
HOLD_S = 1.0  # longest a refused connection is held before its reset (see Guard.serve)
MAX_HELD = 512
ACTION = "connection refused"


@dataclass(frozen=True)
class Refusal:
    client: str  # ip:port of the connecting socket on this node
    destination: str  # ip:port it was meant for
    name: str  # the Host / SNI it named, if any
    reason: str
    user: str = ""  # the local user, if squid's log line names one (a 9th field)


def parse_squid_line(line: str) -> Refusal | None:
    """A refusal from one line of squid's `bench` log format (common.egress_config.LOG_FORMAT), or None."""
    parts = line.split()
    if len(parts) not in (8, 9):
        return None
    _, client, result, method, url, sni, _, destination = parts[:8]
    user = parts[8] if len(parts) == 9 and parts[8] != "-" else ""
    code, _, status = result.partition("/")
    if code == "TCP_DENIED":
        reason = "not in the workspace's allowlist"
    elif status == "409":
        reason = "the name asked for does not resolve to the address connected to (Host/SNI mismatch)"
    else:
        return None
    name = sni if sni != "-" else _host_of(url, method)
    return Refusal(client, destination, name, reason, user)


def _host_of(url: str, method: str) -> str:
    authority = url if method == "CONNECT" else url.split("://", 1)[-1].split("/", 1)[0]
    host = authority.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(host.strip("[]"))
        return ""  # an IP literal names nothing
    except ValueError:
        return host


def user_of(client: str, proc_net_tcp: str = "/proc/net/tcp") -> str:
    """The login of the local process that owns the client socket (ip:port), if it still exists."""
    ip, _, port = client.rpartition(":")
    try:
        wanted = f"{socket.htonl(int(ipaddress.IPv4Address(ip))):08X}:{int(port):04X}"
        with open(proc_net_tcp) as handle:
            next(handle)
            for row in handle:
                fields = row.split()
                # 01 ESTABLISHED, 02 SYN_SENT: a live socket (a TIME_WAIT row says uid 0 for anyone's)
                if fields[1] == wanted and fields[3] in ("01", "02"):
                    return _login(int(fields[7]))
    except (OSError, ValueError, StopIteration):
        pass
    return UNKNOWN


def _login(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


class Guard:
    def __init__(self, node: str, activity_log: Path, squid_log: Path, port: int) -> None:
        self.node = node
        self.activity_log = activity_log
        self.squid_log = squid_log
        self.port = port
        self.stopping = threading.Event()

    def record(self, refusal: Refusal, user: str) -> None:
        details: dict[str, Any] = {"node": self.node, "destination": refusal.destination, "reason": refusal.reason}
        if refusal.name:
            details["name"] = refusal.name
        try:
            activity_file.append(self.activity_log, activity_file.entry(user, ACTION, "reset", **details))
        except OSError as exc:
            print(f"egress-guard: cannot write {self.activity_log}: {exc}", file=sys.stderr, flush=True)

    # direct connections to other ports --------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        """Record each redirected connection at once and reset it when the client first speaks, or after
        HOLD_S. A reset sent straight after accept can reach the client before its non-blocking connect()
        is confirmed, and curl then reports "could not connect" instead of "reset by peer" (1 time in 5
        measured): holding the connection that long makes every client see the same, documented reset."""
        listener.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        held: dict[socket.socket, float] = {}  # connection -> when it is reset at the latest
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                wait_s = min([POLL_S, *(deadline - now for deadline in held.values())])
                for key, _ in selector.select(max(wait_s, 0.0)):
                    if key.fileobj is listener:
                        self._accept_all(listener, selector, held)
                    elif isinstance(key.fileobj, socket.socket):
                        self._reset(key.fileobj, selector, held)  # the client spoke
                now = time.monotonic()
                for conn in [c for c, deadline in held.items() if deadline <= now]:
                    self._reset(conn, selector, held)
        finally:
            for conn in list(held):
                self._reset(conn, selector, held)
            selector.close()

    def _accept_all(self, listener: socket.socket, selector: selectors.BaseSelector,
                    held: dict[socket.socket, float]) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            client = f"{peer[0]}:{peer[1]}"
            destination = self.original_destination(conn)
            if destination is None:  # not redirected here by nftables (the agent checking the guard listens)
                conn.close()
                continue
            self.record(Refusal(client, destination, "", "only HTTP (80) and HTTPS (443) to allowed "
                                "hosts leave a restricted workspace"), user_of(client))
            conn.setblocking(False)
            held[conn] = time.monotonic() + HOLD_S
            selector.register(conn, selectors.EVENT_READ)
            if len(held) > MAX_HELD:  # a flood: the oldest goes at once rather than the guard's memory
                self._reset(min(held, key=held.__getitem__), selector, held)

    @staticmethod
    def original_destination(conn: socket.socket) -> str | None:
        """Where the client meant to connect before nftables redirected it here; None if it was not."""
        try:
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        except OSError:
            return None
        port, packed = struct.unpack_from("!2xH4s", raw)
        return f"{socket.inet_ntoa(packed)}:{port}"

    @staticmethod
    def _reset(conn: socket.socket, selector: selectors.BaseSelector, held: dict[socket.socket, float]) -> None:
        held.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        conn.close()

    # squid's refusals -------------------------------------------------------------------------
    def follow_squid(self) -> None:
        position = 0
        partial = ""
        while not self.stopping.is_set():
            try:
                with self.squid_log.open(errors="replace") as handle:
                    if os.fstat(handle.fileno()).st_size < position:
                        position = 0  # truncated or replaced
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
            except FileNotFoundError:
                chunk = ""
            lines = (partial + chunk).split("\n")
            partial = lines.pop()
            for line in lines:
                refusal = parse_squid_line(line)
                if refusal is not None:
                    self.record(refusal, refusal.user or user_of(refusal.client))
            self.stopping.wait(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egress-guard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", required=True)
    parser.add_argument("--spool", type=Path, required=True, help="refusals, one JSON object a line")
    parser.add_argument("--squid-log", type=Path, required=True)
    parser.add_argument("--port", type=int, default=GUARD_PORT)
    args = parser.parse_args(argv)
    guard = Guard(args.node, args.spool, args.squid_log, args.port)
    listener = socket.create_server(("127.0.0.1", args.port), reuse_port=False)

    def on_term(signum: int, frame: FrameType | None) -> None:
        guard.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    follower = threading.Thread(target=guard.follow_squid, name="squid-log", daemon=True)
    follower.start()
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} egress-guard: {args.node} listening on 127.0.0.1:{args.port}",
          flush=True)
    guard.serve(listener)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
