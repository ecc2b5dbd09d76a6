"""bench-agent configuration: a typed dataclass from TOML + command-line overrides, validated once."""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from agent.fastmount.engine import ENGINE_CHOICES
from agent.node_shutdown import CHOICES as SHUTDOWN_CHOICES
from common.addresses import parse_host_port
from common.units import parse_size


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    manager: str = "127.0.0.1:50051"
    ca_file: Path = Path("/etc/bench/tls/ca.crt")  # the cluster CA: the only trust root for the manager
    # The member's own credential; made at first start by exchanging the one-time join token.
    credential_file: Path = Path("/var/lib/bench-agent/credential")
    join_token_file: Path = Path("/etc/bench/join.token")
    node_id: str = ""  # default: the hostname
    role: str = "member"
    state_dir: Path = Path("/var/lib/bench-agent")
    scratch_dir: Path = Path("/scratch")
    data_root: Path = Path("/data")
    heartbeat_interval_s: float = 5.0
    cores: int = 0  # 0 = measure with psutil
    memory_bytes: int = 0  # 0 = measure with psutil
    advertise_ip: str = ""
    spot_metadata_url: str = ""  # e.g. http://169.254.169.254 ; empty = not watching
    spot_poll_s: float = 5.0
    reconnect_max_s: float = 5.0  # cap of the exponential reconnect backoff
    log_format: str = "auto"
    fastmount_engine: str = "auto"  # auto | native | python (see agent/fastmount/engine.py)
    # A dynamic member whose manager has not answered for this long takes no new jobs, lets running
    # ones finish (at most orphan_job_grace_s), wipes /scratch and ends its node (agent/orphan.py).
    orphan_timeout_s: float = 600.0
    orphan_job_grace_s: float = 3600.0
    node_shutdown: str = "none"  # none | init (local member) | poweroff (EC2); see agent/node_shutdown.py
    # Restricted workspaces: filter this node's outbound traffic when the workspace has an allowlist
    # (agent/restrictions.py). Off only where the agent shares a network namespace it must not own:
    # bench-cluster's manager node, which is the developer's machine itself.
    enforce_egress: bool = True

    def __post_init__(self) -> None:
        problems = []
        try:
            parse_host_port(self.manager, what="--manager")
        except ValueError as exc:
            problems.append(str(exc))
        if self.node_id and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", self.node_id):
            problems.append(f"--node-id {self.node_id!r} must be 1-63 letters, digits, '.', '_' or '-'")
        if self.role not in ("member", "manager"):
            problems.append(f"--role must be member or manager, got {self.role!r}")
        if not 0.05 <= self.heartbeat_interval_s <= 300:
            problems.append(f"--heartbeat-interval must be 0.05..300 s, got {self.heartbeat_interval_s}")
        if self.cores < 0 or self.memory_bytes < 0:
            problems.append("--cores and --memory must not be negative")
        if self.fastmount_engine not in ENGINE_CHOICES:
            problems.append(f"--fastmount-engine must be one of {', '.join(ENGINE_CHOICES)}, "
                            f"got {self.fastmount_engine!r}")
        if not 0.1 <= self.reconnect_max_s <= 300:
            problems.append("reconnect_max_s must be 0.1..300 s")
        if not 1 <= self.orphan_timeout_s <= 30 * 86400:
            problems.append(f"--orphan-timeout must be 1..2592000 s, got {self.orphan_timeout_s}")
        if not 0 <= self.orphan_job_grace_s <= 30 * 86400:
            problems.append(f"--orphan-job-grace must be 0..2592000 s, got {self.orphan_job_grace_s}")
        if self.node_shutdown not in SHUTDOWN_CHOICES:
            problems.append(f"--node-shutdown must be one of {', '.join(SHUTDOWN_CHOICES)}, got {self.node_shutdown!r}")
        if problems:
            raise ConfigError("invalid agent configuration:\n  - " + "\n  - ".join(problems))


_PATHS = {"ca_file", "credential_file", "join_token_file", "state_dir", "scratch_dir", "data_root"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", type=Path, help="TOML file with the settings below (flat keys)")
    a("--manager", help="HOST:PORT of bench-manager")
    a("--ca-file", type=Path, help="cluster CA certificate the manager's certificate must chain to")
    a("--credential-file", type=Path, help="this member's credential (written at first start from the join token)")
    a("--join-token-file", type=Path, help="one-time join token, exchanged for the credential at first start")
    a("--node-id", help="stable node identity (default: hostname)")
    a("--role", choices=["member", "manager"])
    a("--state-dir", type=Path)
    a("--scratch-dir", type=Path)
    a("--data-root", type=Path)
    a("--heartbeat-interval", dest="heartbeat_interval_s", type=float)
    a("--cores", type=int, help="report this many cores (the provider's resource model) instead of measuring")
    a("--memory", dest="memory_bytes", help="report this much memory (e.g. 16G) instead of measuring")
    a("--advertise-ip")
    a("--spot-metadata-url", help="instance metadata base URL to watch for spot interruption notices")
    a("--spot-poll", dest="spot_poll_s", type=float)
    a("--reconnect-max", dest="reconnect_max_s", type=float)
    a("--log-format", choices=["json", "console", "auto"])
    a("--orphan-timeout", dest="orphan_timeout_s", type=float,
      help="seconds without the manager after which a dynamic member ends itself (default 600)")
    a("--orphan-job-grace", dest="orphan_job_grace_s", type=float,
      help="once orphaned, seconds running jobs may still take before the node goes (default 3600)")
    a("--node-shutdown", choices=SHUTDOWN_CHOICES,
      help="how this node ends itself when orphaned: init (local member), poweroff (EC2), none")
    a("--fastmount-engine", choices=ENGINE_CHOICES,
      help="engine of read-only mounts: native (C, kernel passthrough) for local sources, python (pyfuse3, "
           "parallel read-ahead) for remote ones; auto picks by the source's filesystem")
    a("--no-egress-enforcement", dest="enforce_egress", action="store_const", const=False,
      help="never filter this node's outbound traffic, even in a restricted workspace (upload rights still "
           "apply); for a node that shares its network namespace with a host that must stay unfiltered")


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values.update(tomllib.loads(args.config.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file {args.config} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {args.config} is not valid TOML: {exc}") from None
        unknown = sorted(set(values) - {f.name for f in fields(AgentConfig)})
        if unknown:
            raise ConfigError(f"config file {args.config}: unknown setting(s) {', '.join(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    try:
        for key in _PATHS & set(values):
            values[key] = Path(values[key])
        if "memory_bytes" in values:
            values["memory_bytes"] = parse_size(values["memory_bytes"])
        return replace(AgentConfig(), **values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid agent configuration: {exc}") from None
