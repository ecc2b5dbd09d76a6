"""Server-side guards applied to every RPC before a servicer sees it.

- Authentication: agents must present the cluster token on ManagerService, workspace-ctl the user
  token on ClusterService; anything else is UNAUTHENTICATED (and logged). Health and reflection are
  open: they reveal nothing but liveness and the schema.
- Well-formedness: bytes that do not parse as the request message, or a message larger than the
  configured limit, are INVALID_ARGUMENT — not the INTERNAL / RESOURCE_EXHAUSTED gRPC would give —
  and only that call fails; the server keeps serving everyone else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio

from common.auth import AUTH_METADATA_KEY, token_matches
from common.logging import get_logger

log = get_logger("auth")

AGENT_SERVICE_PREFIX = "/bench.v1.ManagerService/"
CLUSTER_SERVICE_PREFIX = "/bench.v1.ClusterService/"

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


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


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, agent_token: str, user_token: str) -> None:
        self._agent_token = agent_token
        self._user_token = user_token

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(AGENT_SERVICE_PREFIX):
            expected, who = self._agent_token, "agent"
        elif method.startswith(CLUSTER_SERVICE_PREFIX):
            expected, who = self._user_token, "user"
        else:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get(AUTH_METADATA_KEY)
        handler = await continuation(handler_call_details)
        if handler is None or token_matches(presented if isinstance(presented, str) else None, expected):
            return handler
        reason = "no credentials" if not presented else "invalid credentials"
        log.warning("rejected unauthenticated call", method=method, reason=reason, expected=who)
        message = (f"{reason}: {method} needs the cluster's {who} token "
                   f"(metadata '{AUTH_METADATA_KEY}: Bearer <token>')")
        streaming = _is_streaming_response(handler)

        def deny(_behavior: Any, _stream_in: bool) -> Any:
            if streaming:
                async def deny_stream(_request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
                    yield  # pragma: no cover - abort raises
                return deny_stream

            async def deny_unary(_request: Any, context: aio.ServicerContext) -> Any:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            return deny_unary

        return _rebuild(handler, deny)


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
