"""Workspace settings in the store: the migration step, pending vs in force, idempotent edits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from manager.errors import RequestError
from manager.store import SCHEMA_VERSION, Store
from manager.workspace_settings import WorkspaceSettingsService


def test_a_file_from_before_the_step_gets_the_settings_table(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.execute("DROP TABLE workspace_settings")
    raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    store = Store(db)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    WorkspaceSettingsService(store, lambda: 1.0).add_url("example.com", "ann")
    assert store.workspace_settings("pending") is not None


def test_edits_stay_pending_until_applied(tmp_path: Path) -> None:
    service = WorkspaceSettingsService(Store(tmp_path / "state.db"), lambda: 5.0)
    assert not service.in_force().restricted and service.in_force().upload
    service.add_url("example.com", "ann")
    service.add_url("EXAMPLE.com", "ann")  # already there (names are case-insensitive)
    service.set_rights(False, "ann")
    assert service.pending().allowlist == ("example.com",) and not service.pending().upload
    assert not service.in_force().restricted
    assert service.apply_pending("bob") and not service.apply_pending("bob")  # nothing left to apply
    in_force = service.in_force()
    assert in_force.restricted and not in_force.upload and in_force.changed_by == "bob"


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    service = WorkspaceSettingsService(Store(tmp_path / "state.db"), lambda: 5.0)
    service.set_allowlist(["pypi.org", "github.com"], "ann")
    with pytest.raises(RequestError, match="line 2"):
        service.set_allowlist(["ok.example.com", "bad..example.com"], "ann")
    with pytest.raises(RequestError, match="not in the allowlist"):
        service.remove_url("cran.r-project.org", "ann")
    service.remove_url("pypi.org", "ann")
    with pytest.raises(RequestError, match="last allowed URL"):
        service.remove_url("github.com", "ann")
    assert service.pending().allowlist == ("github.com",)
    service.set_allowlist([], "ann")  # lifting the restriction is explicit
    assert not service.pending().restricted


def test_a_large_activity_answer_keeps_the_newest_entries_that_fit() -> None:
    from manager.workspace_service import newest_within

    entries = [f'{{"n": {i}, "pad": "{"x" * 90}"}}' for i in range(1000)]
    kept = newest_within(entries, 10_000)
    assert kept == entries[-len(kept):] and 0 < len(kept) < 1000
    assert sum(len(e) + 8 for e in kept) <= 10_000
    assert newest_within(entries[:3], 10_000) == entries[:3]
