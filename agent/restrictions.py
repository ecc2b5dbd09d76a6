"""Restricted workspace settings, applied by this node's agent itself: the same code on every node
whatever its provider (a local member's namespaces, an EC2 instance, the manager node).

The manager sends the settings in force at registration (Registration.restrictions) and again when a
cluster start puts new ones in force (ApplyRestrictions). Applying is idempotent and converges:
- upload rights off: /data/project becomes a read-only bind mount in the node's mount namespace
  (common/project_rights.py); on again: that mount is removed;
- an allowlist: nftables table `inet bench_egress` (common/egress_config.py) sends outbound traffic to
  squid (HTTP Host / HTTPS SNI) and to the egress guard (everything else, agent/egress_guard.py),
  which the agent then supervises. Their files live in /run/bench-egress, a tmpfs of the node's own
  (a local member's is private to its mount namespace), readable by squid's unprivileged user.
  Without an allowlist the table is deleted and both daemons stop.

A node whose agent runs with `enforce_egress = false` (bench-cluster's manager node: this machine's
own host namespace) keeps its outbound traffic unfiltered; upload rights still apply there.

apply() raises RestrictionError when anything cannot be set up: the agent then does not start its
session (no heartbeat, the member never becomes READY) rather than run with fewer restrictions than
its workspace asks for.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent import hostns
from common import project_rights
from common.allowlist import Allowlist, InvalidEntry
from common.daemon import wait_for_stop
from common.egress_config import (
    GUARD_PORT,
    HTTP_INTERCEPT_PORT,
    HTTPS_INTERCEPT_PORT,
    SQUID_USER,
    TABLE,
    EgressPaths,
    nft_ruleset,
    squid_config,
)
from common.logging import get_logger
from protos.bench.v1 import agent_pb2

log = get_logger("agent-restrictions")

EGRESS_DIR = Path("/run/bench-egress")
SQUID = "/usr/sbin/squid"
TIMEOUT_S = 60
STOP_GRACE_S = 5.0
RESTART_MAX_S = 30.0
LISTEN_TIMEOUT_S = 30.0


class RestrictionError(Exception):
    pass


@dataclass(frozen=True)
class Restrictions:
    allowlist: tuple[str, ...] = ()
    upload: bool = True
    cluster_addresses: tuple[str, ...] = ()


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RestrictionError(f"{' '.join(argv)}: {exc}") from None
    if proc.returncode != 0:
        raise RestrictionError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def resolvers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return []
    found = [line.split()[1] for line in lines if line.startswith("nameserver ") and len(line.split()) > 1]
    # IPv4 only (the table filters IPv6 to nothing); loopback resolvers are reached over lo anyway
    return [ip for ip in found if ":" not in ip and not ip.startswith("127.")]


@dataclass
class _Daemon:
    name: str
    argv: list[str]
    log_file: Path
    pid_file: Path
    proc: subprocess.Popen[bytes] | None = None
    failures: int = 0
    restart_at: float = 0.0

    def start(self) -> None:
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd="/", start_new_session=True)
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_GRACE_S)
        self.proc = None
        self.pid_file.unlink(missing_ok=True)


def _stop_stale(pid_file: Path, marker: str) -> None:
    """A daemon left by an earlier agent of this node (the agent restarted): ended before a new one starts."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return
    if marker not in cmdline:
        return  # the pid was reused by something else
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


