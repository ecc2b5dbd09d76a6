"""The local cluster's settings file (`cluster.json` in the state root) and its member name pool.

`bench-cluster up` writes it; the manager's LocalProvider reads it, so the manager needs nothing but
the state root to create members that reach it. Pure data: no I/O beyond reading/writing this file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_NAME = "cluster.json"
HARD_MEMBER_LIMIT = 50
NAME_PREFIX = "bench-m"
# Everything we create on the host carries this prefix so `down` can find it without a state file.
NETNS_PREFIX = "bench-m"
HOSTS_BEGIN = "# BEGIN bench-cluster (managed by bench-cluster; removed by `bench-cluster down`)"
HOSTS_END = "# END bench-cluster"
PROCESS_MARKER = "BENCH_CLUSTER_MEMBER"
FIRST_MEMBER_HOST_OCTET = 11


@dataclass(frozen=True)
class MemberSlot:
    index: int  # 1-based
    hostname: str
    ip: str

    @property
    def netns(self) -> str:
        return self.hostname

    @property
    def host_veth(self) -> str:
        # interface names are limited to 15 characters
        return f"bv{self.index:02d}"


@dataclass(frozen=True)
class LocalClusterConfig:
    cluster_id: str
    manager_hostname: str
    grpc_port: int
    bridge: str = "benchbr0"
    subnet_prefix: str = "10.231.0"  # a /24 used only between the host and our namespaces
    data_root: str = "/data"
    sge_root: str = "/var/lib/gridengine"
    sge_cell: str = "default"
    member_pool_size: int = HARD_MEMBER_LIMIT
    # Tests shrink /scratch below the product's 1 GB floor; `bench-cluster up --allow-small-scratch`.
    min_scratch_bytes: int = 1_000_000_000
    # Economy mode: where spot members' agents poll for interruption notices (a test's IMDS server).
    spot_metadata_url: str = ""
    # "IP name" lines members resolve besides the cluster's own names (tests: stand-ins for the internet).
    extra_hosts: tuple[str, ...] = ()

    @property
    def manager_ip(self) -> str:
        return f"{self.subnet_prefix}.1"

    @property
    def manager_address(self) -> str:
        return f"{self.manager_ip}:{self.grpc_port}"

    def slot(self, index: int) -> MemberSlot:
        if not 1 <= index <= self.member_pool_size:
            raise ValueError(f"member slot {index} is outside 1..{self.member_pool_size}")
        return MemberSlot(index, f"{NAME_PREFIX}{index:02d}",
                          f"{self.subnet_prefix}.{FIRST_MEMBER_HOST_OCTET + index - 1}")

    def slots(self) -> list[MemberSlot]:
        return [self.slot(i) for i in range(1, self.member_pool_size + 1)]

    def cluster_addresses(self) -> list[str]:
        """The cluster's own addresses (manager and every member slot): never filtered by egress rules."""
        last = self.slot(self.member_pool_size).ip.rsplit(".", 1)[1]
        return [f"{self.manager_ip}/32", f"{self.slot(1).ip}-{self.subnet_prefix}.{last}"]

    def hosts_lines(self) -> list[str]:
        """name → IP for the manager and every possible member; written once, before qmaster first
        sees any member, because qmaster caches failed reverse lookups."""
        return [f"{s.ip} {s.hostname}" for s in self.slots()]

    def save(self, state_root: Path) -> None:
        state_root.mkdir(parents=True, exist_ok=True)
        tmp = state_root / f".{CONFIG_NAME}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(state_root / CONFIG_NAME)

    @classmethod
    def load(cls, state_root: Path) -> LocalClusterConfig:
        path = state_root / CONFIG_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path} is missing: the local cluster was not set up "
                                    "(run `bench-cluster up`)") from exc
        known = set(cls.__dataclass_fields__)
        if "extra_hosts" in raw:  # JSON has no tuples
            raw["extra_hosts"] = tuple(raw["extra_hosts"])
        return cls(**{k: v for k, v in raw.items() if k in known})
