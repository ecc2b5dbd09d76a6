"""The manager's durable state: one SQLite file in WAL mode, schema versioned.

Every lifecycle transition is written here (with its stimulus and reason) before it is acted on,
so a manager restarted after `kill -9` finds each half-done operation and resumes it.
Calls are short local-file transactions, made from the event loop thread only.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from manager.lifecycle import MemberState
from manager.model import Capacity, MemberRecord, MountStateView, TransitionRecord

SCHEMA_VERSION = 4  # 2: credentials, users, join_tokens (trust); 3: workspace settings (issue 20); 4: web history

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    state_since REAL NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT 'member',
    joined_at REAL NOT NULL DEFAULT 0,
    capacity TEXT NOT NULL DEFAULT '{}',
    agent_version TEXT NOT NULL DEFAULT '',
    last_heartbeat REAL NOT NULL DEFAULT 0,
    running_jobs INTEGER NOT NULL DEFAULT 0,
    sge_configured INTEGER NOT NULL DEFAULT 0,
    spot INTEGER NOT NULL DEFAULT 0,
    drain TEXT NOT NULL DEFAULT '{}',
    mounts TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at REAL NOT NULL,
    stimulus TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_member ON transitions (member_id, id);
CREATE TABLE IF NOT EXISTS mounts (
    mount_path TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    count INTEGER NOT NULL,
    member_ids TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    decision_id INTEGER,
    started_at REAL NOT NULL,
    finished_at REAL,
    detail TEXT NOT NULL DEFAULT '{}'
);
-- Secrets are stored as SHA-256 digests of 256-bit random values: a stolen file grants nothing.
CREATE TABLE IF NOT EXISTS credentials (
    digest TEXT PRIMARY KEY,
    kind TEXT NOT NULL,          -- 'member' or 'user'
    name TEXT NOT NULL,          -- member id or user name
    created_at REAL NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS join_tokens (
    digest TEXT PRIMARY KEY,
    member_id TEXT NOT NULL DEFAULT '',  -- '' until the provider's record names the node
    expires_at REAL NOT NULL,
    used_at REAL
);
"""

# Migration steps by the version they bring the file to; each is idempotent (IF NOT EXISTS), so a
# file written before the step gets it on the next start.
# Step "workspace settings" (restricted workspaces, issue 20): the allowlist and upload rights in
# force and pending (manager/workspace_settings.py).
_MIGRATE_WORKSPACE_SETTINGS = """
CREATE TABLE IF NOT EXISTS workspace_settings (
    slot TEXT PRIMARY KEY CHECK (slot IN ('in_force', 'pending')),
    allowlist TEXT NOT NULL DEFAULT '[]',
    upload INTEGER NOT NULL DEFAULT 1,
    changed_at REAL NOT NULL DEFAULT 0,
    changed_by TEXT NOT NULL DEFAULT ''
);
"""
# Step "web history" (web access, issue 19): the samples the web page plots (manager/web/history.py).
_MIGRATE_WEB_HISTORY = """
CREATE TABLE IF NOT EXISTS web_history (
    at REAL PRIMARY KEY,
    sample TEXT NOT NULL
);
"""
_MIGRATIONS: dict[int, str] = {3: _MIGRATE_WORKSPACE_SETTINGS, 4: _MIGRATE_WEB_HISTORY}


