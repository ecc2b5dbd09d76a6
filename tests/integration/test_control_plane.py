"""Issue 3 acceptance: manager + agents as real processes over real gRPC sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.auth import bearer
from protos.bench.v1 import agent_pb2, agent_pb2_grpc, cluster_pb2, cluster_pb2_grpc, types_pb2
from tests.harness import ControlPlane, wait_until

NODES = ("node-a", "node-b", "node-c")


@pytest.fixture
def plane(tmp_path: Path):
    cp = ControlPlane(tmp_path)
    cp.start_manager()
    for node in NODES:
        cp.start_agent(node)
    wait_until(lambda: all_ready(cp), 15, "3 READY members")
    yield cp
    cp.shutdown()


def all_ready(cp: ControlPlane) -> bool:
    states = cp.states()
    return sorted(states) == sorted(NODES) and set(states.values()) == {"READY"}


def test_three_agents_become_ready(plane: ControlPlane) -> None:
    # the fixture waited (15 s bound) for all three READY
    members = plane.members()
    for node in NODES:
        assert members[node]["capacity"]["cores"] > 0
        assert int(members[node]["capacity"]["memory_bytes"]) > 0
    status = plane.ctl("cluster", "status")
    assert status.returncode == 0 and "READY=3" in status.stdout


def test_manager_kill9_restart_keeps_members(plane: ControlPlane) -> None:
    before = plane.members()
    assert plane.manager is not None
    plane.manager.kill9()
    assert plane.ctl("cluster", "members").returncode == 3  # unreachable, clear exit code
    plane.start_manager()
    wait_until(lambda: all_ready(plane), 15, "the same 3 members READY after a manager restart")
    after = plane.members()
    assert sorted(after) == sorted(before)  # same ids, none duplicated
    for node in NODES:
        assert after[node]["joined_at_unix"] == before[node]["joined_at_unix"]  # state kept, not re-created


def test_killed_agent_becomes_lost_and_rejoins_as_same_member(plane: ControlPlane) -> None:
    plane.agents["node-b"].kill9()
    wait_until(lambda: plane.states().get("node-b") == "LOST", plane.lost_after_s + 10, "node-b LOST")
    assert plane.states()["node-a"] == "READY"
    plane.start_agent("node-b")
    wait_until(lambda: all_ready(plane), 15, "node-b READY again")
    assert len(plane.members()) == 3
    story = plane.ctl("cluster", "members", "--history", "node-b", "--output", "json")
    history = [(t["from_state"], t["to_state"], t["stimulus"]) for t in
               json.loads(story.stdout)["members"][0]["history"]]
    assert ("READY", "LOST", "heartbeat-timeout") in history
    assert history[-1][1] == "READY"


def test_wrong_token_is_unauthenticated(plane: ControlPlane, tmp_path: Path) -> None:
    bad = tmp_path / "bad.token"
    bad.write_text("x" * 40)
    result = plane.ctl("cluster", "members", token_file=bad)
    assert result.returncode == 4 and "refused the credential" in result.stderr
    # a member's credential is not a user credential either
    member_credential = plane.root / "node-a" / "credential"
    denied = plane.ctl("cluster", "members", token_file=member_credential)
    assert denied.returncode == 5 and "needs a user credential" in denied.stderr

    async def agent_with_bad_token() -> grpc.StatusCode:
        async with plane.trust.aio_channel(plane.address) as channel:
            stub = agent_pb2_grpc.ManagerServiceStub(channel)
            try:
                await stub.Register(agent_pb2.NodeInfo(node_id="intruder", hostname="intruder"),
                                    metadata=bearer("y" * 40), timeout=5)
            except aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert asyncio.run(agent_with_bad_token()) == grpc.StatusCode.UNAUTHENTICATED
    assert "intruder" not in plane.members()
    log = (plane.root / "manager.log").read_text()
    assert "rejected unauthenticated call" in log


def test_malformed_and_oversized_messages_are_invalid_argument(plane: ControlPlane) -> None:
    token = (plane.root / "node-a" / "credential").read_text().strip()

    async def probe() -> dict[str, grpc.StatusCode]:
        codes: dict[str, grpc.StatusCode] = {}
        async with plane.trust.aio_channel(plane.address) as channel:
            raw = channel.unary_unary("/bench.v1.ManagerService/Register",
                                      request_serializer=lambda b: b, response_deserializer=lambda b: b)
            for name, payload in {"garbage": b"\xff\xff\xff\xff\x0f", "oversized": b"\x12" + b"\x80\x80\x40" +
                                  b"a" * (1024 * 1024)}.items():
                try:
                    await raw(payload, metadata=bearer(token), timeout=5)
                    codes[name] = grpc.StatusCode.OK
                except aio.AioRpcError as exc:
                    codes[name] = exc.code()
            stub = agent_pb2_grpc.ManagerServiceStub(channel)
            for name, node in {
                "bad-node-id": agent_pb2.NodeInfo(node_id="../etc", hostname="ok"),
                "bad-hostname": agent_pb2.NodeInfo(node_id="n1", hostname="not a host!"),
                "negative-capacity": agent_pb2.NodeInfo(node_id="n1", hostname="n1",
                                                        capacity=types_pb2.Capacity(cores=-4)),
            }.items():
                try:
                    await stub.Register(node, metadata=bearer(token), timeout=5)
                    codes[name] = grpc.StatusCode.OK
                except aio.AioRpcError as exc:
                    codes[name] = exc.code()
            # the manager keeps serving everyone else
            cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
            listing = await cluster.ListMembers(cluster_pb2.ListMembersRequest(),
                                                metadata=bearer(plane.user_token.read_text().strip()), timeout=5)
            codes["still-serving"] = grpc.StatusCode.OK if len(listing.members) == 3 else grpc.StatusCode.UNKNOWN
        return codes

    codes = asyncio.run(probe())
    assert codes == {"garbage": grpc.StatusCode.INVALID_ARGUMENT, "oversized": grpc.StatusCode.INVALID_ARGUMENT,
                     "bad-node-id": grpc.StatusCode.INVALID_ARGUMENT, "bad-hostname": grpc.StatusCode.INVALID_ARGUMENT,
                     "negative-capacity": grpc.StatusCode.INVALID_ARGUMENT, "still-serving": grpc.StatusCode.OK}
    assert all_ready(plane)


def test_ctl_unreachable_manager_is_a_clear_error(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)  # no manager started
    result = cp.ctl("cluster", "status")
    assert result.returncode == 3
    assert "unreachable" in result.stderr and cp.address in result.stderr


def test_health_and_reflection_are_served(plane: ControlPlane) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def probe() -> tuple[int, list[str]]:
        async with plane.trust.aio_channel(plane.address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="bench.v1.ClusterService"), timeout=5)
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            services: list[str] = []
            async for response in stream:
                services = [s.name for s in response.list_services_response.service]
                break
            return health.status, services

    status, services = asyncio.run(probe())
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "bench.v1.ManagerService" in services and "bench.v1.ClusterService" in services


def test_scale_policy_is_validated_and_shown(plane: ControlPlane) -> None:
    for bad, message in ((("--min", "3", "--max", "2"), "must not exceed --max"),
                         (("--min", "0", "--max", "51"), "hard limit"),
                         (("--static", "-1"), "0..50"),
                         (("--min", "1"), "give --static N, or both --min A and --max B"),
                         (("--static", "2", "--min", "1", "--max", "2"), "not both")):
        result = plane.ctl("cluster", "scale", *bad)
        assert result.returncode in (1, 2) and message in result.stderr, (bad, result.stderr)
    ok = plane.ctl("cluster", "scale", "--min", "1", "--max", "4")
    assert ok.returncode == 0 and "dynamic, 1..4" in ok.stdout
    status = json.loads(plane.ctl("cluster", "status", "--output", "json").stdout)
    assert status["policy"] == {"mode": "dynamic", "static_members": 0, "min_members": 1, "max_members": 4}
    pools = json.loads(plane.ctl("compute", "get-pools", "--output", "json").stdout)["pools"]
    assert pools[0]["type"] == "dynamic" and pools[0]["max"] == 4
    assert plane.ctl("compute", "scale-pool", "--member-count", "2").returncode == 0
    assert json.loads(plane.ctl("compute", "get-cluster-details", "-o", "json").stdout)["policy"]["mode"] == "static"
    audit = [json.loads(line) for line in (plane.data_root / "logs" / "activity.log").read_text().splitlines()]
    results = [a["result"].split(":")[0] for a in audit if a["action"] == "cluster scale"]
    assert results[-4:] == ["attempt", "ok", "attempt", "ok"]  # the attempt before acting, the result after
    assert any(a["result"].startswith("failed: INVALID_ARGUMENT") for a in audit)
    assert {a["user"] for a in audit if a["action"] == "cluster scale"} == {"root"}  # from the credential
