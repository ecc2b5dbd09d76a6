"""Restricted workspaces: the allowlist and upload rights, as the manager keeps them.

Two slots in the store: `pending` (what administrators edit) and `in_force` (what nodes enforce).
Edits change `pending` only; the next cluster start (the manager starting, or `cluster start`)
puts it in force, as the product applies workspace edits when the workspace is restarted. Members
get the in-force settings when they are launched, so a running member keeps the settings it was
started with until it is replaced (`cluster stop` + `cluster start` replaces every member).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common.allowlist import Allowlist, InvalidEntry, parse_entry
from manager.errors import invalid, not_found, precondition
from manager.store import Store

IN_FORCE = "in_force"
PENDING = "pending"
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class WorkspaceSettings:
    allowlist: tuple[str, ...] = ()
    upload: bool = True
    changed_at: float = 0.0
    changed_by: str = ""

    @property
    def restricted(self) -> bool:
        """An allowlist makes the workspace restricted; without one outbound traffic is not filtered."""
        return bool(self.allowlist)

    def same_rules(self, other: WorkspaceSettings) -> bool:
        return self.allowlist == other.allowlist and self.upload == other.upload


class WorkspaceSettingsService:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def _load(self, slot: str) -> WorkspaceSettings | None:
        raw = self._store.workspace_settings(slot)
        if raw is None:
            return None
        return WorkspaceSettings(tuple(raw["allowlist"]), raw["upload"], raw["changed_at"], raw["changed_by"])

    def in_force(self) -> WorkspaceSettings:
        return self._load(IN_FORCE) or WorkspaceSettings()

    def pending(self) -> WorkspaceSettings:
        return self._load(PENDING) or self.in_force()

    def _save_pending(self, allowlist: tuple[str, ...], upload: bool, user: str) -> WorkspaceSettings:
        self._store.save_workspace_settings(PENDING, list(allowlist), upload, self._clock(), user)
        return self.pending()

    def set_allowlist(self, lines: list[str], user: str) -> WorkspaceSettings:
        try:
            parsed = Allowlist.parse(lines)
        except InvalidEntry as exc:
            raise invalid(f"allowlist not changed: {exc}") from None
        if len(parsed.rules) > MAX_ENTRIES:
            raise invalid(f"allowlist not changed: {len(parsed.rules)} entries, at most {MAX_ENTRIES}")
        return self._save_pending(tuple(r.entry for r in parsed.rules), self.pending().upload, user)

    def add_url(self, url: str, user: str) -> WorkspaceSettings:
        try:
            rule = parse_entry(url)
        except InvalidEntry as exc:
            raise invalid(f"{url.strip()[:80]!r} not added: {exc}") from None
        current = self.pending()
        if rule.entry.lower() in (e.lower() for e in current.allowlist):
            return current  # idempotent: already there
        if len(current.allowlist) >= MAX_ENTRIES:
            raise invalid(f"the allowlist already has {MAX_ENTRIES} entries, the most it can hold")
        return self._save_pending((*current.allowlist, rule.entry), current.upload, user)

    def remove_url(self, url: str, user: str) -> WorkspaceSettings:
        current = self.pending()
        wanted = url.strip().lower()
        kept = tuple(e for e in current.allowlist if e.lower() != wanted)
        if len(kept) == len(current.allowlist):
            listing = ", ".join(current.allowlist) or "none"
            raise not_found(f"{url.strip()[:80]!r} is not in the allowlist (entries: {listing})")
        if not kept:
            raise precondition(f"{url.strip()!r} is the last allowed URL: removing it would lift the restriction "
                               "(every destination allowed). To do that on purpose: "
                               "`workspace-ctl workspace set-allowlist --file /dev/null`")
        return self._save_pending(kept, current.upload, user)

    def set_rights(self, upload: bool, user: str) -> WorkspaceSettings:
        return self._save_pending(self.pending().allowlist, upload, user)

    def apply_pending(self, user: str) -> bool:  # user: who started the cluster
        """At a cluster start: pending settings come in force. Returns whether anything changed."""
        pending, in_force = self._load(PENDING), self.in_force()
        if pending is None or pending.same_rules(in_force):
            return False
        self._store.save_workspace_settings(IN_FORCE, list(pending.allowlist), pending.upload, self._clock(), user)
        return True