class StoreError(Exception):
    pass


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._heartbeat_db: sqlite3.Connection | None = None
        self._mounts: list[dict[str, Any]] | None = None
        self._heartbeat_lock = threading.Lock()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        with self._heartbeat_lock:
            if self._heartbeat_db is not None:
                self._heartbeat_db.close()
                self._heartbeat_db = None
        self._db.close()

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        version = self.get_meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this manager understands "
                f"({SCHEMA_VERSION}); upgrade bench-manager or point --db at another file"
            )
        # 1 -> 2 (trust) only adds tables, created above: a member launched before has no credential
        # and must be re-launched or enrolled with `workspace-ctl admin add-node`.
        for step in sorted(_MIGRATIONS):
            if version is None or int(version) < step:
                self._db.executescript(_MIGRATIONS[step])
        self.set_meta("schema_version", str(SCHEMA_VERSION))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """One statement for the adapters that own a table of their own (manager.credentials)."""
        return self._db.execute(sql, params).fetchall()

    # meta -------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def get_json(self, key: str) -> Any:
        raw = self.get_meta(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        self.set_meta(key, json.dumps(value, sort_keys=True))

    # members ----------------------------------------------------------------------------------
    def members(self) -> list[MemberRecord]:
        return [_member_from_row(r) for r in self._db.execute("SELECT * FROM members ORDER BY member_id")]

    def member(self, member_id: str) -> MemberRecord | None:
        row = self._db.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
        return None if row is None else _member_from_row(row)

    def save_member(self, member: MemberRecord) -> None:
        self._db.execute(
            "INSERT INTO members (member_id, state, state_since, hostname, ip, role, joined_at, capacity, "
            "agent_version, last_heartbeat, running_jobs, sge_configured, spot, drain, mounts) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(member_id) DO UPDATE SET "
            "state=excluded.state, state_since=excluded.state_since, hostname=excluded.hostname, "
            "ip=excluded.ip, role=excluded.role, joined_at=excluded.joined_at, capacity=excluded.capacity, "
            "agent_version=excluded.agent_version, last_heartbeat=excluded.last_heartbeat, "
            "running_jobs=excluded.running_jobs, sge_configured=excluded.sge_configured, spot=excluded.spot, "
            "drain=excluded.drain, mounts=excluded.mounts",
            _member_to_row(member),
        )

    def save_transition(self, member: MemberRecord, transition: TransitionRecord) -> None:
        """Write the member's new state and the transition that led to it atomically."""
        self.save_transitions([(member, transition)])

    def save_transitions(self, changes: Sequence[tuple[MemberRecord, TransitionRecord]]) -> None:
        """Several members' new states and their transitions in one transaction: all or none. One commit
        (one WAL sync) for a batch instead of one each, e.g. when thousands of agents connect at once."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for member, _ in changes:
                self.save_member(member)
            self._db.executemany(
                "INSERT INTO transitions (member_id, from_state, to_state, at, stimulus, reason) "
                "VALUES (?,?,?,?,?,?)",
                [(t.member_id, t.from_state, t.to_state, t.at, t.stimulus, t.reason) for _, t in changes],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def save_heartbeats(self, members: Iterable[MemberRecord]) -> None:
        """Batch write of the heartbeat-derived columns only (the registry's flush), in one transaction.

        It runs in a worker thread (at 1,000 members a flush takes tens of milliseconds the event loop
        should spend on heartbeats), on a connection of its own: sqlite3 connections are not shared
        between threads mid-transaction. It never writes state, drain or identity columns, so a flush
        of a snapshot taken just before a transition cannot undo that transition.
        """
        rows = [(json.dumps(m.capacity.to_dict()), m.agent_version, m.last_heartbeat, m.running_jobs,
                 json.dumps([vars(v) for v in m.mounts]), m.member_id) for m in members]
        with self._heartbeat_lock:
            if self._heartbeat_db is None:
                self._heartbeat_db = self._connect()
            db = self._heartbeat_db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("UPDATE members SET capacity=?, agent_version=?, last_heartbeat=?, running_jobs=?, "
                               "mounts=? WHERE member_id=?", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def history(self, member_id: str) -> list[TransitionRecord]:
        rows = self._db.execute(
            "SELECT * FROM transitions WHERE member_id = ? ORDER BY id", (member_id,)).fetchall()
        return [TransitionRecord(r["member_id"], r["from_state"], r["to_state"], r["at"], r["stimulus"],
                                 r["reason"]) for r in rows]

    # mounts -----------------------------------------------------------------------------------
    def mounts(self) -> list[dict[str, Any]]:
        # Read on every agent session start (its SyncMounts): kept in memory, dropped on every change.
        if self._mounts is None:
            self._mounts = [dict(r) for r in self._db.execute("SELECT * FROM mounts ORDER BY mount_path")]
        return [dict(m) for m in self._mounts]

    def add_mount(self, mount_path: str, source: str, mode: str, at: float, by: str) -> None:
        self._mounts = None
        self._db.execute("INSERT INTO mounts (mount_path, source, mode, created_at, created_by) "
                         "VALUES (?,?,?,?,?)", (mount_path, source, mode, at, by))

    def remove_mount(self, mount_path: str) -> bool:
        self._mounts = None
        return self._db.execute("DELETE FROM mounts WHERE mount_path = ?", (mount_path,)).rowcount > 0

    # decisions and operations -----------------------------------------------------------------
    def add_decision(self, at: float, action: str, count: int, member_ids: list[str], reason: str) -> int:
        cur = self._db.execute(
            "INSERT INTO decisions (at, action, count, member_ids, reason) VALUES (?,?,?,?,?)",
            (at, action, count, json.dumps(member_ids), reason))
        return int(cur.lastrowid or 0)

    def last_decision(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        out = dict(row)
        out["member_ids"] = json.loads(out["member_ids"])
        return out

    def begin_operation(self, kind: str, decision_id: int | None, at: float, detail: dict[str, Any]) -> int:
        cur = self._db.execute(
            "INSERT INTO operations (kind, state, decision_id, started_at, detail) VALUES (?,?,?,?,?)",
            (kind, "in-flight", decision_id, at, json.dumps(detail, sort_keys=True)))
        return int(cur.lastrowid or 0)

    def update_operation(self, op_id: int, *, state: str | None = None, detail: dict[str, Any] | None = None,
                         finished_at: float | None = None) -> None:
        if state is not None:
            self._db.execute("UPDATE operations SET state = ? WHERE id = ?", (state, op_id))
        if detail is not None:
            self._db.execute("UPDATE operations SET detail = ? WHERE id = ?",
                             (json.dumps(detail, sort_keys=True), op_id))
        if finished_at is not None:
            self._db.execute("UPDATE operations SET finished_at = ? WHERE id = ?", (finished_at, op_id))

    def active_operation(self) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM operations WHERE state = 'in-flight' ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        out = dict(row)
        out["detail"] = json.loads(out["detail"])
        return out

    def recent_operations(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM operations ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    # workspace settings (restricted workspaces) -------------------------------------------------
    def workspace_settings(self, slot: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM workspace_settings WHERE slot = ?", (slot,)).fetchone()
        if row is None:
            return None
        return {"allowlist": json.loads(row["allowlist"]), "upload": bool(row["upload"]),
                "changed_at": row["changed_at"], "changed_by": row["changed_by"]}

    def save_workspace_settings(self, slot: str, allowlist: list[str], upload: bool, at: float, by: str) -> None:
        self._db.execute(
            "INSERT INTO workspace_settings (slot, allowlist, upload, changed_at, changed_by) VALUES (?,?,?,?,?) "
            "ON CONFLICT(slot) DO UPDATE SET allowlist=excluded.allowlist, upload=excluded.upload, "
            "changed_at=excluded.changed_at, changed_by=excluded.changed_by",
            (slot, json.dumps(allowlist), int(upload), at, by))


def _member_to_row(m: MemberRecord) -> tuple[Any, ...]:
    mounts = [vars(v) for v in m.mounts]
    return (m.member_id, m.state.value, m.state_since, m.hostname, m.ip, m.role, m.joined_at,
            json.dumps(m.capacity.to_dict()), m.agent_version, m.last_heartbeat, m.running_jobs,
            int(m.sge_configured), int(m.spot), json.dumps(m.drain, sort_keys=True), json.dumps(mounts))


def _member_from_row(r: sqlite3.Row) -> MemberRecord:
    return MemberRecord(
        member_id=r["member_id"], state=MemberState(r["state"]), state_since=r["state_since"],
        hostname=r["hostname"], ip=r["ip"], role=r["role"], joined_at=r["joined_at"],
        capacity=Capacity.from_dict(json.loads(r["capacity"])), agent_version=r["agent_version"],
        last_heartbeat=r["last_heartbeat"], running_jobs=r["running_jobs"],
        sge_configured=bool(r["sge_configured"]), spot=bool(r["spot"]), drain=json.loads(r["drain"]),
        mounts=tuple(MountStateView(**v) for v in json.loads(r["mounts"])),
    )
