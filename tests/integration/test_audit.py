"""The activity log records every mutating call with the authenticated user — the attempt before the
servicer acts, the result after — including denied, failed, cancelled and crashed calls. The real
server stack runs in this process (TLS on loopback); a crash and a hang are provoked by replacing
one domain method of the real ClusterManager."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from common.auth import bearer
from manager.authz import Role
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc
from tests.integration.fuzz_rpc import InProcessManager, in_process_manager


def lines(plane: InProcessManager) -> list[dict[str, Any]]:
    path = plane.manager.config.activity_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def scale(plane: InProcessManager, credential: str, deadline_s: float = 5) -> grpc.StatusCode:
    async with plane.channel() as channel:
        try:
            await cluster_pb2_grpc.ClusterServiceStub(channel).Scale(
                cluster_pb2.ScaleRequest(static_members=2), metadata=bearer(credential), timeout=deadline_s)
        except aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_ok_failed_crashed_cancelled_and_denied_calls_are_all_recorded(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with in_process_manager(tmp_path) as plane:
            admin = plane.admin_credential
            assert await scale(plane, admin) == grpc.StatusCode.OK

            async with plane.channel() as channel:  # failed: the domain refuses the value
                stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                with pytest.raises(aio.AioRpcError):
                    await stub.Scale(cluster_pb2.ScaleRequest(static_members=999), metadata=bearer(admin), timeout=5)

            async def crash(*_args: Any, **_kwargs: Any) -> Any:
                raise RuntimeError("disk on fire")
            monkeypatch.setattr(plane.manager, "set_policy", crash)
            assert await scale(plane, admin) == grpc.StatusCode.UNKNOWN

            async def hang(*_args: Any, **_kwargs: Any) -> Any:
                await asyncio.sleep(60)
            monkeypatch.setattr(plane.manager, "set_policy", hang)
            assert await scale(plane, admin, deadline_s=0.5) == grpc.StatusCode.DEADLINE_EXCEEDED
            for _ in range(50):  # the server notices the cancellation right after the deadline
                if any(line["result"] == "cancelled" for line in lines(plane)):
                    break
                await asyncio.sleep(0.1)

            viewer = plane.manager.credentials.add_user("val", Role.VIEWER, "test")[1]
            assert await scale(plane, viewer) == grpc.StatusCode.PERMISSION_DENIED

            results = [(line["user"], line["result"].split(":")[0]) for line in lines(plane)
                       if line["action"] == "cluster scale"]
            assert results == [("root", "attempt"), ("root", "ok"),
                               ("root", "attempt"), ("root", "failed"),
                               ("root", "attempt"), ("root", "crashed"),
                               ("root", "attempt"), ("root", "cancelled"),
                               ("val", "attempt"), ("val", "denied")]
            crashed = next(line for line in lines(plane) if line["result"].startswith("crashed"))
            assert "disk on fire" in crashed["result"] and crashed["target"] == "static_members: 2"

    asyncio.run(scenario())
