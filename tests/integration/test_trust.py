"""Issue 17 (control plane): TLS on every channel, a credential per member bound to its id, join
tokens, revocation. Real bench-manager and bench-agent processes over TLS sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from common.auth import bearer
from common.tls import channel_credentials, create_ca, issue_server_cert
from protos.bench.v1 import agent_pb2, agent_pb2_grpc, cluster_pb2, cluster_pb2_grpc, types_pb2
from tests.harness import VENV_BIN, ControlPlane, Daemon, Trust, free_port, wait_until

NODES = ("node-a", "node-b", "node-c")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("trust"))
    cp.start_manager()
    for node in NODES:
        cp.start_agent(node)
    wait_until(lambda: {cp.states().get(n) for n in NODES} == {"READY"}, 20, "3 READY members")
    yield cp
    cp.shutdown()


def credential(plane: ControlPlane, node: str) -> str:
    return (plane.root / node / "credential").read_text().strip()


def activity(plane: ControlPlane) -> list[dict[str, Any]]:
    path = plane.data_root / "logs" / "activity.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def code_of(coro: Any) -> grpc.StatusCode:
    async def run() -> grpc.StatusCode:
        try:
            await coro()
        except aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK
    return asyncio.run(run())


def node_info(node_id: str, hostname: str, ip: str = "") -> agent_pb2.NodeInfo:
    return agent_pb2.NodeInfo(node_id=node_id, hostname=hostname, ip=ip, agent_version="x", role="member",
                              capacity=types_pb2.Capacity(cores=2, memory_bytes=1 << 30))


def assert_unaffected(plane: ControlPlane, before: dict[str, dict[str, Any]]) -> None:
    """A and B are still READY, with the provider's hostname and IP, and A keeps heartbeating."""
    time.sleep(2 * plane.heartbeat_s + 0.5)
    after = plane.members()
    for node in ("node-a", "node-b"):
        assert after[node]["state"] == "READY", after[node]
        assert (after[node]["hostname"], after[node]["ip"]) == (before[node]["hostname"], before[node]["ip"])
    assert after["node-a"]["last_heartbeat_unix"] > before["node-a"]["last_heartbeat_unix"]


# TLS ------------------------------------------------------------------------------------------------

def test_plaintext_client_is_refused(plane: ControlPlane) -> None:
    async def call() -> None:
        async with aio.insecure_channel(plane.address) as channel:
            await cluster_pb2_grpc.ClusterServiceStub(channel).ListMembers(
                cluster_pb2.ListMembersRequest(), metadata=bearer(plane.user_token.read_text().strip()), timeout=5)
    assert code_of(call) == grpc.StatusCode.UNAVAILABLE


def test_client_trusting_another_ca_is_refused(plane: ControlPlane, tmp_path: Path) -> None:
    other = create_ca(tmp_path / "other", "other")

    async def call() -> None:
        async with aio.secure_channel(plane.address, channel_credentials(other.cert)) as channel:
            await cluster_pb2_grpc.ClusterServiceStub(channel).ListMembers(
                cluster_pb2.ListMembersRequest(), metadata=bearer(plane.user_token.read_text().strip()), timeout=5)
    assert code_of(call) == grpc.StatusCode.UNAVAILABLE
    result = plane.ctl("--ca-file", str(other.cert), "cluster", "members")
    assert result.returncode == 3 and "does not chain to the cluster CA" in result.stderr, result.stderr


