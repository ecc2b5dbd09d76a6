"""ClusterService servicer: what workspace-ctl talks to. Thin: protobuf <-> ClusterManager calls,
domain errors -> status codes. Who the caller is, whether their role allows the call, and the
activity-log lines are the AuthInterceptor's job (manager.interceptors); the servicer only reads
current_principal() where the answer depends on who asks (mount ownership, audit stimulus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from grpc import aio

from common.mountmodes import MODE_NAMES
from manager.admin import AdminService
from manager.authz import may_delete_mount
from manager.convert import member_to_pb, mount_spec_to_pb
from manager.core import ClusterManager
from manager.errors import RequestError
from manager.interceptors import current_principal
from manager.mounts import MountOutcome
from manager.web_service import WebAccessRpcs
from manager.workspace_service import WorkspaceRpcs
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc

T = TypeVar("T")


# Mixins: WebAccessRpcs (issue 19), WorkspaceRpcs (issue 20), AdminService (trust).
class ClusterService(WebAccessRpcs, WorkspaceRpcs, AdminService, cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, manager: ClusterManager) -> None:
        self._m = manager

    async def _audited(self, context: aio.ServicerContext, action: str, call: Callable[[str], Awaitable[T]],
                       **details: object) -> T:
        """Run a domain call as the authenticated user; domain errors become status codes (the
        interceptor writes the activity-log lines for `action`)."""
        try:
            return await call(current_principal().name)
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def GetStatus(self, request: cluster_pb2.GetStatusRequest,
                        context: aio.ServicerContext) -> cluster_pb2.ClusterStatus:
        return self._m.status()

    async def ListMembers(self, request: cluster_pb2.ListMembersRequest,
                          context: aio.ServicerContext) -> cluster_pb2.ListMembersResponse:
        if request.member_id:
            try:
                member = self._m.resolve_member(request.member_id)
            except RequestError as exc:
                await context.abort(exc.code, exc.message)
            history = self._m.registry.history(member.member_id)
            return cluster_pb2.ListMembersResponse(members=self._m.with_spark([member_to_pb(member, history)]))
        members = [member_to_pb(m, self._m.registry.history(m.member_id) if request.include_history else None)
                   for m in self._m.registry.all()]
        return cluster_pb2.ListMembersResponse(members=self._m.with_spark(members))

    async def Scale(self, request: cluster_pb2.ScaleRequest,
                    context: aio.ServicerContext) -> cluster_pb2.ScaleResponse:
        kind = request.WhichOneof("policy")
        if kind is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give static_members or a dynamic range")
        if kind == "static_members":
            call = lambda user: self._m.set_policy("static", request.static_members, 0, 0, user)  # noqa: E731
        else:
            call = lambda user: self._m.set_policy("dynamic", 0, request.dynamic.min_members,  # noqa: E731
                                                   request.dynamic.max_members, user)
        policy = await self._audited(context, "cluster scale", call, request=str(request).replace("\n", " "))
        return cluster_pb2.ScaleResponse(policy=policy, message="policy updated")

    async def DrainMember(self, request: cluster_pb2.DrainMemberRequest,
                          context: aio.ServicerContext) -> cluster_pb2.DrainMemberResponse:
        member = await self._audited(
            context, "cluster drain",
            lambda user: self._m.request_drain(request.member_id, request.deadline_s, f"user:{user}"),
            member=request.member_id, deadline_s=request.deadline_s)
        return cluster_pb2.DrainMemberResponse(member=member_to_pb(member), message="drain started")

    async def StartCluster(self, request: cluster_pb2.StartClusterRequest,
                           context: aio.ServicerContext) -> cluster_pb2.ClusterStatus:
        await self._audited(context, "cluster start", self._m.start_cluster)
        return self._m.status()

    async def StopCluster(self, request: cluster_pb2.StopClusterRequest,
                          context: aio.ServicerContext) -> cluster_pb2.ClusterStatus:
        await self._audited(context, "cluster stop", self._m.stop_cluster)
        return self._m.status()

    async def CreateMount(self, request: cluster_pb2.CreateMountRequest,
                          context: aio.ServicerContext) -> cluster_pb2.MountOperationResponse:
        spec = request.spec
        if spec.mode not in MODE_NAMES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unknown mount mode {spec.mode}: use read-only or read-write")
        mode = MODE_NAMES[spec.mode]
        outcome = await self._audited(
            context, "data create-mount",
            lambda user: self._m.mount_service.create(spec.mount_path, spec.source, mode, user),
            mount_path=spec.mount_path, source=spec.source, mode=mode)
        return _mount_response(outcome)

    async def DeleteMount(self, request: cluster_pb2.DeleteMountRequest,
                          context: aio.ServicerContext) -> cluster_pb2.MountOperationResponse:
        owner = next((m["created_by"] for m in self._m.store.mounts()
                      if m["mount_path"] == (request.mount_path.rstrip("/") or request.mount_path)), None)
        if owner is not None and not (decision := may_delete_mount(current_principal(), owner)).allowed:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.message)
        outcome = await self._audited(context, "data delete-mount",
                                      lambda user: self._m.mount_service.delete(request.mount_path, user),
                                      mount_path=request.mount_path)
        return _mount_response(outcome)

    async def GetMounts(self, request: cluster_pb2.GetMountsRequest,
                        context: aio.ServicerContext) -> cluster_pb2.GetMountsResponse:
        out = []
        for view in self._m.mount_service.views():
            nodes = [cluster_pb2.NodeMountState(member_id=n.member_id, state=n.state, bytes_read=n.bytes_read,
                                                errors=n.errors, message=n.message) for n in view.nodes]
            out.append(cluster_pb2.MountStatus(spec=mount_spec_to_pb(view.mount_path, view.source, view.mode),
                                               nodes=nodes))
        return cluster_pb2.GetMountsResponse(mounts=out)

    async def GetScalerLog(self, request: cluster_pb2.GetScalerLogRequest,
                           context: aio.ServicerContext) -> cluster_pb2.GetScalerLogResponse:
        tail = request.tail if request.tail > 0 else 50
        lines = await asyncio.to_thread(self._m.scaler_log_tail, min(tail, 10_000))
        return cluster_pb2.GetScalerLogResponse(lines=lines)

    async def WatchEvents(self, request: cluster_pb2.WatchEventsRequest,
                          context: aio.ServicerContext) -> AsyncIterator[cluster_pb2.ClusterEvent]:
        queue = self._m.events.subscribe()
        try:
            while True:
                event = await queue.get()
                yield cluster_pb2.ClusterEvent(at_unix=event.at, kind=event.kind, member_id=event.member_id,
                                               message=event.message)
        finally:
            self._m.events.unsubscribe(queue)


def _mount_response(outcome: MountOutcome) -> cluster_pb2.MountOperationResponse:
    return cluster_pb2.MountOperationResponse(
        spec=mount_spec_to_pb(outcome.mount_path, outcome.source, outcome.mode),
        results=[cluster_pb2.NodeResult(member_id=r.member_id, ok=r.ok, error_code=r.error_code, message=r.message)
                 for r in outcome.results],
        message=outcome.message)

