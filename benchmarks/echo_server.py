"""BENCHMARK BASELINE, not part of the product: the smallest grpc.aio server with one bidirectional
stream that sends every message straight back.

`benchmarks/heartbeats.py` drives it with the same simulated agents it points at bench-manager, so the
manager's figures can be read as a ratio to "what grpc.aio in Python costs anyway". It speaks the
agent protocol's message type (`AgentEvent`) in both directions, so protobuf parsing and encoding are
in the baseline as they are in the manager. It listens on loopback only, prints `LISTENING <port>` once
serving, and stops on SIGTERM or SIGINT.

    python benchmarks/echo_server.py [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from protos.bench.v1 import agent_pb2

SERVICE = "bench.echo.v1.Echo"
METHOD = "Stream"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


async def _echo(requests: AsyncIterator[agent_pb2.AgentEvent],
                context: aio.ServicerContext) -> AsyncIterator[agent_pb2.AgentEvent]:
    async for message in requests:
        yield message


def echo_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        METHOD: grpc.stream_stream_rpc_method_handler(
            _echo, request_deserializer=agent_pb2.AgentEvent.FromString,
            response_serializer=agent_pb2.AgentEvent.SerializeToString),
    })


async def serve(port: int) -> int:
    server = aio.server()
    server.add_generic_rpc_handlers((echo_handler(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        print(f"echo_server: cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 2
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"LISTENING {bound}", flush=True)
    await stop.wait()
    await server.stop(grace=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: any free port)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    return asyncio.run(serve(args.port))


if __name__ == "__main__":
    sys.exit(main())
