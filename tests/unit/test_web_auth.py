"""Web access logins and history (issue 19): the pure parts, with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.authz import Role
from manager.store import Store
from manager.web.auth import LINK_TTL_S, LoginRefused, WebLogins
from manager.web.history import History, Sample, member_hours


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_opens_one_session_with_the_askers_role() -> None:
    clock = Clock()
    logins = WebLogins(clock)
    token, expires = logins.issue_link("ana", Role.VIEWER)
    assert expires == clock.now + LINK_TTL_S and len(token) >= 40
    session_id, session = logins.redeem(token)
    assert (session.user, session.role) == ("ana", Role.VIEWER)
    assert logins.session(session_id) == session
    with pytest.raises(LoginRefused, match="already used"):
        logins.redeem(token)


def test_links_expire_within_minutes_and_sessions_expire_too() -> None:
    clock = Clock()
    logins = WebLogins(clock, session_ttl_s=3600)
    token, _ = logins.issue_link("ana", Role.ADMINISTRATOR)
    clock.now += LINK_TTL_S + 1
    with pytest.raises(LoginRefused):
        logins.redeem(token)
    token, _ = logins.issue_link("ana", Role.ADMINISTRATOR)
    session_id, _ = logins.redeem(token)
    clock.now += 3601
    assert logins.session(session_id) is None


def test_secrets_are_kept_only_as_digests() -> None:
    logins = WebLogins(Clock())
    token, _ = logins.issue_link("ana", Role.VIEWER)
    session_id, _ = logins.redeem(logins.issue_link("bo", Role.VIEWER)[0])
    kept = repr(vars(logins))
    assert token not in kept and session_id not in kept


def test_ending_sessions_by_id_by_user_and_all() -> None:
    logins = WebLogins(Clock())
    a, _ = logins.redeem(logins.issue_link("ana", Role.VIEWER)[0])
    b, _ = logins.redeem(logins.issue_link("bo", Role.VIEWER)[0])
    c, _ = logins.redeem(logins.issue_link("bo", Role.VIEWER)[0])
    assert logins.end(a) is not None and logins.session(a) is None
    assert logins.end_user("bo") == 2 and logins.session(b) is None and logins.session(c) is None
    pending, _ = logins.issue_link("ana", Role.VIEWER)
    logins.clear()
    with pytest.raises(LoginRefused):
        logins.redeem(pending)


@pytest.mark.parametrize("token", ["", "x" * 500, "not-a-token"])
def test_junk_tokens_are_refused(token: str) -> None:
    with pytest.raises(LoginRefused):
        WebLogins(Clock()).redeem(token)


def test_history_keeps_a_bounded_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    history = History(store, retention_s=100)
    for i in range(30):
        history.add(Sample(at=1000.0 + 10 * i, members={"READY": i}, pending_cores=i))
    kept = history.since(0)
    assert kept[0].at == 1190.0 and kept[-1].at == 1290.0 and len(kept) == 11
    assert kept[-1].members == {"READY": 29}
    store.add_decision(1200.0, "scale-up", 2, ["m1", "m2"], "pending demand")
    store.add_decision(1210.0, "none", 0, [], "nothing to do")
    assert [op["action"] for op in history.scale_operations(0)] == ["scale-up"]


def test_member_hours_by_mode_skip_gaps_when_the_manager_was_down() -> None:
    samples = [Sample(at=0, ready_standard=2, ready_economy=1), Sample(at=1800, ready_standard=2, ready_economy=1),
               Sample(at=3600, ready_standard=0)]
    assert member_hours(samples, max_gap_s=3600) == {"standard": 2.0, "economy": 1.0}
    # a 10-hour hole (manager down) counts for max_gap_s only
    assert member_hours([Sample(at=0, ready_standard=1), Sample(at=36_000)], max_gap_s=30) == \
        {"standard": pytest.approx(30 / 3600), "economy": 0.0}
