"""Domain records the manager keeps about its members (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from manager.lifecycle import MemberState


@dataclass(frozen=True)
class Capacity:
    cores: int = 0
    memory_bytes: int = 0
    scratch_total_bytes: int = 0
    scratch_free_bytes: int = 0
    load1: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "memory_bytes": self.memory_bytes,
            "scratch_total_bytes": self.scratch_total_bytes,
            "scratch_free_bytes": self.scratch_free_bytes,
            "load1": self.load1,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capacity:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class MountStateView:
    mount_path: str
    source: str
    mode: str
    state: str
    bytes_read: int = 0
    errors: int = 0
    message: str = ""


@dataclass(frozen=True)
class MemberRecord:
    member_id: str
    state: MemberState
    state_since: float
    hostname: str = ""
    ip: str = ""
    role: str = "member"
    joined_at: float = 0.0
    capacity: Capacity = field(default_factory=Capacity)
    agent_version: str = ""
    last_heartbeat: float = 0.0
    running_jobs: int = 0
    sge_configured: bool = False
    spot: bool = False
    drain: dict[str, Any] = field(default_factory=dict)  # persisted drain progress (manager.drain)
    mounts: tuple[MountStateView, ...] = ()

    def with_changes(self, **changes: Any) -> MemberRecord:
        return replace(self, **changes)

    @property
    def is_member(self) -> bool:
        """A cluster member (the manager node's own agent is not one)."""
        return self.role == "member"


@dataclass(frozen=True)
class TransitionRecord:
    member_id: str
    from_state: str
    to_state: str
    at: float
    stimulus: str
    reason: str
