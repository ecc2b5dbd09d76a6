"""ManagerService servicer: agents register and hold a bidirectional command stream. Thin: it
translates protobuf to domain calls on ClusterManager and back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from common.logging import get_logger
from manager.convert import capacity_from_pb, mount_report_from_pb, mount_spec_to_pb
from manager.core import ClusterManager
from manager.credentials import CredentialRefused
from manager.errors import RequestError
from manager.identity import GONE
from manager.interceptors import current_principal
from manager.registry import HeartbeatData, NodeRegistration
from manager.sessions import AgentSession, SessionBusy
from manager.validation import check_registration
from protos.bench.v1 import agent_pb2, agent_pb2_grpc

log = get_logger("agent-service")

HELLO_TIMEOUT_S = 10.0


class AgentService(agent_pb2_grpc.ManagerServiceServicer):
    def __init__(self, manager: ClusterManager) -> None:
        self._manager = manager

    async def Join(self, request: agent_pb2.JoinRequest, context: aio.ServicerContext) -> agent_pb2.JoinResponse:
        principal = current_principal()
        record = self._manager.registry.get(principal.name) if principal.name else None
        if record is not None and record.state in GONE:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"member {principal.name} is {record.state.value.lower()}: its join token is void")
        try:
            member_id, credential = self._manager.credentials.redeem_join_token(self._bearer(context))
        except CredentialRefused as exc:
            # Not yet bound: the provider is still recording the launch; the agent retries.
            code = grpc.StatusCode.UNAVAILABLE if not principal.name else grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(exc))
        log.info("member joined", member=member_id)
        self._manager.activity.record(f"member:{member_id}", "agent join", "ok", target=member_id)
        return agent_pb2.JoinResponse(member_id=member_id, credential=credential)

    @staticmethod
    def _bearer(context: aio.ServicerContext) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                return value.removeprefix("Bearer ").strip()
        return ""

    async def Register(self, request: agent_pb2.NodeInfo, context: aio.ServicerContext) -> agent_pb2.Registration:
        principal = current_principal()
        claimed = NodeRegistration(node_id=request.node_id or principal.name, hostname=request.hostname,
                                   ip=request.ip, agent_version=request.agent_version,
                                   capacity=capacity_from_pb(request.capacity), role=request.role or "member")
        try:
            check_registration(claimed)  # malformed is INVALID_ARGUMENT before any identity question
            node = self._manager.identity.registration(principal, claimed)
            member, mounts = self._manager.register(node)
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        return agent_pb2.Registration(
            member_id=member.member_id, cluster_id=self._manager.cluster_id,
            heartbeat_interval_ms=int(self._manager.config.heartbeat_interval_s * 1000),
            mounts=[mount_spec_to_pb(m.mount_path, m.source, m.mode) for m in mounts],
            dynamic=member.is_member and self._manager.policy()["mode"] == "dynamic",
            restrictions=self._manager.restrictions_pb())

    async def Connect(self, request_iterator: AsyncIterator[agent_pb2.AgentEvent],
                      context: aio.ServicerContext) -> AsyncIterator[agent_pb2.ManagerCommand]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the first message on Connect must be a Hello within {HELLO_TIMEOUT_S:.0f}s")
        if first.WhichOneof("event") != "hello" or not first.hello.member_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message on Connect must be a Hello naming the member id from Register")
        member_id = first.hello.member_id
        principal = current_principal()
        try:
            self._manager.identity.hello(principal, member_id)
        except RequestError as refused:
            await context.abort(refused.code, refused.message)
        if self._manager.registry.get(member_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"member {member_id!r} is unknown: call Register first")
        try:
            session = self._manager.sessions.attach(member_id)
        except SessionBusy as busy:
            self._manager.identity.refuse(principal, "agent connect", str(busy), grpc.StatusCode.ALREADY_EXISTS)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{busy}; a second stream is refused")
        # Every session starts by converging the node on the stored mount set.
        session.outbox.put_nowait(self._manager.mount_service.sync_command())
        log.info("agent connected", member=member_id)
        reader = asyncio.create_task(self._read_events(member_id, request_iterator, context, session))
        reader.add_done_callback(lambda _reader: session.wake())
        try:
            while not session.closed.is_set() and not reader.done():
                command = await session.outbox.get()
                if command is not None and not session.closed.is_set() and not reader.done():
                    yield command
            if reader.done() and not reader.cancelled() and (exc := reader.exception()) is not None:
                if isinstance(exc, RequestError):
                    await context.abort(exc.code, exc.message)
                raise exc
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._manager.sessions.detach(session)
            log.info("agent disconnected", member=member_id)

    async def _read_events(self, member_id: str, events: AsyncIterator[agent_pb2.AgentEvent],
                           context: aio.ServicerContext, session: AgentSession) -> None:
        async for event in events:
            if session.closed.is_set():
                return
            kind = event.WhichOneof("event")
            if kind == "heartbeat":
                hb = event.heartbeat
                self._manager.heartbeat(member_id, HeartbeatData(
                    capacity=capacity_from_pb(hb.capacity), running_jobs=hb.running_jobs,
                    mounts=tuple(mount_report_from_pb(m) for m in hb.mounts), draining=hb.draining,
                    agent_version=hb.agent_version))
            elif kind == "result":
                self._manager.sessions.resolve(member_id, event.result)
            elif kind == "spot_notice":
                notice = event.spot_notice
                if self._manager.identity.spot_deadline_ok(current_principal(), notice.deadline_unix,
                                                           self._manager.clock()):
                    self._manager.on_spot_notice(member_id, notice.action[:32], notice.deadline_unix)
            elif kind == "connection_refused":
                refused = event.connection_refused
                self._manager.on_connection_refused(member_id, refused.user, refused.destination, refused.name,
                                                    refused.reason)
            elif kind == "hello":
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Hello may only be sent once per stream")
