"""The user-data document that tells a bench-node image its role: what the launcher writes, first boot reads."""

from __future__ import annotations

import tomllib

import pytest

from manager.providers.ec2_userdata import EC2_USERDATA_LIMIT, MARKER, NodeUserData, parse, render

MEMBER = NodeUserData(role="member", cluster_id="c-1", manager_address="10.0.0.5:50051",
                      join_token="bcj_tok", ca_cert="-----BEGIN CERTIFICATE-----\nx\n",
                      cores=4, memory_bytes=16 * 1024**3, scratch_bytes=100 * 1024**3, labels={"ws": "42"})


def test_round_trip() -> None:
    assert parse(render(MEMBER)) == MEMBER


def test_manager_settings_round_trip_with_nested_tables() -> None:
    manager = NodeUserData(**{**MEMBER.__dict__, "role": "manager", "manager_settings": {
        "provider": "ec2", "members": 3, "economy": True, "listen": ["0.0.0.0:50051"],
        "ec2": {"region": "eu-central-1", "instance_types": {"4/16G": "m6i.xlarge"}}}})
    assert parse(render(manager)) == manager


def test_starts_with_the_marker_first_boot_checks() -> None:
    assert render(MEMBER).splitlines()[0] == MARKER


@pytest.mark.parametrize("hostile", ['a"\nrole = "manager', "back\\slash", "tab\there", "ünï"])
def test_values_cannot_break_out_of_their_line(hostile: str) -> None:
    data = NodeUserData(**{**MEMBER.__dict__, "join_token": hostile, "labels": {hostile: hostile}})
    text = render(data)
    assert tomllib.loads(text)["role"] == "member"
    assert parse(text) == data


def test_too_large_user_data_is_refused() -> None:
    data = NodeUserData(**{**MEMBER.__dict__, "labels": {f"k{i}": "x" * 100 for i in range(200)}})
    with pytest.raises(ValueError, match=str(EC2_USERDATA_LIMIT)):
        render(data)


@pytest.mark.parametrize(("text", "message"), [
    ("role = 'member'", "does not start with"),
    (f"{MARKER}\nrole = 'boss'", "role must be member or manager"),
    (f"{MARKER}\nrole = 'member'\ncluster_id = 'c'", "lacks 'manager_address'"),
    (f"{MARKER}\nrole = = 'member'", "not valid TOML"),
])
def test_bad_user_data_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)
