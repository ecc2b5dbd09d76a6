"""Assembles the manager's gRPC server: guards (auth, message checks), the two services, the
standard health service and server reflection."""

from __future__ import annotations

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from manager.agent_service import AgentService
from manager.cluster_service import ClusterService
from manager.core import ClusterManager
from manager.interceptors import AuthInterceptor, MessageGuardInterceptor
from protos.bench.v1 import agent_pb2, agent_pb2_grpc, cluster_pb2, cluster_pb2_grpc

SERVICE_NAMES = (
    agent_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
)


class ListenError(Exception):
    pass


def build_server(manager: ClusterManager, max_message_bytes: int,
                 max_concurrent_rpcs: int = 1024) -> tuple[aio.Server, health.aio.HealthServicer]:
    server = aio.server(
        interceptors=[AuthInterceptor(manager.credentials, manager.activity),
                      MessageGuardInterceptor(max_message_bytes)],
        # Beyond this many RPCs (agent streams included) in flight, new ones get RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            # One connection cannot open more streams than this at once.
            ("grpc.max_concurrent_streams", 64),
            # Calls that arrived but that the Python server has not taken up yet. gRPC's defaults (1,000, hard
            # limit 3,000) cancel the calls beyond them: when 10,000 agents reconnect within seconds (a manager
            # restart) most of them were CANCELLED before any handler saw them and came back as retries.
            # Queued instead, each waits its turn; the same cap as concurrent RPCs bounds the queue.
            ("grpc.server.max_pending_requests", max_concurrent_rpcs),
            ("grpc.server.max_pending_requests_hard_limit", max_concurrent_rpcs),
            # gRPC's own limit sits above ours so oversized messages reach the guard (INVALID_ARGUMENT).
            ("grpc.max_receive_message_length", max(max_message_bytes * 4, 4 * 1024 * 1024)),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    agent_pb2_grpc.add_ManagerServiceServicer_to_server(AgentService(manager), server)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterService(manager), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server, health_servicer


def bind(server: aio.Server, addresses: tuple[str, ...], tls: grpc.ServerCredentials | None) -> list[int]:
    """Listen on every address; with `tls`, TLS only (a plaintext client fails the handshake)."""
    ports = []
    for address in addresses:
        try:
            port = server.add_secure_port(address, tls) if tls is not None else server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ListenError(f"cannot listen on {address}: {exc}") from None
        if port == 0:
            raise ListenError(f"cannot listen on {address} (address in use or not on this host)")
        ports.append(port)
    return ports


async def mark_serving(health_servicer: health.aio.HealthServicer) -> None:
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


__all__ = ["ListenError", "bind", "build_server", "mark_serving"]
