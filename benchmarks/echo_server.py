"""BENCHMARK BASELINE, not part of the product: the smallest grpc.aio server with one bidirectional
stream that sends every message straight back.

`benchmarks/heartbeats.py` drives it with the same simulated agents it points at bench-manager, so the
manager's figures can be read as a ratio to "what grpc.aio in Python costs anyway". It speaks the
agent protocol's message type (`AgentEvent`) in both directions, so protobuf parsing and encoding are
in the baseline as they are in the manager. It listens on loopback only, with TLS when given a
certificate and key (as the manager serves its agents) or plaintext, prints `LISTENING <port>` once
serving, and stops on SIGTERM or SIGINT.

    python benchmarks/echo_server.py [--port 0] [--tls-cert-file F --tls-key-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc import aio

from common.tls import server_credentials
from protos.bench.v1 import agent_pb2

SERVICE = "bench.echo.v1.Echo"
METHOD = "Stream"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
UNARY = "Unary"  # returns its request: the counterpart of the agent's Register before each session
FULL_UNARY_METHOD = f"/{SERVICE}/{UNARY}"


async def _echo(requests: AsyncIterator[agent_pb2.AgentEvent],
                context: aio.ServicerContext) -> AsyncIterator[agent_pb2.AgentEvent]:
    async for message in requests:
        yield message


async def _echo_unary(request: agent_pb2.NodeInfo, context: aio.ServicerContext) -> agent_pb2.NodeInfo:
    return request


def echo_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        METHOD: grpc.stream_stream_rpc_method_handler(
            _echo, request_deserializer=agent_pb2.AgentEvent.FromString,
            response_serializer=agent_pb2.AgentEvent.SerializeToString),
        UNARY: grpc.unary_unary_rpc_method_handler(
            _echo_unary, request_deserializer=agent_pb2.NodeInfo.FromString,
            response_serializer=agent_pb2.NodeInfo.SerializeToString),
    })


async def serve(port: int, tls: grpc.ServerCredentials | None = None, max_pending: int = 0) -> int:
    # --max-pending: the queue of calls not yet taken up, as bench-manager sets it (0: gRPC's defaults)
    options = [("grpc.server.max_pending_requests", max_pending),
               ("grpc.server.max_pending_requests_hard_limit", max_pending)] if max_pending else []
    server = aio.server(options=options)
    server.add_generic_rpc_handlers((echo_handler(),))
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, tls) if tls is not None else server.add_insecure_port(address)
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
    parser.add_argument("--max-pending", type=int, default=0,
                        help="calls queued before the server takes them up (default: gRPC's, 1,000 / 3,000)")
    parser.add_argument("--tls-cert-file", type=Path, help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key-file", type=Path, help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        parser.error("--tls-cert-file and --tls-key-file go together")
    tls = server_credentials(args.tls_cert_file, args.tls_key_file) if args.tls_cert_file else None
    return asyncio.run(serve(args.port, tls, max(0, args.max_pending)))


if __name__ == "__main__":
    sys.exit(main())
