"""Restricted workspace settings applied inside one local member, by its init (local_member), in the
member's own network and mount namespaces — the host and other members are untouched.

- upload rights off: /data/project becomes a read-only bind mount (writes fail with EROFS);
- an allowlist: nftables table `inet bench_egress` (common/egress_config.py) redirects outbound
  traffic to squid (HTTP/HTTPS) and to the egress guard (everything else), which the init then
  supervises like its other daemons. Their files live on a tmpfs private to the member
  (/run/bench-egress), readable by squid's unprivileged user and gone with the member.

apply() raises when anything cannot be set up, so a member never runs with fewer restrictions
than its workspace asks for.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

from common.allowlist import Allowlist
from common.egress_config import SQUID_USER, EgressPaths, nft_ruleset, squid_config

EGRESS_DIR = "/run/bench-egress"
SQUID = "/usr/sbin/squid"
TIMEOUT_S = 60


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")


def read_only_project(data_root: str) -> None:
    project = f"{data_root}/project"
    Path(project).mkdir(parents=True, exist_ok=True)
    _run(["mount", "--bind", project, project])
    _run(["mount", "-o", "remount,bind,ro", project])


def _resolvers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return []
    found = [line.split()[1] for line in lines if line.startswith("nameserver ") and len(line.split()) > 1]
    # IPv4 only (the table filters IPv6 to nothing); loopback resolvers mean nothing in this namespace
    return [ip for ip in found if ":" not in ip and not ip.startswith("127.")]


def start_egress(spec: dict[str, Any], workspace: dict[str, Any]) -> list[tuple[str, list[str]]]:
    allowlist = Allowlist.parse(workspace["allowlist"])  # validated by the manager; re-checked here
    Path(EGRESS_DIR).mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "bench-egress", EGRESS_DIR])
    paths = EgressPaths(EGRESS_DIR)
    proxy = pwd.getpwnam(SQUID_USER)
    # squid's TLS interception port needs a certificate even though it never bumps (splice only)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
          f"/CN={spec['hostname']} egress", "-keyout", paths.cert, "-out", paths.cert])
    Path(paths.squid_conf).write_text(squid_config(allowlist, paths))
    for name in (paths.cert, paths.state_dir):
        os.chown(name, proxy.pw_uid, proxy.pw_gid)
    os.chmod(paths.cert, 0o600)
    Path(paths.nft_file).write_text(nft_ruleset(workspace["cluster_addresses"], _resolvers()))
    _run(["squid", "-k", "parse", "-f", paths.squid_conf])
    _run(["nft", "-f", paths.nft_file])
    service = "bench" + "".join(c for c in spec["hostname"] if c.isalnum())  # shared-memory and pid names
    squid = [SQUID, "-N", "-f", paths.squid_conf, "-n", service]
    guard = [workspace["python"], "-m", "agent.egress_guard", "--node", spec["hostname"],
             "--activity-log", workspace["activity_log"], "--squid-log", paths.access_log]
    return [("squid", squid), ("egress-guard", guard)]


def apply(spec: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Set up the member's restrictions; returns the daemons (name, argv) the init must supervise."""
    workspace = spec.get("workspace") or {}
    if not workspace.get("upload", True):
        read_only_project(spec["data_root"])
    if workspace.get("allowlist"):
        return start_egress(spec, workspace)
    return []
