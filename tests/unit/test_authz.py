"""The role table and the credential store (SQLite file, digests only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from manager.authz import (
    AGENT_METHOD_KINDS,
    AGENT_SERVICE,
    AUDITED_METHODS,
    CLUSTER_METHOD_ROLES,
    CLUSTER_SERVICE,
    Principal,
    Role,
    authorise,
    may_delete_mount,
)
from manager.credentials import CredentialRefused, CredentialStore
from manager.store import Store
from protos.bench.v1 import agent_pb2, cluster_pb2

VIEWER, CONTRIB, ADMIN = (Principal("user", n, r) for n, r in (("v", Role.VIEWER), ("c", Role.CONTRIBUTOR),
                                                              ("a", Role.ADMINISTRATOR)))


def test_every_rpc_has_a_decision() -> None:
    cluster = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"]
    agent = agent_pb2.DESCRIPTOR.services_by_name["ManagerService"]
    # a new RPC is refused to everyone until it is given a role here
    assert set(CLUSTER_METHOD_ROLES) == {m.name for m in cluster.methods}
    assert set(AGENT_METHOD_KINDS) == {m.name for m in agent.methods}
    # every audited method mutates, so none is open to viewers
    assert all(CLUSTER_METHOD_ROLES[m] > Role.VIEWER for m in AUDITED_METHODS)


@pytest.mark.parametrize(("method", "viewer", "contributor", "admin"), [
    ("GetStatus", True, True, True), ("GetMounts", True, True, True), ("GetScalerLog", True, True, True),
    ("CreateMount", False, True, True), ("DeleteMount", False, True, True),
    ("Scale", False, False, True), ("DrainMember", False, False, True), ("StopCluster", False, False, True),
    ("AddUser", False, False, True), ("RemoveUser", False, False, True), ("ListUsers", False, False, True),
])
def test_roles(method: str, viewer: bool, contributor: bool, admin: bool) -> None:
    got = [authorise(p, CLUSTER_SERVICE, method).allowed for p in (VIEWER, CONTRIB, ADMIN)]
    assert got == [viewer, contributor, admin]


def test_refusal_names_the_role_needed_and_kinds_do_not_mix() -> None:
    assert "needs the administrator role" in authorise(VIEWER, CLUSTER_SERVICE, "Scale").message
    member = Principal("member", "m1")
    assert not authorise(member, CLUSTER_SERVICE, "GetStatus").allowed
    assert not authorise(ADMIN, AGENT_SERVICE, "Register").allowed
    assert authorise(member, AGENT_SERVICE, "Connect").allowed
    assert not authorise(member, AGENT_SERVICE, "Join").allowed
    assert not authorise(ADMIN, CLUSTER_SERVICE, "NewUnlistedMethod").allowed


def test_contributors_delete_only_their_own_mounts() -> None:
    assert may_delete_mount(CONTRIB, "c").allowed
    assert not may_delete_mount(CONTRIB, "someone").allowed
    assert may_delete_mount(ADMIN, "someone").allowed


def test_credentials_are_stored_as_digests_and_revoked_at_once(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "state.db")
    creds = CredentialStore(store, clock=lambda: now[0])
    _, secret = creds.add_user("alice", Role.CONTRIBUTOR, "root")
    assert creds.principal(secret) == Principal("user", "alice", Role.CONTRIBUTOR)
    raw = sqlite3.connect(tmp_path / "state.db").execute("SELECT digest FROM credentials").fetchall()
    assert raw and all(secret not in row[0] for row in raw)
    assert secret.encode() not in (tmp_path / "state.db").read_bytes() + (tmp_path / "state.db-wal").read_bytes()
    # a restart reads the same principals back
    assert CredentialStore(store).principal(secret) == Principal("user", "alice", Role.CONTRIBUTOR)
    # a new credential replaces the old one at once
    _, again = creds.add_user("alice", Role.VIEWER, "root")
    assert creds.principal(secret) is None and creds.principal(again) == Principal("user", "alice", Role.VIEWER)
    assert creds.remove_user("alice") and creds.principal(again) is None


def test_join_token_is_single_use_bound_and_expires(tmp_path: Path) -> None:
    now = [1000.0]
    creds = CredentialStore(Store(tmp_path / "state.db"), clock=lambda: now[0])
    unbound, bound, stale = creds.issue_join_tokens(3, ttl_s=600)
    with pytest.raises(CredentialRefused, match="not yet bound"):
        creds.redeem_join_token(unbound)
    creds.bind_join_token(bound, "m-1")
    creds.bind_join_token(bound, "m-2")  # binding happens once: it cannot be re-pointed
    member, credential = creds.redeem_join_token(bound)
    assert member == "m-1" and creds.principal(credential) == Principal("member", "m-1")
    with pytest.raises(CredentialRefused):
        creds.redeem_join_token(bound)
    creds.bind_join_token(stale, "m-3")
    now[0] += 601
    with pytest.raises(CredentialRefused):
        creds.redeem_join_token(stale)
    assert creds.principal(bound) is None  # a join token is never a member credential
    assert creds.revoke_member("m-1") and creds.principal(credential) is None