def test_agent_refuses_a_manager_whose_certificate_is_foreign(plane: ControlPlane, tmp_path: Path) -> None:
    # An impostor manager on another port with a certificate from its own CA (valid for 127.0.0.1).
    impostor = Trust.create(tmp_path / "impostor")
    port = free_port()
    fake = Daemon([str(VENV_BIN / "bench-manager"), "--listen", f"127.0.0.1:{port}", "--db",
                   str(tmp_path / "impostor.db"), *impostor.manager_args(), "--no-sge", "--data-root",
                   str(tmp_path / "data"), "--log-format", "json"], tmp_path / "impostor.log").start()
    join = tmp_path / "agent" / "join.token"
    join.parent.mkdir()
    try:
        wait_until(lambda: _answers(impostor, f"127.0.0.1:{port}"), 15, "the impostor serving")
        join.write_text(impostor.enrol(f"127.0.0.1:{port}", "node-x") + "\n")
        agent = Daemon([str(VENV_BIN / "bench-agent"), "--manager", f"127.0.0.1:{port}", "--ca-file",
                        str(plane.trust.ca), "--credential-file", str(tmp_path / "agent" / "credential"),
                        "--join-token-file", str(join), "--node-id", "node-x", "--state-dir",
                        str(tmp_path / "agent"), "--scratch-dir", str(tmp_path / "agent" / "scratch"),
                        "--data-root", str(tmp_path / "data"), "--reconnect-max", "1", "--log-format", "json"],
                       tmp_path / "agent.log").start()
        try:
            wait_until(lambda: "manager not reachable" in (tmp_path / "agent.log").read_text(), 15,
                       "the agent to report the failed handshake")
            time.sleep(2)
            log = (tmp_path / "agent.log").read_text()
            assert "UNAVAILABLE" in log and "registered" not in log
            assert join.exists() and not (tmp_path / "agent" / "credential").exists()  # token never sent
        finally:
            agent.stop()
    finally:
        fake.stop()


def _answers(trust: Trust, address: str) -> bool:
    try:
        trust.admin_call(address, "WhoAmI", cluster_pb2.WhoAmIRequest())
        return True
    except grpc.RpcError:
        return False


def test_manager_certificate_names_its_addresses(tmp_path: Path) -> None:
    ca = create_ca(tmp_path, "c")
    from common.tls import certificate_sans
    cert = issue_server_cert(ca, tmp_path, ["127.0.0.1", "10.231.0.1", "manager.example"])
    assert set(certificate_sans(cert.cert)) == {"127.0.0.1", "10.231.0.1", "manager.example"}
    for path, mode in ((ca.key, 0o600), (cert.key, 0o600), (ca.cert, 0o644)):
        assert path.stat().st_mode & 0o777 == mode


# a member speaks only for itself --------------------------------------------------------------------

def test_member_credential_cannot_register_as_another_member(plane: ControlPlane) -> None:
    before = plane.members()
    b = before["node-b"]

    async def register_as_b() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            await agent_pb2_grpc.ManagerServiceStub(channel).Register(
                node_info("node-b", b["hostname"], b["ip"]), metadata=bearer(credential(plane, "node-a")), timeout=5)

    async def connect_as_b() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            call = agent_pb2_grpc.ManagerServiceStub(channel).Connect(metadata=bearer(credential(plane, "node-a")))
            await call.write(agent_pb2.AgentEvent(hello=agent_pb2.Hello(member_id="node-b")))
            async for _ in call:
                pass

    assert code_of(register_as_b) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(connect_as_b) == grpc.StatusCode.PERMISSION_DENIED
    denied = [a for a in activity(plane) if a["user"] == "member:node-a" and a["result"].startswith("denied")]
    assert any("cannot register member 'node-b'" in a["result"] for a in denied)
    assert any("cannot open the stream of 'node-b'" in a["result"] for a in denied)
    assert "refused agent call" in (plane.root / "manager.log").read_text()
    assert_unaffected(plane, before)


