"""Finding a member by the name a person uses: its member id, or its hostname (what `qhost` and
`bench-cluster status` show). Pure: records in, one record or a refusal listing the candidates out.

Hostnames come from a reused name pool (the local provider hands `bench-m02` out again after its
member ended), so one hostname can belong to a live member and to terminated ones: the live member
wins; with only terminated ones, the most recent one (its story is what a person asks for).
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.lifecycle import MemberState
from manager.model import MemberRecord


class UnknownMemberName(LookupError):
    """No member, or more than one, answers to the name; the message lists the candidates."""


def describe(member: MemberRecord) -> str:
    return f"{member.hostname or '?'} ({member.member_id}, {member.state.value})"


def candidates_text(members: Iterable[MemberRecord]) -> str:
    return ", ".join(describe(m) for m in members) or "none"


def find_member(members: Iterable[MemberRecord], name: str) -> MemberRecord:
    pool = [m for m in members if m.is_member]
    by_id = [m for m in pool if m.member_id == name]
    if by_id:
        return by_id[0]
    by_host = [m for m in pool if m.hostname and m.hostname.lower() == name.lower()]
    live = [m for m in by_host if m.state is not MemberState.TERMINATED]
    if len(live) == 1:
        return live[0]
    if len(live) > 1:
        raise UnknownMemberName(f"{name!r} is ambiguous: it names {candidates_text(live)}; use a member id")
    if by_host:
        return max(by_host, key=lambda m: m.state_since)
    listed = sorted(pool, key=lambda m: (m.state is MemberState.TERMINATED, m.hostname, m.member_id))
    raise UnknownMemberName(f"no member {name!r}; members (hostname (id, state)): {candidates_text(listed)}")
