"""The manager's control loop, a reconciler in the style of Ray autoscaler v2:

observe (registry, SGE qstat/qhost, the provider's node list) → passive transitions that record
what the world already did → plan (a pure function) → active transitions, persisted first →
effects (provider calls, SGE configuration, agent commands), whose results arrive as the next
observation.
"""

from __future__ import annotations

import asyncio

from common.daemon import wait_for_stop
from common.logging import get_logger
from manager.core import ClusterManager
from manager.lifecycle import MemberEvent, MemberState

log = get_logger("reconciler")


class Reconciler:
    def __init__(self, manager: ClusterManager, sge: object | None, provider: object | None) -> None:
        self.manager = manager
        self.sge = sge
        self.provider = provider

    @classmethod
    def from_config(cls, manager: ClusterManager) -> Reconciler:
        config = manager.config
        sge = None
        if config.sge:
            from manager.sge.client import SgeClient

            sge = SgeClient(sge_root=str(config.sge_root), cell=config.sge_cell)
        provider = None
        if config.provider == "local":
            from manager.providers.local import LocalProvider

            provider = LocalProvider(cluster_id=manager.cluster_id, state_root=config.local_state_root)
        return cls(manager, sge, provider)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reconcile_once()
            except Exception:  # keep reconciling; the failure is logged with its traceback
                log.exception("reconcile pass failed")
            await wait_for_stop(stop, min(self.manager.config.interval_s, 2.0))

    async def reconcile_once(self) -> None:
        if self.sge is not None:
            await self._sge_join_pass()

    async def _sge_join_pass(self) -> None:
        """JOINING members: configure their exec host from the reported capacity, then promote to
        READY once qhost shows the host reporting."""
        manager, sge = self.manager, self.sge
        joining = [m for m in manager.registry.all() if m.is_member and m.state == MemberState.JOINING]
        if not joining:
            return
        config = manager.config
        reserved = 0 if config.dedicated_manager else 1
        for member in joining:
            if not member.sge_configured:
                cores = max(member.capacity.cores - config.headroom_cores - reserved, 1)
                memory = max(member.capacity.memory_bytes - config.headroom_memory_bytes, 256 * 1024**2)
                await sge.ensure_exec_host(member.hostname, cores, memory)  # type: ignore[attr-defined]
                manager.registry.update(member.member_id, sge_configured=True)
                log.info("exec host configured", member=member.member_id, static_cores=cores, static_mem=memory)
        hosts = {h.name: h for h in await sge.hosts()}  # type: ignore[attr-defined]
        for member in joining:
            host = hosts.get(member.hostname)
            if host is not None and host.reachable:
                manager.registry.transition(member.member_id, MemberEvent.SGE_READY, "sge-observed",
                                            "exec host reporting in qhost")
