"""Where members come from: the small interface every node provider implements.

The manager's reconciler only ever talks to this interface; `local` (Linux namespaces on this
machine) and `ec2` (boto3) implement it. Implementations never block the event loop: blocking work
(subprocesses, boto3 calls) runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class NodeState(StrEnum):
    PENDING = "pending"  # asked for, not yet running
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class NodeSpec:
    """What to launch: one member of the cluster's resource model."""

    cluster_id: str
    cores: int
    memory_bytes: int
    scratch_bytes: int
    manager_address: str  # host:port the member's agent dials
    # One per node, in order: node i boots with join_tokens[i] (single use, minutes) and exchanges it
    # for its own credential; create() returns the nodes in the same order.
    join_tokens: tuple[str, ...] = ()
    ca_cert_pem: str = ""  # the cluster CA the member's agent pins (public)
    spot: bool = False  # economy mode
    labels: dict[str, str] = field(default_factory=dict)
    # A member of a dynamic cluster whose manager stays unreachable this long ends itself (agent/orphan.py).
    orphan_timeout_s: float = 600.0


@dataclass(frozen=True)
class ProviderNode:
    node_id: str  # the provider's id; also the member id in the manager's registry
    hostname: str
    ip: str
    state: NodeState
    launched_at_unix: float
    spot: bool = False


class ProviderError(Exception):
    """A provider call failed; `retryable` says whether backing off and trying again can help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class NodeProvider(Protocol):
    name: str

    async def create(self, count: int, spec: NodeSpec) -> list[ProviderNode]:
        """Launch `count` nodes, node i with spec.join_tokens[i]; return them in that order.
        All-or-nothing: on failure, nodes already launched are terminated
        before ProviderError is raised, so no node is ever leaked."""
        ...

    async def terminate(self, node_ids: Sequence[str]) -> None:
        """Terminate the nodes; idempotent (unknown or already-gone ids are not an error)."""
        ...

    async def list(self) -> list[ProviderNode]:
        """Every node of this cluster the provider knows about, not yet terminated."""
        ...
