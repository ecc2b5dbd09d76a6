"""bench-manager configuration: one typed dataclass, read from a TOML file, overridden from the
command line, validated once at start (a bad value stops the daemon with a message naming it)."""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from common.addresses import parse_host_port
from common.units import parse_size

_GROUP_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

HARD_MEMBER_LIMIT = 50
MAX_HARD_LIMIT = 10_000  # the largest load measured (benchmarks/heartbeats.py --agents 10000)
MIN_SCRATCH = 1024**3  # seed: 1 GB .. 16 TB
MAX_SCRATCH = 16 * 1024**4


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ManagerConfig:
    listen: tuple[str, ...] = ("127.0.0.1:50051",)
    db: Path = Path("/var/lib/bench-manager/state.db")
    cluster_id: str = "bench"
    # TLS: the manager's certificate (signed by the cluster CA, its addresses as SANs) and key.
    tls_cert_file: Path = Path("/etc/bench/tls/manager.crt")
    tls_key_file: Path = Path("/etc/bench/tls/manager.key")
    tls_ca_file: Path = Path("/etc/bench/tls/ca.crt")  # handed to the members the manager launches
    insecure_plaintext: bool = False  # benchmarks only: serve without TLS (never on a real node)
    # The manager node's own agent is not launched by a provider: its id and credential come from here.
    host_agent_id: str = "manager"
    host_agent_credential_file: Path = Path("/etc/bench/manager-agent.credential")
    # Break-glass administrator: the credential in this file is user `root`, administrator, at every start.
    admin_credential_file: Path = Path("/etc/bench/root.credential")
    join_token_ttl_s: float = 600.0
    max_concurrent_rpcs: int = 0  # 0: 2 x hard_limit + 256 (one stream per member, plus users)
    lost_after_s: float = 30.0
    join_timeout_s: float = 300.0
    heartbeat_interval_s: float = 5.0
    provider: str = "none"  # none | local | ec2
    local_state_root: Path = Path("/var/lib/bench-cluster")
    sge: bool = True
    # Restricted workspaces: addresses (comma-separated CIDRs, e.g. the VPC subnet) every restricted
    # node may always reach besides the manager's own (manager/restrictions.py).
    cluster_cidrs: str = ""
    sge_root: Path = Path("/var/lib/gridengine")
    sge_cell: str = "default"
    mode: str = "static"  # static | dynamic
    members: int = 0
    min_members: int = 0
    max_members: int = 3
    hard_limit: int = HARD_MEMBER_LIMIT
    min_age_s: float = 300.0
    idle_s: float = 300.0
    interval_s: float = 10.0
    member_cores: int = 4
    member_memory_bytes: int = 16 * 1024**3
    headroom_cores: int = 0
    headroom_memory_bytes: int = 512 * 1024**2
    scratch_bytes: int = 0  # 0 = no ephemeral storage
    allow_small_scratch: bool = False  # tests use tiny /scratch images
    dedicated_manager: bool = False
    economy: bool = False
    max_launch_failures: int = 3
    # Handed to launched members: a dynamic member whose manager stays unreachable this long ends itself.
    member_orphan_timeout_s: float = 600.0
    stabilise_timeout_s: float = 1800.0  # an operation not settled by then is closed (and counted as failed)
    brake_backoff_s: float = 300.0
    data_root: Path = Path("/data")
    advertise_address: str = ""  # HOST:PORT members dial; default: the first listen address
    ec2: Mapping[str, Any] = field(default_factory=dict)  # the [ec2] table, read by the ec2 provider
    max_message_bytes: int = 256 * 1024
    command_timeout_s: float = 60.0
    log_format: str = "auto"
    # Spark (empty master URL: no Spark on this cluster). See manager/spark/.
    spark_master_url: str = ""  # spark://HOST:7077 on the manager's cluster address
    spark_ui_url: str = ""  # the master's web UI, reachable from the workspace node
    spark_driver_host: str = ""  # the workspace node's address members reach drivers at
    spark_python: str = ""  # interpreter for drivers, executors and slot jobs (default: the manager's)
    # Members of this Unix group may edit the kernels' spark-defaults.conf (users edit them, then restart
    # the kernel). A group missing on the node leaves the files to the manager (still readable by all).
    spark_conf_group: str = "bench-users"
    # Web access (issue 19): HTTPS on this port of every listen host, when enabled (workspace-ctl
    # cluster web-access enable). 0 picks a free port (tests).
    web_port: int = 50443
    web_sample_interval_s: float = 10.0  # history samples for the plots

    def __post_init__(self) -> None:
        problems: list[str] = []
        for address in self.listen:
            try:
                parse_host_port(address, what="listen address")
            except ValueError as exc:
                problems.append(str(exc))
        if not self.listen:
            problems.append("at least one listen address is needed")
        if self.provider not in ("none", "local", "ec2"):
            problems.append(f"provider must be none, local or ec2, got {self.provider!r}")
        if self.provider == "ec2" and not self.ec2:
            problems.append("provider ec2 needs an [ec2] table in the config file (region, image_id, ...)")
        if self.mode not in ("static", "dynamic"):
            problems.append(f"mode must be static or dynamic, got {self.mode!r}")
        if not 1 <= self.hard_limit <= MAX_HARD_LIMIT:
            problems.append(f"hard_limit must be 1..{MAX_HARD_LIMIT}, got {self.hard_limit}")
        if not 0 <= self.members <= self.hard_limit:
            problems.append(f"members must be 0..{self.hard_limit} (the hard limit), got {self.members}")
        if not 0 <= self.min_members <= self.max_members:
            problems.append(f"min ({self.min_members}) must be ≥ 0 and ≤ max ({self.max_members})")
        if self.max_members > self.hard_limit:
            problems.append(f"max ({self.max_members}) must not exceed the hard limit {self.hard_limit}")
        if not 30 <= self.join_token_ttl_s <= 3600:
            problems.append(f"join_token_ttl_s must be 30..3600 (minutes, not hours), got {self.join_token_ttl_s}")
        if self.max_concurrent_rpcs and self.max_concurrent_rpcs < 2 * self.hard_limit:
            problems.append(f"max_concurrent_rpcs ({self.max_concurrent_rpcs}) must leave room for a stream per member "
                            f"and as many calls (≥ {2 * self.hard_limit})")
        for name in ("lost_after_s", "heartbeat_interval_s", "interval_s", "command_timeout_s", "join_timeout_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lost_after_s <= self.heartbeat_interval_s:
            problems.append(f"lost_after_s ({self.lost_after_s}) must be longer than the heartbeat interval "
                            f"({self.heartbeat_interval_s})")
        for name in ("min_age_s", "idle_s", "brake_backoff_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be ≥ 0")
        if self.member_cores < 1 or self.member_memory_bytes < 256 * 1024**2:
            problems.append("member model needs ≥ 1 core and ≥ 256M memory")
        if self.usable_cores(self.member_cores) < 1:
            problems.append(f"a {self.member_cores}-core member minus headroom ({self.headroom_cores}) and the "
                            f"reserved scheduling core ({self.reserved_cores}) leaves no usable core")
        if self.scratch_bytes and not self.allow_small_scratch and not MIN_SCRATCH <= self.scratch_bytes <= MAX_SCRATCH:
            problems.append("scratch size must be between 1G and 16T (or 0 for no /scratch)")
        if not 1 <= self.member_orphan_timeout_s <= 30 * 86400:
            problems.append(f"member_orphan_timeout_s must be 1..2592000 s, got {self.member_orphan_timeout_s}")
        if not 0 <= self.web_port <= 65535:
            problems.append(f"web_port must be 0..65535, got {self.web_port}")
        if not 0.5 <= self.web_sample_interval_s <= 300:
            problems.append(f"web_sample_interval_s must be 0.5..300 seconds, got {self.web_sample_interval_s}")
        if self.max_message_bytes < 1024:
            problems.append("max_message_bytes must be ≥ 1024")
        if not self.cluster_id.replace("-", "").isalnum():
            problems.append(f"cluster_id must be letters, digits and '-', got {self.cluster_id!r}")
        if self.spark_conf_group and not _GROUP_NAME.fullmatch(self.spark_conf_group):
            problems.append(f"spark_conf_group must be a Unix group name (lower case, digits, '_', '-'; at most 32), "
                            f"got {self.spark_conf_group!r}")
        if problems:
            raise ConfigError("invalid manager configuration:\n  - " + "\n  - ".join(problems))

    @property
    def reserved_cores(self) -> int:
        """Without a dedicated manager, each member keeps one core for scheduling (seed)."""
        return 0 if self.dedicated_manager else 1

    def usable_cores(self, cores: int) -> int:
        """What a member with `cores` offers to jobs: minus headroom and the reserved core."""
        return cores - self.headroom_cores - self.reserved_cores

    @property
    def rpc_limit(self) -> int:
        return self.max_concurrent_rpcs or 2 * self.hard_limit + 256

    @property
    def scaler_log(self) -> Path:
        return self.data_root / "logs" / "sge-scaler.log"

    @property
    def activity_log(self) -> Path:
        return self.data_root / "logs" / "activity.log"


_PATH_FIELDS = {f.name for f in fields(ManagerConfig) if f.type in ("Path", Path)}
_SIZE_FIELDS = {"member_memory_bytes", "headroom_memory_bytes", "scratch_bytes", "max_message_bytes"}


def _coerce(name: str, value: Any) -> Any:
    if name in _PATH_FIELDS:
        return Path(value)
    if name in _SIZE_FIELDS:
        return parse_size(value)
    if name == "listen":
        return tuple([value] if isinstance(value, str) else value)
    return value


def load_config(path: Path | None, overrides: dict[str, Any]) -> ManagerConfig:
    """TOML file (flat keys named like the dataclass fields) + command-line overrides."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(ManagerConfig)}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
        return replace(ManagerConfig(), **coerced) if coerced else ManagerConfig()
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid manager configuration: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", type=Path, help="TOML file with the settings below (flat keys)")
    a("--listen", action="append", help="HOST:PORT to serve on (repeatable; default 127.0.0.1:50051)")
    a("--db", type=Path, help="SQLite state file")
    a("--cluster-id")
    a("--tls-cert-file", type=Path, help="the manager's TLS certificate (signed by the cluster CA)")
    a("--tls-key-file", type=Path, help="the manager's TLS private key")
    a("--tls-ca-file", type=Path, help="the cluster CA certificate handed to launched members")
    a("--insecure-plaintext", action="store_const", const=True,
      help="serve without TLS: benchmarks only, never on a node that other users can reach")
    a("--host-agent-id", help="member id of the manager node's own agent (default 'manager')")
    a("--host-agent-credential-file", type=Path, help="credential file of the manager node's own agent")
    a("--admin-credential-file", type=Path, help="credential of user root (administrator), installed at start")
    a("--join-token-ttl", dest="join_token_ttl_s", type=float, help="seconds a join token stays valid (default 600)")
    a("--max-concurrent-rpcs", type=int, help="cap on concurrent RPCs and streams (default 2 x hard limit + 256)")
    a("--member-orphan-timeout", dest="member_orphan_timeout_s", type=float,
      help="seconds without this manager after which a dynamic member ends itself (default 600)")
    a("--lost-after", dest="lost_after_s", type=float, help="seconds without heartbeat before a member is LOST")
    a("--join-timeout", dest="join_timeout_s", type=float, help="seconds a requested member gets to register")
    a("--heartbeat-interval", dest="heartbeat_interval_s", type=float)
    a("--provider", choices=["none", "local", "ec2"])
    a("--local-state-root", type=Path, help="state root of the local provider (written by bench-cluster up)")
    a("--no-sge", dest="sge", action="store_const", const=False, help="run without Sun Grid Engine")
    a("--sge-root", type=Path)
    a("--sge-cell")
    a("--mode", choices=["static", "dynamic"])
    a("--members", type=int, help="static mode: number of members")
    a("--min", dest="min_members", type=int, help="dynamic mode: minimum members")
    a("--max", dest="max_members", type=int, help="dynamic mode: maximum members")
    a("--hard-limit", type=int, help=f"largest cluster allowed (default {HARD_MEMBER_LIMIT})")
    a("--min-age", dest="min_age_s", type=float, help="seconds a member stays at least (default 300)")
    a("--idle", dest="idle_s", type=float, help="seconds idle before a member is removed")
    a("--interval", dest="interval_s", type=float, help="autoscaler poll interval in seconds")
    a("--member-cores", type=int)
    a("--member-memory", dest="member_memory_bytes", help="e.g. 16G")
    a("--headroom-cores", type=int)
    a("--headroom-memory", dest="headroom_memory_bytes")
    a("--scratch-size", dest="scratch_bytes", help="per-member /scratch size, 1G..16T")
    a("--allow-small-scratch", action="store_const", const=True, help="tests only: allow /scratch below 1G")
    a("--dedicated-manager", action="store_const", const=True)
    a("--economy", action="store_const", const=True, help="launch spot members")
    a("--max-launch-failures", type=int)
    a("--brake-backoff", dest="brake_backoff_s", type=float)
    a("--stabilise-timeout", dest="stabilise_timeout_s", type=float,
      help="seconds a scale operation gets to stabilise before it is closed as failed")
    a("--data-root", type=Path)
    a("--cluster-cidrs", help="comma-separated CIDRs of the cluster's own nodes (e.g. the VPC subnet): never "
                             "filtered by a restricted workspace's egress rules")
    a("--advertise-address", help="HOST:PORT new members dial (default: the first --listen)")
    a("--command-timeout", dest="command_timeout_s", type=float)
    a("--log-format", choices=["json", "console", "auto"])
    a("--spark-master-url", help="spark://HOST:PORT of the Spark master (enables Spark)")
    a("--spark-ui-url", help="http://HOST:PORT of the Spark master's web UI")
    a("--spark-driver-host", help="address of the workspace node that members reach Spark drivers at")
    a("--web-port", type=int, help="HTTPS port of web access, on every listen host (default 50443)")
    a("--web-sample-interval", dest="web_sample_interval_s", type=float,
      help="seconds between history samples for the web page's plots (default 10)")
    a("--spark-python", help="Python for Spark drivers/executors (default: the manager's interpreter)")
    a("--spark-conf-group", help="Unix group whose members may edit the kernels' spark-defaults.conf "
                                 "(default bench-users; empty: only the manager)")


def config_from_args(args: argparse.Namespace) -> ManagerConfig:
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    if "listen" in overrides:
        overrides["listen"] = tuple(overrides["listen"])
    return load_config(args.config, overrides)


__all__ = ["ConfigError", "ManagerConfig", "add_arguments", "config_from_args", "load_config"]