class RestrictionEnforcer:
    def __init__(self, data_root: Path, state_dir: Path, spool: Path, enforce_egress: bool = True,
                 extra_exempt: tuple[str, ...] = (), egress_dir: Path = EGRESS_DIR) -> None:
        self._data_root = data_root
        self._marker = state_dir / project_rights.MARKER_NAME
        self._log_dir = state_dir  # the daemons' output outlives the node's tmpfs, for troubleshooting
        self._spool = spool  # the guard's refusals, forwarded by the agent (agent/refusals.py)
        self._enforce_egress = enforce_egress
        self._extra_exempt = extra_exempt  # e.g. the metadata service the agent itself watches
        self._paths = EgressPaths(str(egress_dir))
        self._daemons: list[_Daemon] = []
        self._egress_applied: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.applied: Restrictions | None = None
        self._lock = asyncio.Lock()

    async def apply(self, wanted: Restrictions) -> str:
        """Converge on `wanted`; returns what was done, for the command result and the log."""
        async with self._lock:
            return await asyncio.to_thread(self._apply, wanted)

    def _apply(self, wanted: Restrictions) -> str:
        try:
            # in the node's mount namespace, where jobs see it (agent/hostns.py)
            project_rights.apply(self._data_root, wanted.upload, self._marker, hostns.host_command)
        except OSError as exc:
            raise RestrictionError(f"upload rights: {exc}") from None
        done = ["project data " + ("writable" if wanted.upload else "read-only")]
        if not wanted.allowlist:
            if self._enforce_egress and (self._egress_applied is not None or self._table_present()):
                self._lift_egress()
            done.append("outbound traffic not filtered")
        elif not self._enforce_egress:
            done.append("outbound traffic not filtered on this node (egress enforcement off in its agent config)")
        else:
            key = (wanted.allowlist, wanted.cluster_addresses)
            if key != self._egress_applied or not self._daemons:
                self._start_egress(wanted)
                self._egress_applied = key
            done.append(f"outbound traffic limited to {len(wanted.allowlist)} allowed destination(s)")
        self.applied = wanted
        message = "; ".join(done)
        log.info("workspace restrictions applied", upload=wanted.upload, allowlist=list(wanted.allowlist),
                 result=message)
        return message

    # egress -----------------------------------------------------------------------------------
    def _table_present(self) -> bool:
        return subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, timeout=TIMEOUT_S,
                              check=False).returncode == 0

    def _start_egress(self, wanted: Restrictions) -> None:
        try:
            allowlist = Allowlist.parse(list(wanted.allowlist))  # validated by the manager; re-checked here
        except InvalidEntry as exc:
            raise RestrictionError(f"allowlist: {exc}") from None
        self._stop_daemons()
        paths = self._paths
        state = Path(paths.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if not _mounted(state):
            _run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "bench-egress", str(state)])
        try:
            proxy = pwd.getpwnam(SQUID_USER)
        except KeyError:
            raise RestrictionError(f"no user {SQUID_USER!r} for squid: install squid-openssl") from None
        if not Path(paths.cert).exists():
            # squid's TLS interception port needs a certificate even though it never bumps (splice only)
            _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                  f"/CN={socket.gethostname()} egress", "-keyout", paths.cert, "-out", paths.cert])
        Path(paths.squid_conf).write_text(squid_config(allowlist, paths))
        for name in (paths.cert, paths.state_dir):
            os.chown(name, proxy.pw_uid, proxy.pw_gid)
        os.chmod(paths.cert, 0o600)
        exempt = [*wanted.cluster_addresses, *self._extra_exempt]
        Path(paths.nft_file).write_text(nft_ruleset(exempt, resolvers()))
        _run([SQUID, "-k", "parse", "-f", paths.squid_conf])
        _run(["nft", "-f", paths.nft_file])
        service = "bench" + "".join(c for c in socket.gethostname() if c.isalnum())  # shared-memory names
        self._daemons = [
            _Daemon("squid", [SQUID, "-N", "-f", paths.squid_conf, "-n", service], self._log_dir / "squid.log",
                    state / "squid.agent.pid"),
            _Daemon("egress-guard", [sys.executable, "-m", "agent.egress_guard", "--node", socket.gethostname(),
                                     "--spool", str(self._spool), "--squid-log", paths.access_log],
                    self._log_dir / "egress-guard.log", state / "egress-guard.pid"),
        ]
        for daemon in self._daemons:
            _stop_stale(daemon.pid_file, paths.state_dir)
            daemon.start()
        # Applied = enforced: the node reports READY only after this, so nothing may be redirected to a
        # port nobody listens on yet (a refused connection instead of the documented reset).
        self._wait_listening([HTTP_INTERCEPT_PORT, HTTPS_INTERCEPT_PORT, GUARD_PORT])

    def _wait_listening(self, ports: list[int]) -> None:
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        waiting = list(ports)
        while waiting:
            for port in list(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    waiting.remove(port)
                except OSError:
                    pass
            if not waiting:
                return
            exited = [d.name for d in self._daemons if d.proc is not None and d.proc.poll() is not None]
            if exited or time.monotonic() > deadline:
                self._stop_daemons()
                raise RestrictionError(f"egress daemons not serving (exited: {', '.join(exited) or 'none'}; "
                                       f"ports not listening: {waiting}); see {self._log_dir}/squid.log and "
                                       "egress-guard.log")
            time.sleep(0.1)

    def _lift_egress(self) -> None:
        self._stop_daemons()
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, timeout=TIMEOUT_S, check=False)
        self._egress_applied = None

    def _stop_daemons(self) -> None:
        for daemon in self._daemons:
            daemon.stop()
        self._daemons = []

    # supervision ------------------------------------------------------------------------------
    def check_daemons(self, now: float) -> None:
        """Restart an exited squid or guard with capped exponential backoff (as systemd would)."""
        for daemon in self._daemons:
            if daemon.proc is None or daemon.proc.poll() is None:
                continue
            if daemon.restart_at == 0.0:
                daemon.failures += 1
                daemon.restart_at = now + min(RESTART_MAX_S, 0.5 * 2 ** (daemon.failures - 1))
                log.error("egress daemon exited; restarting", daemon=daemon.name, rc=daemon.proc.returncode,
                          retry_in_s=round(daemon.restart_at - now, 1), log=str(daemon.log_file))
            elif now >= daemon.restart_at:
                daemon.restart_at = 0.0
                daemon.start()

    async def supervise(self, stop: asyncio.Event, tick_s: float = 1.0) -> None:
        while not stop.is_set():
            async with self._lock:
                self.check_daemons(time.monotonic())
            await wait_for_stop(stop, tick_s)

    async def close(self) -> None:
        """The agent stops: so do its daemons. The nftables table stays, so the node stays restricted."""
        async with self._lock:
            await asyncio.to_thread(self._stop_daemons)


def from_pb(pb: agent_pb2.WorkspaceRestrictions) -> Restrictions:
    return Restrictions(allowlist=tuple(pb.allowlist), upload=pb.upload, cluster_addresses=tuple(pb.cluster_addresses))