def test_member_cannot_change_its_hostname_or_ip(plane: ControlPlane) -> None:
    before = plane.members()
    a = before["node-a"]
    for claimed in (node_info("node-a", "evil-host", a["ip"]), node_info("node-a", a["hostname"], "10.9.9.9")):
        async def register(claimed: agent_pb2.NodeInfo = claimed) -> None:
            async with plane.trust.aio_channel(plane.address) as channel:
                await agent_pb2_grpc.ManagerServiceStub(channel).Register(
                    claimed, metadata=bearer(credential(plane, "node-a")), timeout=5)
        assert code_of(register) == grpc.StatusCode.PERMISSION_DENIED
    results = [a["result"] for a in activity(plane) if a["user"] == "member:node-a"]
    assert any("cannot claim 'evil-host'" in r for r in results)
    assert any("cannot claim '10.9.9.9'" in r for r in results)
    assert_unaffected(plane, before)


def test_second_stream_for_a_live_member_is_refused(plane: ControlPlane) -> None:
    before = plane.members()

    async def second_stream() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            call = agent_pb2_grpc.ManagerServiceStub(channel).Connect(metadata=bearer(credential(plane, "node-a")))
            await call.write(agent_pb2.AgentEvent(hello=agent_pb2.Hello(member_id="node-a")))
            async for _ in call:
                pass

    assert code_of(second_stream) == grpc.StatusCode.ALREADY_EXISTS
    assert any(a["result"].startswith("denied: ALREADY_EXISTS") and a["user"] == "member:node-a"
               for a in activity(plane))
    assert_unaffected(plane, before)  # the real agent's stream was not superseded: it still heartbeats


def test_spot_notice_with_a_past_or_far_deadline_is_ignored(plane: ControlPlane) -> None:
    # The real agent of node-b holds its stream; node-c's credential speaks for node-c on its own stream
    # after its agent is stopped (so the stream is free), with deadlines out of [now, now + 300 s].
    plane.agents["node-c"].stop()
    wait_until(lambda: _stream_free(plane, "node-c"), 15, "node-c's stream closed")
    before = plane.members()

    async def notices() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            call = agent_pb2_grpc.ManagerServiceStub(channel).Connect(metadata=bearer(credential(plane, "node-c")))
            await call.write(agent_pb2.AgentEvent(hello=agent_pb2.Hello(member_id="node-c")))
            for deadline in (time.time() - 600, time.time() + 3600):
                await call.write(agent_pb2.AgentEvent(spot_notice=agent_pb2.SpotNotice(action="terminate",
                                                                                      deadline_unix=deadline)))
            await asyncio.sleep(1.0)
            call.cancel()

    asyncio.run(notices())
    refused = [a for a in activity(plane) if a["user"] == "member:node-c" and a["action"] == "agent spot-notice"]
    assert len(refused) == 2 and all("outside [now, now + 300s]" in a["result"] for a in refused)
    assert plane.states()["node-c"] not in ("INTERRUPTED", "DRAINING")
    assert_unaffected(plane, before)
    plane.start_agent("node-c")  # back to normal for the other tests
    wait_until(lambda: plane.states().get("node-c") == "READY", 20, "node-c READY again")


def _stream_free(plane: ControlPlane, node: str) -> bool:
    return "agent disconnected" in (plane.root / "manager.log").read_text() and not plane.agents[node].alive


def test_unknown_member_is_refused_and_join_token_works_once(plane: ControlPlane) -> None:
    token = plane.trust.enrol(plane.address, "node-j", hostname="node-j", ip="")

    async def join(token: str) -> agent_pb2.JoinResponse:
        async with plane.trust.aio_channel(plane.address) as channel:
            return await agent_pb2_grpc.ManagerServiceStub(channel).Join(agent_pb2.JoinRequest(),
                                                                         metadata=bearer(token), timeout=5)

    first = asyncio.run(join(token))
    assert first.member_id == "node-j" and first.credential.startswith("bcm_")
    with pytest.raises(aio.AioRpcError) as again:
        asyncio.run(join(token))
    assert again.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # a join token is not a member credential, and a random bearer is nobody
    for bearer_value in (token, "bcm_" + "x" * 43):
        async def register(value: str = bearer_value) -> None:
            async with plane.trust.aio_channel(plane.address) as channel:
                await agent_pb2_grpc.ManagerServiceStub(channel).Register(node_info("node-j", "node-j"),
                                                                          metadata=bearer(value), timeout=5)
        assert code_of(register) == grpc.StatusCode.UNAUTHENTICATED


