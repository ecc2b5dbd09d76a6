from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from manager.events import EventBus
from manager.lifecycle import IllegalTransition, MemberEvent, MemberState
from manager.model import Capacity
from manager.registry import HeartbeatData, MemberRegistry, NodeRegistration, RegistrationRefused
from manager.store import SCHEMA_VERSION, Store, StoreError


def node(node_id: str = "m1") -> NodeRegistration:
    return NodeRegistration(node_id, node_id, "10.0.0.1", "1.0", Capacity(cores=4, memory_bytes=8 << 30), "member")


def test_file_is_wal_and_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal" and store.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer than this manager"):
        Store(tmp_path / "state.db")


def test_transitions_survive_a_reopen_with_their_story(tmp_path: Path) -> None:
    clock = iter(range(100, 200)).__next__
    store = Store(tmp_path / "state.db")
    registry = MemberRegistry(store, EventBus(), clock=lambda: float(clock()))
    registry.register(node())
    registry.transition("m1", MemberEvent.SGE_READY, "sge-observed", "in qhost")
    store.close()
    reopened = MemberRegistry(Store(tmp_path / "state.db"), EventBus())
    member = reopened.get("m1")
    assert member is not None and member.state == MemberState.READY and member.capacity.cores == 4
    story = [(t.from_state, t.to_state, t.stimulus) for t in reopened.history("m1")]
    assert story == [("NEW", "JOINING", "agent:m1"), ("JOINING", "READY", "sge-observed")]


def test_reregistration_keeps_identity_and_state(tmp_path: Path) -> None:
    registry = MemberRegistry(Store(tmp_path / "s.db"), EventBus())
    first = registry.register(node())
    registry.transition("m1", MemberEvent.SGE_READY, "x", "y")
    again = registry.register(node())
    assert again.state == MemberState.READY and again.joined_at == first.joined_at
    assert len(registry.all()) == 1


def test_removed_member_cannot_rejoin(tmp_path: Path) -> None:
    registry = MemberRegistry(Store(tmp_path / "s.db"), EventBus())
    registry.register(node())
    for event in (MemberEvent.SGE_READY, MemberEvent.DRAIN_REQUESTED, MemberEvent.DRAIN_COMPLETED,
                  MemberEvent.NODE_TERMINATED):
        registry.transition("m1", event, "t", "t")
    with pytest.raises(RegistrationRefused, match="cannot rejoin"):
        registry.register(node())


def test_silent_member_becomes_lost_after_the_limit(tmp_path: Path) -> None:
    now = [1000.0]
    registry = MemberRegistry(Store(tmp_path / "s.db"), EventBus(), clock=lambda: now[0])
    registry.register(node())
    registry.transition("m1", MemberEvent.SGE_READY, "x", "y")
    now[0] += 9
    assert registry.expire(lost_after_s=10, join_timeout_s=60) == []
    now[0] += 2
    lost = registry.expire(lost_after_s=10, join_timeout_s=60)
    assert [m.state for m in lost] == [MemberState.LOST]


def beat(cores: int, jobs: int) -> HeartbeatData:
    return HeartbeatData(capacity=Capacity(cores=cores, memory_bytes=8 << 30), running_jobs=jobs, mounts=(),
                         draining=False, agent_version="1.1")


def test_a_background_heartbeat_flush_persists_beats_and_never_undoes_a_transition(tmp_path: Path) -> None:
    """The flush writes a snapshot from a worker thread; a transition recorded meanwhile must survive it."""
    store = Store(tmp_path / "state.db")
    registry = MemberRegistry(store, EventBus())
    registry.register(node())
    registry.transition("m1", MemberEvent.SGE_READY, "sge-observed", "in qhost")
    registry.on_heartbeat("m1", beat(cores=6, jobs=3))
    snapshot = registry._take_dirty()  # what a flush under way is writing ...
    registry.transition("m1", MemberEvent.DRAIN_REQUESTED, "user:root", "drain")  # ... while this happens
    store.save_heartbeats(snapshot)
    assert asyncio.run(registry.flush_in_background()) == 0  # nothing new since
    store.close()
    reopened = Store(tmp_path / "state.db").member("m1")
    assert reopened is not None
    assert reopened.state == MemberState.DRAINING  # the flush did not write the older state back
    assert (reopened.capacity.cores, reopened.running_jobs, reopened.agent_version) == (6, 3, "1.1")


