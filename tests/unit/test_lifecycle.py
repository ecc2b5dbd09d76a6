from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manager.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    MemberEvent,
    MemberState,
    can_take,
    next_state,
)

STATES = [None, *MemberState]


def test_the_happy_path_of_a_member() -> None:
    path = [MemberEvent.LAUNCH_REQUESTED, MemberEvent.AGENT_REGISTERED, MemberEvent.SGE_READY,
            MemberEvent.DRAIN_REQUESTED, MemberEvent.DRAIN_COMPLETED, MemberEvent.NODE_TERMINATED]
    state: MemberState | None = None
    seen = []
    for event in path:
        state = next_state(state, event)
        seen.append(state)
    assert seen == [MemberState.REQUESTED, MemberState.JOINING, MemberState.READY, MemberState.DRAINING,
                    MemberState.DRAINED, MemberState.TERMINATED]


def test_lost_member_rejoins_through_joining() -> None:
    assert next_state(MemberState.READY, MemberEvent.HEARTBEAT_TIMEOUT) == MemberState.LOST
    assert next_state(MemberState.LOST, MemberEvent.AGENT_REGISTERED) == MemberState.JOINING


def test_spot_notice_interrupts_then_drains() -> None:
    assert next_state(MemberState.READY, MemberEvent.SPOT_NOTICE) == MemberState.INTERRUPTED
    assert next_state(MemberState.INTERRUPTED, MemberEvent.DRAIN_COMPLETED) == MemberState.DRAINED


def test_aborted_drain_returns_to_ready() -> None:
    assert next_state(MemberState.DRAINING, MemberEvent.DRAIN_ABORTED) == MemberState.READY


@pytest.mark.parametrize("event", list(MemberEvent))
def test_terminated_is_terminal(event: MemberEvent) -> None:
    assert not can_take(MemberState.TERMINATED, event)
    with pytest.raises(IllegalTransition, match="TERMINATED"):
        next_state(MemberState.TERMINATED, event)


def test_a_removed_member_can_never_come_back_to_ready() -> None:
    for event in MemberEvent:
        if can_take(MemberState.DRAINED, event):
            assert next_state(MemberState.DRAINED, event) == MemberState.TERMINATED


@given(st.lists(st.sampled_from(list(MemberEvent)), max_size=40))
def test_any_event_sequence_stays_inside_the_table(events: list[MemberEvent]) -> None:
    state: MemberState | None = None
    for event in events:
        if can_take(state, event):
            new = next_state(state, event)
            assert (state, event) in TRANSITIONS and new in MemberState
            state = new
        else:
            with pytest.raises(IllegalTransition):
                next_state(state, event)
