"""Credentials the manager accepts: one per member, one per user, and one-time join tokens.

Why bearer secrets over TLS rather than mTLS client certificates: agents and workspace-ctl share
one port, and Python gRPC's server either requires a client certificate of every caller or never
asks for one; a per-principal secret checked in the auth interceptor covers members, users and join
tokens the same way, revocation is a row delete (no CRL), and the channel is already TLS.

Secrets are 256-bit random values with a kind prefix (bcm_ member, bcu_ user, bcj_ join); the
store keeps only their SHA-256 digest, and an in-memory map digest -> principal answers each call
without touching SQLite. Revocation updates both at once, so it takes effect on the next call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.logging import get_logger
from manager.authz import Principal, Role
from manager.store import Store

log = get_logger("credentials")

MEMBER_PREFIX, USER_PREFIX, JOIN_PREFIX = "bcm_", "bcu_", "bcj_"
JOIN_TOKEN_TTL_S = 600.0
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MAX_SECRET_LENGTH = 256


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


class CredentialRefused(Exception):
    pass


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    created_at: float
    created_by: str


class CredentialStore:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._principals: dict[str, Principal] = {}
        # (kind, name) -> its digests: revoking one principal's credential must not scan every member's
        # (10,000 members joining would be 10,000 full scans)
        self._digests: dict[tuple[str, str], set[str]] = {}
        self._roles = {r["name"]: Role.parse(r["role"]) for r in store.execute("SELECT name, role FROM users")}
        for row in store.execute("SELECT digest, kind, name FROM credentials"):
            self._remember(row["digest"], Principal(row["kind"], row["name"], self._roles.get(row["name"])
                                                    if row["kind"] == "user" else None))

    # authentication ---------------------------------------------------------------------------
    def principal(self, secret: str) -> Principal | None:
        """The member or user this credential belongs to (None: unknown or revoked)."""
        if not secret or len(secret) > MAX_SECRET_LENGTH or secret.startswith(JOIN_PREFIX):
            return None
        return self._principals.get(digest(secret))

    def join_principal(self, token: str) -> Principal | None:
        """A live (unused, unexpired) join token, as the principal of the member it enrols. A token
        whose node the provider has not recorded yet is named '' (the caller retries)."""
        if not token.startswith(JOIN_PREFIX) or len(token) > MAX_SECRET_LENGTH:
            return None
        rows = self._store.execute("SELECT member_id, expires_at, used_at FROM join_tokens WHERE digest = ?",
                                   (digest(token),))
        if not rows or rows[0]["used_at"] is not None or rows[0]["expires_at"] < self._clock():
            return None
        return Principal("join", rows[0]["member_id"])

    # members ----------------------------------------------------------------------------------
    def issue_join_tokens(self, count: int, ttl_s: float = JOIN_TOKEN_TTL_S, member_id: str = "") -> list[str]:
        tokens = [new_secret(JOIN_PREFIX) for _ in range(count)]
        expires = self._clock() + ttl_s
        for token in tokens:
            self._store.execute("INSERT INTO join_tokens (digest, member_id, expires_at) VALUES (?, ?, ?)",
                                (digest(token), member_id, expires))
        self._store.execute("DELETE FROM join_tokens WHERE expires_at < ?", (self._clock() - 86_400,))
        return tokens

    def bind_join_token(self, token: str, member_id: str) -> None:
        """The provider launched `member_id` with `token`: from now on the token enrols that member only."""
        self._store.execute("UPDATE join_tokens SET member_id = ? WHERE digest = ? AND member_id = ''",
                            (member_id, digest(token)))

    def redeem_join_token(self, token: str) -> tuple[str, str]:
        """Single use: mark the token used and issue the member's credential (replacing any earlier one)."""
        principal = self.join_principal(token)
        if principal is None:
            raise CredentialRefused("join token unknown, used or expired")
        if not principal.name:
            raise CredentialRefused("join token not yet bound to a launched node")
        self._store.execute("UPDATE join_tokens SET used_at = ? WHERE digest = ? AND used_at IS NULL",
                            (self._clock(), digest(token)))
        return principal.name, self._issue("member", principal.name, MEMBER_PREFIX)

    def install_member_credential(self, member_id: str, secret: str) -> None:
        """A credential made outside the manager (the manager node's own agent, from a file)."""
        self._install("member", member_id, secret)

    def revoke_member(self, member_id: str) -> bool:
        return self._revoke("member", member_id)

    def has_member(self, member_id: str) -> bool:
        return bool(self._digests.get(("member", member_id)))

    # users ------------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role, created_by: str) -> tuple[UserRecord, str]:
        check_user_name(name)
        now = self._clock()
        self._store.execute(
            "INSERT INTO users (name, role, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT(name) "
            "DO UPDATE SET role = excluded.role, created_at = excluded.created_at, created_by = excluded.created_by",
            (name, role.label, now, created_by))
        self._roles[name] = role
        secret = self._issue("user", name, USER_PREFIX)
        return UserRecord(name, role, now, created_by), secret

    def install_user(self, name: str, role: Role, secret: str, created_by: str) -> None:
        check_user_name(name)
        self._store.execute(
            "INSERT INTO users (name, role, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT(name) "
            "DO UPDATE SET role = excluded.role", (name, role.label, self._clock(), created_by))
        self._roles[name] = role
        self._install("user", name, secret)

    def remove_user(self, name: str) -> bool:
        existed = bool(self._store.execute("SELECT name FROM users WHERE name = ?", (name,)))
        self._store.execute("DELETE FROM users WHERE name = ?", (name,))
        self._roles.pop(name, None)
        return self._revoke("user", name) or existed

    def user_role(self, name: str) -> Role | None:
        """The user's role now (None: no such user), from memory."""
        return self._roles.get(name)

    def users(self) -> list[UserRecord]:
        return [UserRecord(r["name"], Role.parse(r["role"]), r["created_at"], r["created_by"])
                for r in self._store.execute("SELECT * FROM users ORDER BY name")]

    # internals --------------------------------------------------------------------------------
    def _issue(self, kind: str, name: str, prefix: str) -> str:
        secret = new_secret(prefix)
        self._install(kind, name, secret)
        return secret

    def _install(self, kind: str, name: str, secret: str) -> None:
        self._revoke(kind, name)  # one credential per principal: a new one replaces the old at once
        key = digest(secret)
        self._store.execute("INSERT OR REPLACE INTO credentials (digest, kind, name, created_at) VALUES (?, ?, ?, ?)",
                            (key, kind, name, self._clock()))
        self._remember(key, Principal(kind, name, self._roles.get(name) if kind == "user" else None))

    def _remember(self, key: str, principal: Principal) -> None:
        self._principals[key] = principal
        self._digests.setdefault((principal.kind, principal.name), set()).add(key)

    def _revoke(self, kind: str, name: str) -> bool:
        gone = self._digests.pop((kind, name), set())
        for key in gone:
            del self._principals[key]
        self._store.execute("DELETE FROM credentials WHERE kind = ? AND name = ?", (kind, name))
        if gone:
            log.info("credential revoked", kind=kind, name=name)
        return bool(gone)


def check_user_name(name: str) -> None:
    if not USER_NAME.match(name):
        raise ValueError(f"user name {name[:40]!r} must be a login name: lower-case letters, digits, '_', '.', '-', "
                         "starting with a letter or '_', at most 32 characters")


def read_secret_file(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: credential shorter than 16 characters")
    return secret
