"""Field-level checks of what agents send; each failure names the field and what is allowed."""

from __future__ import annotations

import ipaddress
import re

from manager.errors import invalid
from manager.registry import HeartbeatData, NodeRegistration

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
MAX_MOUNTS_PER_NODE = 256
MAX_TEXT = 4096


def check_registration(node: NodeRegistration) -> None:
    if not NODE_ID.match(node.node_id):
        raise invalid(f"node_id {node.node_id[:80]!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if not HOSTNAME.match(node.hostname):
        raise invalid(f"hostname {node.hostname[:80]!r} is not a valid host name")
    if node.ip:
        try:
            ipaddress.ip_address(node.ip)
        except ValueError:
            raise invalid(f"ip {node.ip[:80]!r} is not an IP address") from None
    if len(node.agent_version) > 64:
        raise invalid("agent_version is longer than 64 characters")
    if node.role not in ("member", "manager"):
        raise invalid(f"role must be 'member' or 'manager', got {node.role[:40]!r}")
    check_capacity_values(node.capacity.cores, node.capacity.memory_bytes, node.capacity.scratch_total_bytes,
                          node.capacity.scratch_free_bytes)


def check_capacity_values(cores: int, memory: int, scratch_total: int, scratch_free: int) -> None:
    if cores < 0 or memory < 0 or scratch_total < 0 or scratch_free < 0:
        raise invalid("capacity values must not be negative")
    if scratch_free > scratch_total:
        raise invalid("scratch_free_bytes exceeds scratch_total_bytes")
    if cores > 100_000:
        raise invalid(f"cores={cores} is not plausible")


def check_heartbeat(beat: HeartbeatData) -> None:
    c = beat.capacity
    check_capacity_values(c.cores, c.memory_bytes, c.scratch_total_bytes, c.scratch_free_bytes)
    if beat.running_jobs < 0:
        raise invalid("running_jobs must not be negative")
    if len(beat.mounts) > MAX_MOUNTS_PER_NODE:
        raise invalid(f"{len(beat.mounts)} mounts reported; at most {MAX_MOUNTS_PER_NODE}")
    for mount in beat.mounts:
        if len(mount.message) > MAX_TEXT or len(mount.mount_path) > MAX_TEXT:
            raise invalid("mount report text fields are limited to 4096 characters")
