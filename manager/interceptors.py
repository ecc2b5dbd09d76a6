"""Server-side guards applied to every RPC before a servicer sees it.

- Authentication: every call to ManagerService or ClusterService carries a bearer credential (a
  member's, a user's, or a one-time join token); it is mapped to a Principal before the request body
  is read. A call without a valid one is UNAUTHENTICATED (and logged) and its body is never parsed.
  Health and reflection are open: they reveal nothing but liveness and the schema.
- Authorisation: manager.authz's table says which principal kind and role each method needs; a call
  beyond the caller's role is PERMISSION_DENIED with a message naming the role needed.
- Audit: every mutating ClusterService call is written to the activity log with the authenticated
  user: the attempt before the servicer acts, then the result (ok, denied, failed, cancelled, crashed).
- Well-formedness: bytes that do not parse as the request message, or a message larger than the
  configured limit, are INVALID_ARGUMENT — not the INTERNAL / RESOURCE_EXHAUSTED gRPC would give —
  and only that call fails; the server keeps serving everyone else.

The servicers read the caller with current_principal().
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio

from common.auth import AUTH_METADATA_KEY
from common.logging import get_logger
from manager.activity import ActivityLog
from manager.authz import AUDITED_METHODS, CLUSTER_SERVICE, Principal, authorise
from manager.credentials import CredentialStore

log = get_logger("auth")

GUARDED_SERVICES = ("bench.v1.ManagerService", CLUSTER_SERVICE)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served (set by AuthInterceptor)."""
    principal = _PRINCIPAL.get()
    if principal is None:  # a servicer reached without the interceptor: a wiring bug, never a caller's
        raise RuntimeError("no authenticated principal: AuthInterceptor is not installed")
    return principal


def _rebuild(handler: grpc.RpcMethodHandler, behavior_wrapper: Callable[[Any, bool], Any],
             request_deserializer: Any = None) -> grpc.RpcMethodHandler:
    """The same kind of handler as `handler`, with its behavior (and optionally deserializer) replaced."""
    deser = request_deserializer or handler.request_deserializer
    ser = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(behavior_wrapper(handler.unary_unary, False), deser, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(behavior_wrapper(handler.unary_stream, False), deser, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(behavior_wrapper(handler.stream_unary, True), deser, ser)
    return grpc.stream_stream_rpc_method_handler(behavior_wrapper(handler.stream_stream, True), deser, ser)


def _is_streaming_response(handler: grpc.RpcMethodHandler) -> bool:
    return bool(handler.unary_stream or handler.stream_stream)


def _ignore_body(_data: bytes) -> None:
    return None


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
              parse_body: bool = False) -> grpc.RpcMethodHandler:
    streaming = _is_streaming_response(handler)

    def deny(_behavior: Any, _stream_in: bool) -> Any:
        if streaming:
            async def deny_stream(_request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                await context.abort(code, message)
                yield  # pragma: no cover - abort raises
            return deny_stream

        async def deny_unary(_request: Any, context: aio.ServicerContext) -> Any:
            await context.abort(code, message)
        return deny_unary

    return _rebuild(handler, deny, None if parse_body else _ignore_body)


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return ""


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, credentials: CredentialStore, activity: ActivityLog) -> None:
        self._credentials = credentials
        self._activity = activity

    def authenticate(self, method: str, presented: str) -> Principal | None:
        if method == "Join":
            return self._credentials.join_principal(presented)
        return self._credentials.principal(presented)

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        full = handler_call_details.method
        service, _, method = full.lstrip("/").rpartition("/")
        handler = await continuation(handler_call_details)
        if handler is None or service not in GUARDED_SERVICES:
            return handler
        presented = _bearer(handler_call_details.invocation_metadata)
        principal = self.authenticate(method, presented)
        if principal is None:
            reason = "no credentials" if not presented else "invalid, expired or revoked credentials"
            log.warning("rejected unauthenticated call", method=full, reason=reason)
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED,
                             f"{reason}: {full} needs a cluster credential (metadata "
                             f"'{AUTH_METADATA_KEY}: Bearer <credential>')")
        decision = authorise(principal, service, method)
        audited = AUDITED_METHODS.get(method) if service == CLUSTER_SERVICE else None
        if not decision.allowed and audited is None:
            log.warning("refused call beyond the caller's rights", method=full, principal=principal.label,
                        reason=decision.message)
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED, decision.message)
        activity = self._activity
        streaming = _is_streaming_response(handler)

        def bind(behavior: Any, _stream_in: bool) -> Any:
            if streaming:
                async def bound_stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                    _PRINCIPAL.set(principal)
                    async for response in behavior(request, context):
                        yield response
                return bound_stream

            async def bound_unary(request: Any, context: aio.ServicerContext) -> Any:
                _PRINCIPAL.set(principal)
                if audited is None:
                    return await behavior(request, context)
                action, target_of = audited
                try:
                    target = target_of(request)
                except Exception:  # a malformed request has no target; the guard answers it
                    target = ""
                user = principal.label
                activity.record(user, action, "attempt", target=target)
                if not decision.allowed:
                    activity.record(user, action, f"denied: {decision.message}", target=target)
                    log.warning("refused call beyond the caller's rights", method=full, principal=user,
                                reason=decision.message)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.message)
                try:
                    response = await behavior(request, context)
                except asyncio.CancelledError:
                    activity.record(user, action, "cancelled", target=target)
                    raise
                except aio.AbortError:
                    code = context.code()
                    label = "denied" if code == grpc.StatusCode.PERMISSION_DENIED else "failed"
                    code_name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                    activity.record(user, action, f"{label}: {code_name}: {context.details() or ''}",
                                    target=target)
                    raise
                except Exception as exc:
                    activity.record(user, action, f"crashed: {type(exc).__name__}: {exc}"[:500], target=target)
                    raise
                activity.record(user, action, "ok", target=target)
                return response
            return bound_unary

        return _rebuild(handler, bind)


class _Malformed:
    """Stands in for a request that failed to parse, so the behavior can answer INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class MessageGuardInterceptor(aio.ServerInterceptor):
    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes

    def _deserializer(self, original: Callable[[bytes], Message]) -> Callable[[bytes], Any]:
        limit = self._max

        def deserialize(data: bytes) -> Any:
            if len(data) > limit:
                return _Malformed(f"message of {len(data)} bytes exceeds the limit of {limit} bytes")
            try:
                return original(data)
            except (DecodeError, ValueError, RuntimeError) as exc:
                return _Malformed(f"request is not a valid protobuf message: {exc}")
        return deserialize

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        streaming = _is_streaming_response(handler)

        def guard(behavior: Any, stream_in: bool) -> Any:
            async def check(request: Any, context: aio.ServicerContext) -> None:
                if isinstance(request, _Malformed):
                    log.warning("rejected malformed request", method=method, reason=request.reason)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)

            async def checked_stream(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
                async for request in requests:
                    await check(request, context)
                    yield request

            if streaming:
                async def guarded_streaming(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                    if stream_in:
                        request = checked_stream(request, context)
                    else:
                        await check(request, context)
                    async for response in behavior(request, context):
                        yield response
                return guarded_streaming

            async def guarded_unary(request: Any, context: aio.ServicerContext) -> Any:
                if stream_in:
                    request = checked_stream(request, context)
                else:
                    await check(request, context)
                return await behavior(request, context)
            return guarded_unary

        return _rebuild(handler, guard, self._deserializer(handler.request_deserializer))