def test_removed_member_credential_no_longer_works(plane: ControlPlane) -> None:
    old = credential(plane, "node-b")
    assert plane.ctl("cluster", "drain", "node-b").returncode == 0
    wait_until(lambda: plane.states().get("node-b") == "TERMINATED", 40, "node-b drained and terminated")

    async def register() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            await agent_pb2_grpc.ManagerServiceStub(channel).Register(node_info("node-b", "x"),
                                                                      metadata=bearer(old), timeout=5)
    assert code_of(register) == grpc.StatusCode.UNAUTHENTICATED
    assert plane.states()["node-a"] == "READY"


def test_unknown_enum_value_is_invalid_argument(plane: ControlPlane) -> None:
    async def create() -> None:
        async with plane.trust.aio_channel(plane.address) as channel:
            spec = types_pb2.MountSpec(mount_path="/data/mounts/x", source="/data/project", mode=77)  # type: ignore[arg-type]
            await cluster_pb2_grpc.ClusterServiceStub(channel).CreateMount(
                cluster_pb2.CreateMountRequest(spec=spec), metadata=bearer(plane.user_token.read_text().strip()),
                timeout=5)
    assert code_of(create) == grpc.StatusCode.INVALID_ARGUMENT


def test_members_are_bounded_by_the_hard_limit(plane: ControlPlane) -> None:
    live = sum(1 for state in plane.states().values() if state != "TERMINATED")
    limit = 50
    for index in range(limit - live):
        plane.trust.enrol(plane.address, f"filler-{index:02d}", hostname=f"filler-{index:02d}", ip="")
    with pytest.raises(grpc.RpcError) as refused:
        plane.trust.enrol(plane.address, "one-too-many", hostname="one-too-many", ip="")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "hard limit" in refused.value.details()  # type: ignore[attr-defined]
    assert "one-too-many" not in plane.states()


def test_server_caps_concurrent_rpcs_and_streams(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, extra_manager_args=["--hard-limit", "1", "--max", "1",
                                                       "--max-concurrent-rpcs", "2"])
    cp.start_manager()
    try:
        wait_until(cp._manager_answers, 15, "the manager serving")
        admin = bearer(cp.user_token.read_text().strip())

        async def probe() -> grpc.StatusCode:
            async with cp.trust.aio_channel(cp.address) as channel:
                stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                held = [stub.WatchEvents(cluster_pb2.WatchEventsRequest(), metadata=admin) for _ in range(2)]
                await asyncio.sleep(0.5)  # both streams are open and idle on the server
                try:
                    await stub.GetStatus(cluster_pb2.GetStatusRequest(), metadata=admin, timeout=5)
                    return grpc.StatusCode.OK
                except aio.AioRpcError as exc:
                    return exc.code()
                finally:
                    for call in held:
                        call.cancel()
        assert asyncio.run(probe()) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert cp.ctl("cluster", "status").returncode == 0  # room again once the streams are gone
    finally:
        cp.shutdown()


def test_unauthenticated_calls_are_refused_before_their_body_is_parsed(plane: ControlPlane) -> None:
    async def garbage(credential: str) -> grpc.StatusCode:
        async with plane.trust.aio_channel(plane.address) as channel:
            raw = channel.unary_unary("/bench.v1.ClusterService/Scale", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
            try:
                await raw(b"\xff\xff\xff\xff\x0f", metadata=bearer(credential), timeout=5)
            except aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK
    # with a valid credential the body is parsed (and found malformed); without one it never is
    assert asyncio.run(garbage(plane.user_token.read_text().strip())) == grpc.StatusCode.INVALID_ARGUMENT
    assert asyncio.run(garbage("bcu_" + "z" * 43)) == grpc.StatusCode.UNAUTHENTICATED
