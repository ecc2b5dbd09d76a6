"""The manager's member registry as `bench-cluster` sees it (ClusterService.ListMembers over gRPC)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from common.auth import bearer
from common.tls import channel_credentials
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc

RPC_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RegistryMember:
    member_id: str
    hostname: str
    ip: str
    state: str
    role: str


class RegistryUnavailable(Exception):
    pass


def list_members(address: str, credential: str, ca_file: Path) -> list[RegistryMember]:
    try:
        with grpc.secure_channel(address, channel_credentials(ca_file)) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            response = stub.ListMembers(cluster_pb2.ListMembersRequest(), metadata=bearer(credential),
                                        timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        raise RegistryUnavailable(f"manager at {address}: {code.name if code else 'error'}: {details}") from None
    return [RegistryMember(member_id=m.member_id, hostname=m.hostname, ip=m.ip, state=m.state,
                           role=m.role or "member") for m in response.members]
