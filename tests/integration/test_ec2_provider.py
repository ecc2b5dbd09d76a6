"""Ec2Provider against a real AWS API emulator: moto in server mode on loopback, spoken to over HTTP.

Faults (throttling, a failure after RunInstances) are injected with botocore's own event hooks on the
provider's real client, so every other request still travels to the emulator.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import pytest
from moto.server import ThreadedMotoServer

from manager.providers.base import NodeSpec, NodeState, ProviderError
from manager.providers.ec2 import Ec2Provider
from manager.providers.ec2_config import Ec2Config, Ec2ConfigError
from manager.providers.ec2_userdata import parse
from tests.integration import provider_contract as contract

REGION = "eu-central-1"
GIB = 1024**3


@dataclass(frozen=True)
class Aws:
    endpoint: str
    image_id: str
    subnet_id: str
    security_group_id: str
    client: Any  # a plain boto3 client, the test's independent view of the emulator


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Iterator[Aws]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        client = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server)
        image_id = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet_id = client.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
        group = client.create_security_group(GroupName="bench", Description="bench", VpcId=vpc_id)
        group_id = group["GroupId"]
        yield Aws(moto_server, image_id, subnet_id, group_id, client)


@pytest.fixture()
def cid() -> str:
    """A fresh cluster id per test: the emulator is shared, and every view below filters by cluster."""
    return f"c-{uuid.uuid4().hex[:10]}"


def make_config(aws: Aws, **overrides: Any) -> Ec2Config:
    settings: dict[str, Any] = {
        "region": REGION, "image_id": aws.image_id, "subnet_id": aws.subnet_id,
        "security_group_ids": [aws.security_group_id],
        "instance_types": {"4/16G": "m6i.xlarge", "8/32G": "m6i.2xlarge"},
        "endpoint_url": aws.endpoint, "tags": {"team": "genomics"},
    }
    settings.update(overrides)
    return Ec2Config.from_mapping(settings)


def make_provider(aws: Aws, cluster_id: str, **overrides: Any) -> Ec2Provider:
    return Ec2Provider(make_config(aws, **overrides), cluster_id=cluster_id, retry_wait_max_s=0.05)


def make_spec(cluster_id: str, *, spot: bool = False, cores: int = 4) -> NodeSpec:
    return NodeSpec(cluster_id=cluster_id, cores=cores, memory_bytes=cores * 4 * GIB, scratch_bytes=100 * GIB,
                    manager_address="10.0.1.10:50051",
                    join_tokens=("bcj_s3cret-token", "bcj_second-token", "bcj_third-token"),
                    ca_cert_pem="CA-PEM", spot=spot,
                    labels={"workspace": "ws-42"})


def instances(aws: Aws, cluster_id: str) -> list[dict[str, Any]]:
    pages = aws.client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:bench:cluster-id", "Values": [cluster_id]}])
    return [inst for page in pages for res in page["Reservations"] for inst in res["Instances"]]


def live_instances(aws: Aws, cluster_id: str) -> list[dict[str, Any]]:
    return [i for i in instances(aws, cluster_id) if i["State"]["Name"] in ("pending", "running")]


def client_error(code: str, operation: str) -> botocore.exceptions.ClientError:
    error = {"Error": {"Code": code, "Message": f"injected {code}"}}
    return botocore.exceptions.ClientError(error, operation)  # type: ignore[arg-type]


# --- the shared NodeProvider contract -------------------------------------------------------------------


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda check: check.__name__)
def test_contract(aws: Aws, cid: str, check: Any) -> None:
    asyncio.run(check(make_provider(aws, cid), make_spec(cid)))


def test_contract_unknown_id(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)
    asyncio.run(contract.check_terminate_unknown_id_is_not_an_error(provider, "i-0123456789abcdef0"))


def test_contract_clusters_isolated(aws: Aws, cid: str) -> None:
    asyncio.run(contract.check_clusters_are_isolated(
        make_provider(aws, cid), make_spec(cid), make_provider(aws, f"{cid}-two")))


# --- EC2 specifics ---------------------------------------------------------------------------------------


def test_economy_mode_launches_one_time_spot_instances(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)
    nodes = asyncio.run(provider.create(2, make_spec(cid, spot=True)))
    assert all(node.spot for node in nodes)
    launched = live_instances(aws, cid)
    assert {i["InstanceId"] for i in launched} == {n.node_id for n in nodes}
    assert all(i.get("InstanceLifecycle") == "spot" for i in launched)
    listed = asyncio.run(provider.list())
    assert all(node.spot for node in listed)


def test_standard_mode_launches_on_demand(aws: Aws, cid: str) -> None:
    nodes = asyncio.run(make_provider(aws, cid).create(1, make_spec(cid, spot=False)))
    assert not nodes[0].spot
    assert "InstanceLifecycle" not in live_instances(aws, cid)[0]


def test_instance_type_follows_resource_model(aws: Aws, cid: str) -> None:
    asyncio.run(make_provider(aws, cid).create(1, make_spec(cid, cores=8)))
    assert live_instances(aws, cid)[0]["InstanceType"] == "m6i.2xlarge"


def test_user_data_joins_the_member_to_its_manager(aws: Aws, cid: str) -> None:
    nodes = asyncio.run(make_provider(aws, cid).create(1, make_spec(cid)))
    raw = aws.client.describe_instance_attribute(InstanceId=nodes[0].node_id, Attribute="userData")
    data = parse(base64.b64decode(raw["UserData"]["Value"]).decode())
    assert (data.role, data.cluster_id, data.manager_address, data.join_token, data.ca_cert) == (
        "member", cid, "10.0.1.10:50051", "bcj_s3cret-token", "CA-PEM")
    assert (data.cores, data.memory_bytes, data.scratch_bytes) == (4, 16 * GIB, 100 * GIB)
    assert data.labels == {"workspace": "ws-42"}


def test_an_orphaned_member_can_end_itself_without_aws_credentials(aws: Aws, cid: str) -> None:
    """The member's agent ends an orphaned member with an OS poweroff (agent/node_shutdown.py); the
    instance must turn that into a termination, and the agent must learn its orphan timeout."""
    spec = dataclasses.replace(make_spec(cid), orphan_timeout_s=42.0)
    provider = make_provider(aws, cid)
    (node,) = asyncio.run(provider.create(1, spec))
    behaviour = aws.client.describe_instance_attribute(InstanceId=node.node_id,
                                                       Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    raw = aws.client.describe_instance_attribute(InstanceId=node.node_id, Attribute="userData")
    assert parse(base64.b64decode(raw["UserData"]["Value"]).decode()).orphan_timeout_s == 42.0
    # What AWS does after the poweroff: the instance terminates, and the provider no longer lists it
    # (the manager's reconciler then records the member as gone, see Reconciler._reconcile_departed).
    aws.client.terminate_instances(InstanceIds=[node.node_id])
    assert node.node_id not in {n.node_id for n in asyncio.run(provider.list())}


def test_each_member_gets_its_own_one_time_join_token(aws: Aws, cid: str) -> None:
    nodes = asyncio.run(make_provider(aws, cid).create(2, make_spec(cid)))
    tokens = []
    for node in nodes:  # returned in join-token order
        raw = aws.client.describe_instance_attribute(InstanceId=node.node_id, Attribute="userData")
        text = base64.b64decode(raw["UserData"]["Value"]).decode()
        tokens.append(parse(text).join_token)
        assert "cluster_token" not in text
    assert tokens == ["bcj_s3cret-token", "bcj_second-token"]


def test_every_instance_is_tagged_at_launch(aws: Aws, cid: str) -> None:
    nodes = asyncio.run(make_provider(aws, cid).create(2, make_spec(cid)))
    for instance in live_instances(aws, cid):
        tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        assert tags["bench:cluster-id"] == cid
        assert tags["bench:role"] == "member"
        assert tags["team"] == "genomics"
        assert tags["Name"] == f"bench-{cid}-member"
    assert len(nodes) == 2


def test_members_get_private_address_and_hostname(aws: Aws, cid: str) -> None:
    nodes = asyncio.run(make_provider(aws, cid).create(1, make_spec(cid)))
    instance = live_instances(aws, cid)[0]
    assert nodes[0].ip == instance["PrivateIpAddress"]
    assert nodes[0].hostname == instance["PrivateDnsName"]
    assert nodes[0].state == NodeState.RUNNING


def test_failure_after_launch_terminates_what_was_launched(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)

    def describe_fails(**_kwargs: Any) -> None:
        raise client_error("InternalError", "DescribeInstances")

    provider.client.meta.events.register("before-call.ec2.DescribeInstances", describe_fails)
    with pytest.raises(ProviderError) as raised:
        asyncio.run(provider.create(3, make_spec(cid)))
    assert "terminated 3 instance(s)" in str(raised.value)
    launched = instances(aws, cid)
    assert len(launched) == 3, "the fault must strike after RunInstances really launched"
    assert live_instances(aws, cid) == [], "a half-failed launch leaked instances"
    assert {i["State"]["Name"] for i in launched} <= {"shutting-down", "terminated"}


def test_cancelled_launch_leaves_nothing_behind(aws: Aws, cid: str) -> None:
    """The manager shutting down (task cancelled) while a launch waits for 'running' leaks nothing."""
    provider = make_provider(aws, cid)
    entered, release = threading.Event(), threading.Event()

    def hold_describe(**_kwargs: Any) -> None:
        entered.set()
        release.wait(timeout=30)

    provider.client.meta.events.register("before-call.ec2.DescribeInstances", hold_describe)

    async def scenario() -> None:
        task = asyncio.create_task(provider.create(2, make_spec(cid)))
        assert await asyncio.to_thread(entered.wait, 30), "the launch never reached the wait for 'running'"
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            release.set()

    asyncio.run(scenario())
    assert len(instances(aws, cid)) == 2
    assert live_instances(aws, cid) == []


def test_throttled_launch_is_retried_without_duplicates(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)
    calls: list[str] = []

    def throttle_twice(**_kwargs: Any) -> None:
        calls.append("RunInstances")
        if len(calls) <= 2:
            raise client_error("RequestLimitExceeded", "RunInstances")

    provider.client.meta.events.register("before-call.ec2.RunInstances", throttle_twice)
    nodes = asyncio.run(provider.create(2, make_spec(cid)))
    assert len(calls) == 4  # two throttled, then one RunInstances per node (each with its own join token)
    assert sorted(i["InstanceId"] for i in live_instances(aws, cid)) == sorted(n.node_id for n in nodes)


def test_persistent_throttling_gives_up_with_retryable_error(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid, max_launch_attempts=3)
    calls: list[str] = []

    def always_throttle(**_kwargs: Any) -> None:
        calls.append("RunInstances")
        raise client_error("RequestLimitExceeded", "RunInstances")

    provider.client.meta.events.register("before-call.ec2.RunInstances", always_throttle)
    with pytest.raises(ProviderError) as raised:
        asyncio.run(provider.create(1, make_spec(cid)))
    assert raised.value.retryable is True
    assert "RequestLimitExceeded" in str(raised.value)
    assert len(calls) == 3, "retries must stop at the configured limit"
    assert instances(aws, cid) == []


def test_bad_request_is_not_retried(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)
    calls: list[str] = []

    def reject(**_kwargs: Any) -> None:
        calls.append("RunInstances")
        raise client_error("InvalidParameterValue", "RunInstances")

    provider.client.meta.events.register("before-call.ec2.RunInstances", reject)
    with pytest.raises(ProviderError) as raised:
        asyncio.run(provider.create(1, make_spec(cid)))
    assert raised.value.retryable is False
    assert len(calls) == 1


def test_unmapped_resource_model_is_rejected_before_launch(aws: Aws, cid: str) -> None:
    with pytest.raises(ProviderError) as raised:
        asyncio.run(make_provider(aws, cid).create(1, make_spec(cid, cores=2)))
    assert raised.value.retryable is False
    assert "instance_types" in str(raised.value)
    assert instances(aws, cid) == []


def test_spec_for_another_cluster_is_rejected(aws: Aws, cid: str) -> None:
    with pytest.raises(ProviderError, match="-other"):
        asyncio.run(make_provider(aws, cid).create(1, make_spec(f"{cid}-other")))
    assert instances(aws, f"{cid}-other") == []


def test_terminate_rejects_ids_that_are_not_instance_ids(aws: Aws, cid: str) -> None:
    with pytest.raises(ProviderError, match="not EC2 instance ids"):
        asyncio.run(make_provider(aws, cid).terminate(["member-1"]))


def test_event_loop_keeps_running_during_calls(aws: Aws, cid: str) -> None:
    provider = make_provider(aws, cid)

    async def scenario() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await provider.create(1, make_spec(cid))
        await provider.list()
        done.set()
        await task
        return ticks

    assert asyncio.run(scenario()) > 1, "boto3 calls must run off the event loop"


@pytest.mark.parametrize(("override", "message"), [
    ({"image_id": "ubuntu"}, "image_id"),
    ({"subnet_id": "10.0.0.0/24"}, "subnet_id"),
    ({"security_group_ids": []}, "security_group_ids"),
    ({"instance_types": {"four/16G": "m6i.xlarge"}}, "CORES/MEMORY"),
    ({"instance_types": {"4/lots": "m6i.xlarge"}}, "not a size"),
    ({"region": "Frankfurt"}, "region"),
    ({"endpoint_url": "localhost:5000"}, "endpoint_url"),
    ({"tags": {"bench:role": "manager"}}, "reserved"),
    ({"max_launch_attempts": 0}, "max_launch_attempts"),
    ({"colour": "blue"}, "unknown setting"),
])
def test_bad_configuration_names_the_setting(aws: Aws, override: dict[str, Any], message: str) -> None:
    with pytest.raises(Ec2ConfigError, match=message):
        make_config(aws, **override)


def test_missing_required_setting_is_named() -> None:
    with pytest.raises(Ec2ConfigError, match="subnet_id"):
        Ec2Config.from_mapping({"region": REGION, "image_id": "ami-12c6146b"})
