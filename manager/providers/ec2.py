"""The `ec2` node provider: members are EC2 instances launched from the Packer-built bench-node image.

Every boto3 call runs in a worker thread (asyncio.to_thread) so the manager's event loop never blocks.
Throttling is handled twice: botocore's adaptive retry mode paces every call, and tenacity retries a
whole RunInstances (same ClientToken, so AWS never launches twice) with exponential backoff and jitter.
A launch is all-or-nothing: MinCount=MaxCount, and if anything after RunInstances fails the instances
it launched are terminated before ProviderError is raised.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import boto3
import botocore.config
import botocore.exceptions
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from common.logging import get_logger
from manager.providers.base import NodeSpec, NodeState, ProviderError, ProviderNode
from manager.providers.ec2_config import CLUSTER_TAG, ROLE_TAG, Ec2Config
from manager.providers.ec2_userdata import NodeUserData, render

log = get_logger("manager.providers.ec2")

MEMBER_ROLE: Literal["member"] = "member"
MAX_CREATE_COUNT = 1000  # RunInstances' own ceiling per call
_ID_BATCH = 100  # ids per Describe/Terminate call, well below the API's filter-value limits

# AWS error codes where waiting and asking again can succeed.
_RETRYABLE_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "ServiceUnavailable", "Unavailable",
    "InternalError", "InsufficientInstanceCapacity", "InsufficientAddressCapacity", "SpotMaxPriceTooLow",
})
# Instance states that still count as existing; "terminated" ones are gone for good.
_STATE_OF = {
    "pending": NodeState.PENDING,
    "running": NodeState.RUNNING,
    # A one-time spot member never stops; a stopped member is on its way out, not capacity.
    "stopping": NodeState.TERMINATING,
    "stopped": NodeState.TERMINATING,
    "shutting-down": NodeState.TERMINATING,
}


def _error_code(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, botocore.exceptions.ClientError):
        return _error_code(error) in _RETRYABLE_CODES
    return isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.ReadTimeoutError)


def _batches(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _ID_BATCH):
        yield list(ids[start:start + _ID_BATCH])


class Ec2Provider:
    """NodeProvider over EC2: create(), terminate() and list() only ever touch this cluster's members."""

    name = "ec2"

    def __init__(self, config: Ec2Config, *, cluster_id: str, client: Any | None = None,
                 retry_wait_max_s: float = 20.0) -> None:
        if not cluster_id:
            raise ValueError("cluster_id must not be empty")
        self._config = config
        self._cluster_id = cluster_id
        self._retry_wait_max_s = retry_wait_max_s
        self._client = client if client is not None else self._make_client(config)

    @staticmethod
    def _make_client(config: Ec2Config) -> Any:
        botocore_config = botocore.config.Config(
            region_name=config.region,
            retries={"mode": "adaptive", "max_attempts": 6},
            connect_timeout=10,
            read_timeout=30,
        )
        return boto3.session.Session().client("ec2", endpoint_url=config.endpoint_url, config=botocore_config)

    @property
    def client(self) -> Any:
        """The boto3 EC2 client (tests hook botocore events on it to inject faults)."""
        return self._client

    async def create(self, count: int, spec: NodeSpec) -> list[ProviderNode]:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CREATE_COUNT:
            raise ProviderError(f"count must be an integer from 1 to {MAX_CREATE_COUNT}, got {count!r}",
                                retryable=False)
        if spec.cluster_id != self._cluster_id:
            raise ProviderError(f"spec is for cluster {spec.cluster_id!r} but this provider serves "
                                f"{self._cluster_id!r}", retryable=False)
        instance_type = self._config.instance_type_for(spec.cores, spec.memory_bytes)
        if instance_type is None:
            models = ", ".join(f"{r.cores}/{r.memory_bytes // 1024**3}G" for r in self._config.instance_types)
            raise ProviderError(
                f"no instance type configured for {spec.cores} cores / {spec.memory_bytes} bytes; "
                f"add it to [ec2] instance_types (configured: {models})", retryable=False)
        if len(spec.join_tokens) < count:
            raise ProviderError(f"{count} node(s) need {count} join token(s), got {len(spec.join_tokens)}",
                                retryable=False)
        # One RunInstances per node: each boots with its own one-time join token in its user-data.
        # All-or-nothing still holds: a failure part-way terminates the instances already launched.
        instance_ids: builtins.list[str] = []
        try:
            for token in spec.join_tokens[:count]:
                instance_ids += await self._launch(self._run_instances_request(1, spec, instance_type, token))
            await asyncio.to_thread(self._wait_running, instance_ids)
            described = {n.node_id: n for n in await asyncio.to_thread(self._describe, instance_ids)}
            nodes = [described[i] for i in instance_ids if i in described]  # in join-token order
            if len(nodes) != count:
                raise ProviderError(f"asked for {count} instances, {len(nodes)} are running")
        except BaseException as error:
            if instance_ids:
                await self._terminate_after_failed_launch(instance_ids, error)
            if isinstance(error, ProviderError):
                raise
            if isinstance(error, Exception):
                raise ProviderError(f"launch of {count} member(s) failed after RunInstances; terminated "
                                    f"{len(instance_ids)} instance(s): {error}",
                                    retryable=_is_retryable(error)) from error
            raise
        log.info("ec2_launched", cluster_id=self._cluster_id, count=count, spot=spec.spot,
                 instance_type=instance_type, instance_ids=instance_ids)
        return nodes

    async def terminate(self, node_ids: Sequence[str]) -> None:
        wanted = sorted(set(node_ids))
        if not wanted:
            return
        bad = [node_id for node_id in wanted if not node_id.startswith("i-")]
        if bad:
            raise ProviderError(f"not EC2 instance ids: {', '.join(bad)}", retryable=False)
        # Only instances tagged with this cluster are terminated: an id from elsewhere is left alone.
        ours = [node.node_id for node in await asyncio.to_thread(self._describe, wanted)
                if node.state != NodeState.TERMINATED]
        for batch in _batches(ours):
            await self._call(self._client.terminate_instances, InstanceIds=batch)
        if ours:
            log.info("ec2_terminated", cluster_id=self._cluster_id, instance_ids=ours)

    async def list(self) -> list[ProviderNode]:
        return await asyncio.to_thread(self._describe, None)

    # --- launch -------------------------------------------------------------------------------------------

    def _run_instances_request(self, count: int, spec: NodeSpec, instance_type: str,
                               join_token: str) -> dict[str, Any]:
        tags = {**self._config.tags, CLUSTER_TAG: self._cluster_id, ROLE_TAG: MEMBER_ROLE,
                "Name": f"bench-{self._cluster_id}-member"}
        tag_list = [{"Key": key, "Value": value} for key, value in sorted(tags.items())]
        user_data = render(NodeUserData(
            role=MEMBER_ROLE, cluster_id=self._cluster_id, manager_address=spec.manager_address,
            join_token=join_token, ca_cert=spec.ca_cert_pem, cores=spec.cores, memory_bytes=spec.memory_bytes,
            scratch_bytes=spec.scratch_bytes, labels=dict(spec.labels), orphan_timeout_s=spec.orphan_timeout_s))
        scratch_gib = max(1, -(-spec.scratch_bytes // 1024**3))
        request: dict[str, Any] = {
            "ImageId": self._config.image_id,
            "InstanceType": instance_type,
            # All-or-nothing: AWS launches every instance or none.
            "MinCount": count,
            "MaxCount": count,
            "SubnetId": self._config.subnet_id,
            "SecurityGroupIds": list(self._config.security_group_ids),
            "UserData": user_data,
            # The user-data carries a one-time join token (minutes, single use): IMDSv2 only, hop limit 1.
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                                "HttpEndpoint": "enabled"},
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda",
                 "Ebs": {"VolumeSize": self._config.root_volume_gib, "VolumeType": "gp3",
                         "DeleteOnTermination": True}},
                # /scratch: formatted and mounted by first-boot.sh, gone with the instance.
                {"DeviceName": "/dev/xvdb",
                 "Ebs": {"VolumeSize": scratch_gib, "VolumeType": "gp3", "DeleteOnTermination": True}},
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
            "InstanceInitiatedShutdownBehavior": "terminate",
            # Same token on every retry: AWS returns the first launch instead of starting a second one.
            "ClientToken": f"bench-{uuid.uuid4()}",
        }
        if spec.spot:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        if self._config.iam_instance_profile:
            request["IamInstanceProfile"] = {"Name": self._config.iam_instance_profile}
        if self._config.key_name:
            request["KeyName"] = self._config.key_name
        return request

    async def _launch(self, request: dict[str, Any]) -> builtins.list[str]:
        try:
            response = await self._call(self._client.run_instances, **request)
        except botocore.exceptions.BotoCoreError as error:
            raise ProviderError(f"RunInstances failed: {error}", retryable=_is_retryable(error)) from error
        except botocore.exceptions.ClientError as error:
            raise ProviderError(f"RunInstances failed ({_error_code(error)}): {error}",
                                retryable=_is_retryable(error)) from error
        return [instance["InstanceId"] for instance in response.get("Instances", [])]

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """One API call in a worker thread, retried with backoff and jitter while AWS says 'later'."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_random_exponential(multiplier=0.5, max=self._retry_wait_max_s),
            stop=stop_after_attempt(self._config.max_launch_attempts),
            reraise=True,
        ):
            with attempt:
                return await asyncio.to_thread(method, **kwargs)
        raise AssertionError("unreachable: AsyncRetrying either returns or re-raises")

    def _wait_running(self, instance_ids: builtins.list[str]) -> None:
        delay = 5
        waiter = self._client.get_waiter("instance_running")
        attempts = max(1, self._config.running_wait_s // delay)
        waiter.wait(InstanceIds=instance_ids, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})

    async def _terminate_after_failed_launch(self, instance_ids: builtins.list[str], cause: BaseException) -> None:
        log.warning("ec2_launch_failed_cleaning_up", cluster_id=self._cluster_id, instance_ids=instance_ids,
                    error=str(cause))
        try:
            for batch in _batches(instance_ids):
                await self._call(self._client.terminate_instances, InstanceIds=batch)
        except Exception as cleanup_error:
            # Still raise the launch failure; the instances carry the cluster tag, so the reconciler's
            # next list() shows them and terminates them.
            log.error("ec2_cleanup_failed", cluster_id=self._cluster_id, instance_ids=instance_ids,
                      error=str(cleanup_error))

    # --- observe ------------------------------------------------------------------------------------------

    def _describe(self, instance_ids: builtins.list[str] | None) -> builtins.list[ProviderNode]:
        filters = [
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [self._cluster_id]},
            {"Name": f"tag:{ROLE_TAG}", "Values": [MEMBER_ROLE]},
            {"Name": "instance-state-name", "Values": sorted(_STATE_OF)},
        ]
        paginator = self._client.get_paginator("describe_instances")
        nodes: builtins.list[ProviderNode] = []
        id_batches: builtins.list[builtins.list[str] | None] = (
            [*_batches(instance_ids)] if instance_ids is not None else [None])
        for batch in id_batches:
            batch_filters = filters if batch is None else [*filters, {"Name": "instance-id", "Values": batch}]
            for page in paginator.paginate(Filters=batch_filters):
                for reservation in page.get("Reservations", []):
                    nodes.extend(self._node(instance) for instance in reservation.get("Instances", []))
        return sorted(nodes, key=lambda node: node.node_id)

    @staticmethod
    def _node(instance: dict[str, Any]) -> ProviderNode:
        state = _STATE_OF.get(instance.get("State", {}).get("Name", ""), NodeState.TERMINATED)
        launch_time = instance.get("LaunchTime")
        return ProviderNode(
            node_id=instance["InstanceId"],
            hostname=instance.get("PrivateDnsName") or instance["InstanceId"],
            ip=instance.get("PrivateIpAddress") or "",
            state=state,
            launched_at_unix=launch_time.timestamp() if launch_time is not None else 0.0,
            spot=instance.get("InstanceLifecycle") == "spot",
        )
