"""Browser logins: one-time login links and the sessions they open. Pure (no I/O but the clock).

A login link carries a 256-bit secret that is single use and lives LINK_TTL_S; a session id is
another 256-bit secret, set as an HttpOnly cookie. Both are kept only as SHA-256 digests, so a
memory dump of the table or a log line with a digest grants nothing. Sessions are in memory: a
manager restart (or disabling web access) signs every browser out, which is the safe direction.
A session carries the role of the user who asked for the link, read once at login; removing the
user ends their sessions (end_user).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from manager.authz import Principal, Role

LINK_TTL_S = 180.0
SESSION_TTL_S = 8 * 3600.0
MAX_PENDING_LINKS = 1000  # a flood of link requests cannot grow memory without bound
MAX_TOKEN_LENGTH = 128


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class WebSession:
    user: str
    role: Role
    started_at: float
    expires_at: float

    @property
    def principal(self) -> Principal:
        return Principal("user", self.user, self.role)


@dataclass(frozen=True)
class _Link:
    user: str
    role: Role
    expires_at: float


class LoginRefused(Exception):
    pass


class WebLogins:
    def __init__(self, clock: Callable[[], float] = time.time, link_ttl_s: float = LINK_TTL_S,
                 session_ttl_s: float = SESSION_TTL_S) -> None:
        self._clock = clock
        self.link_ttl_s = link_ttl_s
        self.session_ttl_s = session_ttl_s
        self._links: dict[str, _Link] = {}
        self._sessions: dict[str, WebSession] = {}

    def issue_link(self, user: str, role: Role) -> tuple[str, float]:
        """A one-time login secret for `user` and when it expires."""
        self._prune()
        if len(self._links) >= MAX_PENDING_LINKS:
            oldest = min(self._links, key=lambda k: self._links[k].expires_at)
            del self._links[oldest]
        token = secrets.token_urlsafe(32)
        expires = self._clock() + self.link_ttl_s
        self._links[_digest(token)] = _Link(user, role, expires)
        return token, expires

    def redeem(self, token: str) -> tuple[str, WebSession]:
        """Single use: the link's secret becomes a session (its id and record). Raises LoginRefused."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise LoginRefused("no login token")
        link = self._links.pop(_digest(token), None)  # popped: a second use finds nothing
        now = self._clock()
        if link is None:
            raise LoginRefused("login link unknown or already used")
        if link.expires_at < now:
            raise LoginRefused("login link expired")
        session_id = secrets.token_urlsafe(32)
        session = WebSession(link.user, link.role, now, now + self.session_ttl_s)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def session(self, session_id: str) -> WebSession | None:
        if not session_id or len(session_id) > MAX_TOKEN_LENGTH:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires_at < self._clock():
            del self._sessions[key]
            return None
        return session

    def end(self, session_id: str) -> WebSession | None:
        return self._sessions.pop(_digest(session_id), None) if session_id else None

    def end_user(self, user: str) -> int:
        gone = [k for k, s in self._sessions.items() if s.user == user]
        for key in gone:
            del self._sessions[key]
        return len(gone)

    def clear(self) -> None:
        self._links.clear()
        self._sessions.clear()

    @property
    def live_sessions(self) -> int:
        self._prune()
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock()
        for table in (self._links, self._sessions):
            for key in [k for k, v in table.items() if v.expires_at < now]:
                del table[key]
