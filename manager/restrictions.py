"""The restricted-workspace settings in force, as every node's agent receives them: in its Registration
and, when a cluster start puts new settings in force, in an ApplyRestrictions command to every agent
connected (the manager node's own included). Agents apply them themselves (agent/restrictions.py),
so a local member and an EC2 instance are restricted by the same code.

The addresses a restricted node always reaches (the cluster's own): the manager's address, the
operator's `cluster_cidrs` (e.g. the VPC subnet on EC2) and, on a local cluster, the bridge's
manager and member slots.
"""

from __future__ import annotations

import asyncio
import ipaddress

from common.addresses import parse_host_port
from common.logging import get_logger
from manager.config import ManagerConfig
from manager.sessions import AgentUnavailable, SessionTable
from manager.workspace_settings import WorkspaceSettings
from protos.bench.v1 import agent_pb2

log = get_logger("restrictions")


def cluster_addresses(config: ManagerConfig) -> list[str]:
    found: list[str] = [c.strip() for c in config.cluster_cidrs.split(",") if c.strip()]
    for address in (config.advertise_address, *config.listen):
        if not address:
            continue
        try:
            host, _ = parse_host_port(address, what="address")
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue  # a name, or not an address: the operator's cluster_cidrs must cover it
        if ip.version == 4 and not ip.is_unspecified and not ip.is_loopback:
            found.append(f"{ip}/32")
    if config.provider == "local":
        from manager.providers.local_config import LocalClusterConfig

        try:
            found += LocalClusterConfig.load(config.local_state_root).cluster_addresses()
        except (OSError, ValueError, TypeError) as exc:
            log.error("local cluster addresses unknown; restricted members reach only the manager", error=str(exc))
    return list(dict.fromkeys(found))


def to_pb(settings: WorkspaceSettings, addresses: list[str]) -> agent_pb2.WorkspaceRestrictions:
    return agent_pb2.WorkspaceRestrictions(allowlist=list(settings.allowlist), upload=settings.upload,
                                           cluster_addresses=addresses)


async def push(sessions: SessionTable, restrictions: agent_pb2.WorkspaceRestrictions, timeout_s: float) -> None:
    """To every connected agent; one that is not connected gets them at its next registration."""
    async def one(member_id: str) -> None:
        command = agent_pb2.ManagerCommand(apply_restrictions=agent_pb2.ApplyRestrictions(restrictions=restrictions))
        try:
            result = await sessions.send(member_id, command, timeout_s)
        except (AgentUnavailable, TimeoutError) as exc:
            log.warning("restrictions not sent; the node gets them when it registers", member=member_id,
                        error=str(exc))
            return
        if result.ok:
            log.info("restrictions applied", member=member_id, result=result.message)
        else:
            log.error("a node could not apply the workspace restrictions", member=member_id,
                      code=result.error_code, error=result.message)

    await asyncio.gather(*(one(m) for m in sessions.connected_ids()))
