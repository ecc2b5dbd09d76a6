"""Settings of the `ec2` node provider, validated once when the manager starts.

Pure data and validation: a bad setting is reported with the key and a fix before any AWS call is made,
so a typo never surfaces later as a half-launched scale-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from common.units import parse_size

# Tag keys the provider owns: list() and terminate() select by them, so a user tag must not override them.
CLUSTER_TAG = "bench:cluster-id"
ROLE_TAG = "bench:role"
RESERVED_TAG_PREFIXES = ("aws:", "bench:")

_IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_RESOURCE_MODEL = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


class Ec2ConfigError(ValueError):
    """A setting of the ec2 provider is missing or malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class InstanceTypeRule:
    """Which EC2 instance type provides one resource model (cores and memory of a member)."""

    cores: int
    memory_bytes: int
    instance_type: str


@dataclass(frozen=True)
class Ec2Config:
    region: str
    image_id: str  # the Packer-built bench-node AMI
    subnet_id: str
    security_group_ids: tuple[str, ...]
    instance_types: tuple[InstanceTypeRule, ...]
    iam_instance_profile: str | None = None
    key_name: str | None = None
    endpoint_url: str | None = None  # an AWS API emulator in tests; None means the real regional endpoint
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    root_volume_gib: int = 16
    max_launch_attempts: int = 4  # RunInstances tries when AWS throttles or has a transient fault
    running_wait_s: int = 600  # how long a launch may stay pending before it counts as failed

    def __post_init__(self) -> None:
        _check(bool(_REGION.match(self.region)), "region",
               f"{self.region!r} is not an AWS region (e.g. eu-central-1)")
        _check(bool(_IMAGE_ID.match(self.image_id)), "image_id", f"{self.image_id!r} is not an AMI id")
        _check(bool(_SUBNET_ID.match(self.subnet_id)), "subnet_id", f"{self.subnet_id!r} is not a subnet id")
        _check(len(self.security_group_ids) > 0, "security_group_ids", "give at least one security group id")
        for group in self.security_group_ids:
            _check(bool(_SECURITY_GROUP_ID.match(group)), "security_group_ids", f"{group!r} is not a sg-… id")
        _check(len(self.instance_types) > 0, "instance_types",
               'map at least one resource model, e.g. "4/16G"')
        models = [(rule.cores, rule.memory_bytes) for rule in self.instance_types]
        _check(len(models) == len(set(models)), "instance_types", "a resource model is mapped twice")
        for rule in self.instance_types:
            _check(rule.cores > 0 and rule.memory_bytes > 0, "instance_types", "cores and memory must be > 0")
            _check(bool(_INSTANCE_TYPE.match(rule.instance_type)), "instance_types",
                   f"{rule.instance_type!r} is not an instance type (e.g. m6i.xlarge)")
        if self.endpoint_url is not None:
            _check(self.endpoint_url.startswith(("http://", "https://")), "endpoint_url",
                   f"{self.endpoint_url!r} must be an http:// or https:// URL")
        for key, value in self.tags.items():
            _check(not key.lower().startswith(RESERVED_TAG_PREFIXES), "tags",
                   f"tag key {key!r} is reserved (keys starting with aws: or bench: are set by the provider)")
            _check(0 < len(key) <= 128 and len(value) <= 256, "tags", f"tag {key!r} is too long or empty")
        _check(8 <= self.root_volume_gib <= 16384, "root_volume_gib", "must be between 8 and 16384")
        _check(1 <= self.max_launch_attempts <= 10, "max_launch_attempts", "must be between 1 and 10")
        _check(30 <= self.running_wait_s <= 3600, "running_wait_s", "must be between 30 and 3600 seconds")
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    def instance_type_for(self, cores: int, memory_bytes: int) -> str | None:
        for rule in self.instance_types:
            if rule.cores == cores and rule.memory_bytes == memory_bytes:
                return rule.instance_type
        return None

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> Ec2Config:
        """Build from the `[ec2]` table of manager.toml.

        instance_types maps "CORES/MEMORY" to an instance type: {"4/16G" = "m6i.xlarge"}.
        """
        known = {
            "region", "image_id", "subnet_id", "security_group_ids", "instance_types", "iam_instance_profile",
            "key_name", "endpoint_url", "tags", "root_volume_gib", "max_launch_attempts", "running_wait_s",
        }
        unknown = sorted(set(settings) - known)
        _check(not unknown, "ec2",
               f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for required in ("region", "image_id", "subnet_id", "security_group_ids", "instance_types"):
            _check(required in settings, required, "is required in the [ec2] section")
        raw_types = settings["instance_types"]
        _check(isinstance(raw_types, Mapping), "instance_types",
               'must be a table like {"4/16G" = "m6i.xlarge"}')
        groups = settings["security_group_ids"]
        _check(isinstance(groups, list | tuple), "security_group_ids", "must be a list of sg-… ids")
        optional_ints = {
            key: int(settings[key]) for key in ("root_volume_gib", "max_launch_attempts", "running_wait_s")
            if key in settings
        }
        return cls(
            region=str(settings["region"]),
            image_id=str(settings["image_id"]),
            subnet_id=str(settings["subnet_id"]),
            security_group_ids=tuple(str(group) for group in groups),
            instance_types=tuple(_parse_rule(model, itype) for model, itype in raw_types.items()),
            iam_instance_profile=_optional_str(settings.get("iam_instance_profile")),
            key_name=_optional_str(settings.get("key_name")),
            endpoint_url=_optional_str(settings.get("endpoint_url")),
            tags={str(key): str(value) for key, value in dict(settings.get("tags", {})).items()},
            **optional_ints,
        )


def _parse_rule(model: str, instance_type: object) -> InstanceTypeRule:
    match = _RESOURCE_MODEL.match(model)
    _check(match is not None, "instance_types",
           f'{model!r} is not a resource model "CORES/MEMORY" like "4/16G"')
    assert match is not None
    try:
        memory = parse_size(match.group(2))
    except ValueError as error:
        raise Ec2ConfigError(f"ec2 setting instance_types: {error}") from None
    return InstanceTypeRule(cores=int(match.group(1)), memory_bytes=memory, instance_type=str(instance_type))


def _optional_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _check(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise Ec2ConfigError(f"ec2 setting {key}: {problem}")