def test_a_failed_background_flush_is_retried_by_the_next_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    registry = MemberRegistry(store, EventBus())
    registry.register(node())
    registry.on_heartbeat("m1", beat(cores=5, jobs=1))
    locker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the file past the busy timeout
    store._heartbeat_db = store._connect()
    store._heartbeat_db.execute("PRAGMA busy_timeout=50")
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(registry.flush_in_background())
    locker.execute("ROLLBACK")
    assert asyncio.run(registry.flush_in_background()) == 1
    member = Store(tmp_path / "state.db").member("m1")
    assert member is not None and member.capacity.cores == 5


def test_a_batch_of_transitions_is_all_or_nothing_and_survives_a_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    registry = MemberRegistry(store, EventBus())
    for name in ("m1", "m2", "m3"):
        registry.register(node(name))
    assert sorted(registry.joining_ids()) == ["m1", "m2", "m3"]
    # m3 is READY already: the batch names an illegal transition, so nothing of it happens
    registry.transition("m3", MemberEvent.SGE_READY, "x", "y")
    with pytest.raises(IllegalTransition):
        registry.transition_many(["m1", "m3"], MemberEvent.SGE_READY, "agent-connected", "agent connected")
    assert sorted(registry.joining_ids()) == ["m1", "m2"]
    promoted = registry.transition_many(["m1", "m2"], MemberEvent.SGE_READY, "agent-connected", "agent connected")
    assert [m.state for m in promoted] == [MemberState.READY, MemberState.READY]
    assert registry.joining_ids() == []
    store.close()
    reopened = MemberRegistry(Store(tmp_path / "s.db"), EventBus())
    for name in ("m1", "m2"):
        member = reopened.get(name)
        assert member is not None and member.state == MemberState.READY
        assert [t.to_state for t in reopened.history(name)] == ["JOINING", "READY"]
    assert reopened.joining_ids() == []


def test_a_batch_that_fails_to_persist_changes_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.db")
    registry = MemberRegistry(store, EventBus())
    for name in ("m1", "m2"):
        registry.register(node(name))
    real_save = store.save_member
    saved: list[str] = []

    def save_then_fail(member: object) -> None:
        real_save(member)  # type: ignore[arg-type]
        saved.append(member.member_id)  # type: ignore[attr-defined]
        if len(saved) == 2:
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "save_member", save_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        registry.transition_many(["m1", "m2"], MemberEvent.SGE_READY, "agent-connected", "agent connected")
    monkeypatch.undo()
    assert {registry.get(n).state for n in ("m1", "m2")} == {MemberState.JOINING}  # type: ignore[union-attr]
    store.close()
    reopened = MemberRegistry(Store(tmp_path / "s.db"), EventBus())
    assert {reopened.get(n).state for n in ("m1", "m2")} == {MemberState.JOINING}  # type: ignore[union-attr]


def test_a_reregistration_with_the_same_identity_is_written_with_the_next_flush(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    registry = MemberRegistry(store, EventBus())
    registry.register(node())
    registry.transition("m1", MemberEvent.SGE_READY, "x", "y")
    upgraded = NodeRegistration("m1", "m1", "10.0.0.1", "2.0", Capacity(cores=8, memory_bytes=8 << 30), "member")
    assert registry.register(upgraded).agent_version == "2.0"
    assert store.member("m1").agent_version == "1.0"  # type: ignore[union-attr]  # not yet: no commit of its own
    registry.flush()
    stored = store.member("m1")
    assert stored is not None and (stored.agent_version, stored.capacity.cores, stored.state) == ("2.0", 8,
                                                                                                 MemberState.READY)
    moved = NodeRegistration("m1", "m1", "10.0.0.9", "2.0", Capacity(cores=8, memory_bytes=8 << 30), "member")
    registry.register(moved)
    assert store.member("m1").ip == "10.0.0.9"  # type: ignore[union-attr]  # a new address is written at once
