"""EC2 user-data that tells a bench-node image which role to take at first boot.

One image serves both roles; packer/scripts/first-boot.sh reads this document from the instance
metadata service and writes /etc/bench/agent.toml (and manager.toml on the manager role).
Nothing long-lived travels here: a member gets a one-time join token (single use, expires within
minutes) that its agent exchanges for its own credential, and the cluster CA certificate (public). The document
is TOML behind a marker line, so first-boot can parse it with the standard library (tomllib) and
cloud-init, finding no `#!` or `#cloud-config` header, leaves it alone.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MARKER = "#bench-cluster-userdata v1"
EC2_USERDATA_LIMIT = 16 * 1024  # bytes, before base64; AWS rejects larger user-data

Role = Literal["member", "manager"]


@dataclass(frozen=True)
class NodeUserData:
    role: Role
    cluster_id: str
    manager_address: str  # host:port the agent dials
    join_token: str  # one-time; "" on the manager role (its credentials are made on the node)
    ca_cert: str  # PEM of the cluster CA (public); "" on the manager role (it creates the CA)
    cores: int
    memory_bytes: int
    scratch_bytes: int
    labels: Mapping[str, str] = field(default_factory=dict)
    orphan_timeout_s: float = 600.0  # member role: the agent's orphan_timeout_s
    # manager role only: settings for manager.toml (provider, mode, an ec2 table, ...), passed through.
    manager_settings: Mapping[str, Any] = field(default_factory=dict)


def render(data: NodeUserData) -> str:
    lines = [
        MARKER,
        f"role = {_quote(data.role)}",
        f"cluster_id = {_quote(data.cluster_id)}",
        f"manager_address = {_quote(data.manager_address)}",
        f"join_token = {_quote(data.join_token)}",
        f"ca_cert = {_quote(data.ca_cert)}",
        f"cores = {int(data.cores)}",
        f"memory_bytes = {int(data.memory_bytes)}",
        f"scratch_bytes = {int(data.scratch_bytes)}",
        f"orphan_timeout_s = {float(data.orphan_timeout_s)}",
        "",
        "[labels]",
        *(f"{_quote(key)} = {_quote(value)}" for key, value in sorted(data.labels.items())),
        "",
    ]
    if data.manager_settings:
        lines += ["[manager]",
                  *(f"{_quote(key)} = {_value(value)}" for key, value in sorted(data.manager_settings.items())),
                  ""]
    text = "\n".join(lines)
    if len(text.encode()) > EC2_USERDATA_LIMIT:
        raise ValueError(
            f"user-data is {len(text.encode())} bytes; EC2 allows {EC2_USERDATA_LIMIT} (use fewer labels)")
    return text


def parse(text: str) -> NodeUserData:
    """Inverse of render(); raises ValueError naming what is wrong."""
    if not text.startswith(MARKER):
        raise ValueError(f"user-data does not start with {MARKER!r}: not written by bench-cluster")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"user-data is not valid TOML: {error}") from None
    role = doc.get("role")
    if role not in ("member", "manager"):
        raise ValueError(f"user-data role must be member or manager, got {role!r}")
    try:
        return NodeUserData(
            role=role,
            cluster_id=str(doc["cluster_id"]),
            manager_address=str(doc["manager_address"]),
            join_token=str(doc.get("join_token", "")),
            ca_cert=str(doc.get("ca_cert", "")),
            cores=int(doc["cores"]),
            memory_bytes=int(doc["memory_bytes"]),
            scratch_bytes=int(doc["scratch_bytes"]),
            orphan_timeout_s=float(doc.get("orphan_timeout_s", 600.0)),
            labels={str(key): str(value) for key, value in doc.get("labels", {}).items()},
            manager_settings=dict(doc.get("manager", {})),
        )
    except KeyError as missing:
        raise ValueError(f"user-data lacks {missing.args[0]!r}") from None


def _value(value: Any) -> str:
    """A TOML value: scalars, lists, and tables written inline (nested as given)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_quote(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot put a {type(value).__name__} into user-data: {value!r}")


def _quote(value: str) -> str:
    # A JSON string literal is a valid TOML basic string (same escapes), and never breaks out of the line.
    return json.dumps(value, ensure_ascii=True)
