"""Behaviour every NodeProvider must show, as plain async functions any provider's tests can call.

Each check takes a provider and a NodeSpec for its cluster, leaves nothing running behind (it
terminates what it created even when an assertion fails) and asserts only through the NodeProvider
interface, so `local` and `ec2` are held to the same contract:

    from tests.integration import provider_contract as contract
    asyncio.run(contract.check_round_trip(provider, spec))

`ALL_CHECKS` lists the checks that need nothing but (provider, spec); the others take extra arguments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from manager.providers.base import NodeProvider, NodeSpec, NodeState, ProviderError, ProviderNode

ALIVE = {NodeState.PENDING, NodeState.RUNNING}


async def _live_ids(provider: NodeProvider) -> set[str]:
    return {node.node_id for node in await provider.list() if node.state in ALIVE}


async def _cleanup(provider: NodeProvider, nodes: Sequence[ProviderNode]) -> None:
    if nodes:
        await provider.terminate([node.node_id for node in nodes])


async def check_round_trip(provider: NodeProvider, spec: NodeSpec) -> None:
    """create(2) → list shows both → terminate → list no longer shows them."""
    assert isinstance(provider, NodeProvider)
    before = await _live_ids(provider)
    nodes = await provider.create(2, spec)
    try:
        assert len(nodes) == 2
        ids = {node.node_id for node in nodes}
        assert len(ids) == 2, f"node ids must be unique, got {[n.node_id for n in nodes]}"
        assert not ids & before, "create() returned ids of nodes that already existed"
        assert ids <= await _live_ids(provider), "list() must show freshly created nodes"
        for node in nodes:
            assert node.state in ALIVE
            assert node.hostname, f"{node.node_id} has no hostname"
            assert node.ip, f"{node.node_id} has no IP address"
            assert node.launched_at_unix > 0
        await provider.terminate(sorted(ids))
        assert not ids & await _live_ids(provider), "terminated nodes must leave list() (or show terminating)"
        assert await _live_ids(provider) == before, "round trip changed nodes it did not create"
    finally:
        await _cleanup(provider, nodes)


async def check_terminate_is_idempotent(provider: NodeProvider, spec: NodeSpec) -> None:
    """Terminating twice, or terminating nothing, is not an error and changes nothing else."""
    nodes = await provider.create(1, spec)
    try:
        await provider.terminate([nodes[0].node_id])
        await provider.terminate([nodes[0].node_id])
        await provider.terminate([])
        assert nodes[0].node_id not in await _live_ids(provider)
    finally:
        await _cleanup(provider, nodes)


async def check_terminate_unknown_id_is_not_an_error(provider: NodeProvider, unknown_id: str) -> None:
    before = await _live_ids(provider)
    await provider.terminate([unknown_id])
    assert await _live_ids(provider) == before


async def check_bad_counts_rejected(provider: NodeProvider, spec: NodeSpec) -> None:
    """create(0), a negative count or a non-integer fails with a non-retryable error and launches nothing."""
    before = await _live_ids(provider)
    bad_counts: list[object] = [0, -1, 2.5, True]
    for bad in bad_counts:
        with pytest.raises(ProviderError) as raised:
            await provider.create(bad, spec)  # type: ignore[arg-type]
        assert raised.value.retryable is False, f"count {bad!r}: retrying cannot help, so retryable=False"
        assert "count" in str(raised.value), f"count {bad!r}: the message must say what is wrong"
    assert await _live_ids(provider) == before


async def check_terminate_leaves_others_running(provider: NodeProvider, spec: NodeSpec) -> None:
    nodes = await provider.create(2, spec)
    try:
        await provider.terminate([nodes[0].node_id])
        live = await _live_ids(provider)
        assert nodes[0].node_id not in live
        assert nodes[1].node_id in live, "terminate() must not touch nodes it was not given"
    finally:
        await _cleanup(provider, nodes)


async def check_clusters_are_isolated(provider: NodeProvider, spec: NodeSpec, other: NodeProvider) -> None:
    """Two providers for different clusters: neither lists nor terminates the other's nodes."""
    nodes = await provider.create(1, spec)
    try:
        assert nodes[0].node_id not in await _live_ids(other)
        await other.terminate([nodes[0].node_id])
        assert nodes[0].node_id in await _live_ids(provider), "a provider terminated another cluster's node"
    finally:
        await _cleanup(provider, nodes)


ALL_CHECKS: tuple[Callable[[NodeProvider, NodeSpec], Awaitable[None]], ...] = (
    check_round_trip,
    check_terminate_is_idempotent,
    check_bad_counts_rejected,
    check_terminate_leaves_others_running,
)
