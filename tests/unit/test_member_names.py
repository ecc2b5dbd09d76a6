"""Members are named by id or by hostname (what qhost shows); unknown or ambiguous names list the
candidates so a person can pick the right one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manager.lifecycle import MemberState
from manager.member_names import UnknownMemberName, find_member
from manager.model import MemberRecord


def member(member_id: str, hostname: str, state: MemberState = MemberState.READY, since: float = 1.0,
           role: str = "member") -> MemberRecord:
    return MemberRecord(member_id=member_id, state=state, state_since=since, hostname=hostname, role=role)


CLUSTER = [
    member("m-0a1b", "bench-m01"),
    member("m-77c2", "bench-m02", MemberState.TERMINATED, since=10.0),
    member("m-99d3", "bench-m02", MemberState.DRAINING, since=20.0),
    member("manager", "bench-manager", role="manager"),
]


def test_a_member_id_names_that_member() -> None:
    assert find_member(CLUSTER, "m-77c2").member_id == "m-77c2"


def test_a_hostname_names_the_live_member_that_has_it() -> None:
    assert find_member(CLUSTER, "bench-m02").member_id == "m-99d3"
    assert find_member(CLUSTER, "BENCH-M01").member_id == "m-0a1b"  # host names are case-insensitive


def test_a_hostname_only_terminated_members_had_names_the_latest_of_them() -> None:
    older = member("m-1111", "bench-m05", MemberState.TERMINATED, since=5.0)
    newer = member("m-2222", "bench-m05", MemberState.TERMINATED, since=50.0)
    assert find_member([older, newer], "bench-m05").member_id == "m-2222"


def test_an_unknown_name_lists_every_member_with_its_hostname_id_and_state() -> None:
    with pytest.raises(UnknownMemberName) as refused:
        find_member(CLUSTER, "bench-m09")
    text = str(refused.value)
    assert "no member 'bench-m09'" in text
    for expected in ("bench-m01 (m-0a1b, READY)", "bench-m02 (m-99d3, DRAINING)", "bench-m02 (m-77c2, TERMINATED)"):
        assert expected in text
    assert "bench-manager" not in text  # the manager node's agent is not a member


def test_a_hostname_two_live_members_share_is_ambiguous() -> None:
    twins = [member("m-a", "bench-m03"), member("m-b", "bench-m03", MemberState.JOINING)]
    with pytest.raises(UnknownMemberName, match=r"ambiguous.*m-a.*m-b"):
        find_member(twins, "bench-m03")


def test_the_manager_node_is_not_found_as_a_member() -> None:
    with pytest.raises(UnknownMemberName):
        find_member(CLUSTER, "manager")


names = st.text(alphabet="abm-0123", min_size=1, max_size=6)


@given(st.lists(st.tuples(names, names, st.sampled_from(list(MemberState))), max_size=8), names)
def test_any_lookup_either_finds_a_member_answering_to_the_name_or_refuses(
        rows: list[tuple[str, str, MemberState]], name: str) -> None:
    records = [member(mid, host, state, since=float(i)) for i, (mid, host, state) in enumerate(rows)]
    try:
        found = find_member(records, name)
    except UnknownMemberName:
        assert not any(r.member_id == name for r in records)
        return
    assert found in records
    assert name in (found.member_id, found.hostname) or found.hostname.lower() == name.lower()
