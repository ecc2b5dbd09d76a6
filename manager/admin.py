"""The administrator's RPCs of ClusterService: users and their roles, enrolling nodes, and WhoAmI.

A mixin of ClusterService (same gRPC service, one servicer); thin like the rest: protobuf <->
CredentialStore / registry calls. Role checks and audit lines come from the AuthInterceptor.
"""

from __future__ import annotations

import ipaddress

import grpc
from grpc import aio

from manager.authz import Role
from manager.core import ClusterManager
from manager.errors import RequestError
from manager.interceptors import current_principal
from manager.lifecycle import MemberState
from manager.validation import HOSTNAME, NODE_ID
from protos.bench.v1 import cluster_pb2

ROLE_TO_PB = {Role.VIEWER: cluster_pb2.ROLE_VIEWER, Role.CONTRIBUTOR: cluster_pb2.ROLE_CONTRIBUTOR,
              Role.ADMINISTRATOR: cluster_pb2.ROLE_ADMINISTRATOR}
PB_TO_ROLE = {v: k for k, v in ROLE_TO_PB.items()}


def live_member_count(manager: ClusterManager) -> int:
    return sum(1 for m in manager.registry.in_any_order() if m.is_member and m.state != MemberState.TERMINATED)


class AdminService:
    _m: ClusterManager

    async def WhoAmI(self, request: cluster_pb2.WhoAmIRequest,
                     context: aio.ServicerContext) -> cluster_pb2.WhoAmIResponse:
        me = current_principal()
        role = ROLE_TO_PB[me.role] if me.role is not None else cluster_pb2.ROLE_UNSPECIFIED
        return cluster_pb2.WhoAmIResponse(name=me.name, role=role)

    async def AddUser(self, request: cluster_pb2.AddUserRequest,
                      context: aio.ServicerContext) -> cluster_pb2.AddUserResponse:
        role = PB_TO_ROLE.get(request.role)
        if role is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unknown role {request.role}: use viewer, contributor or administrator")
        assert role is not None
        try:
            user, secret = self._m.credentials.add_user(request.name, role, current_principal().name)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return cluster_pb2.AddUserResponse(
            user=cluster_pb2.User(name=user.name, role=ROLE_TO_PB[user.role], created_at_unix=user.created_at,
                                  created_by=user.created_by), credential=secret)

    async def ListUsers(self, request: cluster_pb2.ListUsersRequest,
                        context: aio.ServicerContext) -> cluster_pb2.ListUsersResponse:
        return cluster_pb2.ListUsersResponse(users=[
            cluster_pb2.User(name=u.name, role=ROLE_TO_PB[u.role], created_at_unix=u.created_at,
                             created_by=u.created_by) for u in self._m.credentials.users()])

    async def RemoveUser(self, request: cluster_pb2.RemoveUserRequest,
                         context: aio.ServicerContext) -> cluster_pb2.RemoveUserResponse:
        if not self._m.credentials.remove_user(request.name):
            known = ", ".join(u.name for u in self._m.credentials.users()) or "none"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.name[:64]!r} (users: {known})")
        return cluster_pb2.RemoveUserResponse(message=f"user {request.name} removed; their credential no longer works")

    async def AddNode(self, request: cluster_pb2.AddNodeRequest,
                      context: aio.ServicerContext) -> cluster_pb2.AddNodeResponse:
        try:
            self._check_new_node(request)
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        ttl = self._m.config.join_token_ttl_s
        self._m.registry.request(request.node_id, request.hostname or request.node_id, request.ip,
                                 f"user:{current_principal().name}", "enrolled by an administrator")
        (token,) = self._m.credentials.issue_join_tokens(1, ttl, member_id=request.node_id)
        return cluster_pb2.AddNodeResponse(node_id=request.node_id, join_token=token,
                                           expires_at_unix=self._m.clock() + ttl)

    def _check_new_node(self, request: cluster_pb2.AddNodeRequest) -> None:
        bad = grpc.StatusCode.INVALID_ARGUMENT
        if not NODE_ID.match(request.node_id) or request.node_id == self._m.config.host_agent_id:
            raise RequestError(bad, f"node id {request.node_id[:80]!r} must be 1-63 letters, digits, '.', '_' or "
                               f"'-' and not {self._m.config.host_agent_id!r}")
        if request.hostname and not HOSTNAME.match(request.hostname):
            raise RequestError(bad, f"hostname {request.hostname[:80]!r} is not a valid host name")
        if request.ip:
            try:
                ipaddress.ip_address(request.ip)
            except ValueError:
                raise RequestError(bad, f"ip {request.ip[:80]!r} is not an IP address") from None
        existing = self._m.registry.get(request.node_id)
        if existing is not None:
            raise RequestError(grpc.StatusCode.ALREADY_EXISTS,
                               f"node {request.node_id} is already a member ({existing.state.value})")
        limit = self._m.config.hard_limit
        if live_member_count(self._m) >= limit:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"the cluster already has {limit} members (the hard limit)")
