"""The member lifecycle as data: states, the events that move a member, and the allowed transitions.

Pure: no I/O. The registry persists a transition before acting on it (so a manager restarted with
`kill -9` resumes every half-done operation) and records the stimulus and reason with it.

    REQUESTED -> JOINING -> READY -> DRAINING -> DRAINED -> TERMINATED
    plus LOST (no heartbeat for lost_after_s), INTERRUPTED (spot notice), and NODE_LEFT straight to
    TERMINATED: a member that ended itself while its manager was away (agent/orphan.py).
"""

from __future__ import annotations

from enum import StrEnum


class MemberState(StrEnum):
    REQUESTED = "REQUESTED"  # the provider was asked for the node; no agent yet
    JOINING = "JOINING"  # agent registered; being configured in SGE
    READY = "READY"  # agent heartbeating and the host is seen by SGE
    DRAINING = "DRAINING"  # being emptied before removal (see manager.drain)
    DRAINED = "DRAINED"  # empty, unmounted, wiped, out of SGE; waiting for the provider
    TERMINATED = "TERMINATED"  # gone (terminal)
    LOST = "LOST"  # no heartbeat for lost_after_s
    INTERRUPTED = "INTERRUPTED"  # the cloud announced it reclaims the node (spot)


class MemberEvent(StrEnum):
    LAUNCH_REQUESTED = "launch-requested"
    LAUNCH_FAILED = "launch-failed"
    AGENT_REGISTERED = "agent-registered"
    SGE_READY = "sge-ready"
    HEARTBEAT_TIMEOUT = "heartbeat-timeout"
    DRAIN_REQUESTED = "drain-requested"
    DRAIN_ABORTED = "drain-aborted"
    DRAIN_COMPLETED = "drain-completed"
    SPOT_NOTICE = "spot-notice"
    NODE_TERMINATED = "node-terminated"
    NODE_LEFT = "node-left"  # the node ended on its own (an orphaned member, agent/orphan.py): recorded after the fact


S, E = MemberState, MemberEvent

# (state, event) -> next state. Anything not listed is an illegal transition.
TRANSITIONS: dict[tuple[MemberState | None, MemberEvent], MemberState] = {
    (None, E.LAUNCH_REQUESTED): S.REQUESTED,
    (None, E.AGENT_REGISTERED): S.JOINING,  # an agent started outside the provider (e.g. manager node)
    (S.REQUESTED, E.AGENT_REGISTERED): S.JOINING,
    (S.REQUESTED, E.LAUNCH_FAILED): S.TERMINATED,
    (S.REQUESTED, E.HEARTBEAT_TIMEOUT): S.LOST,  # never joined within the join timeout
    (S.JOINING, E.AGENT_REGISTERED): S.JOINING,
    (S.JOINING, E.SGE_READY): S.READY,
    (S.JOINING, E.HEARTBEAT_TIMEOUT): S.LOST,
    (S.READY, E.HEARTBEAT_TIMEOUT): S.LOST,
    (S.LOST, E.AGENT_REGISTERED): S.JOINING,
    (S.REQUESTED, E.DRAIN_REQUESTED): S.DRAINING,
    (S.JOINING, E.DRAIN_REQUESTED): S.DRAINING,
    (S.READY, E.DRAIN_REQUESTED): S.DRAINING,
    (S.LOST, E.DRAIN_REQUESTED): S.DRAINING,
    (S.INTERRUPTED, E.DRAIN_REQUESTED): S.INTERRUPTED,
    (S.DRAINING, E.DRAIN_ABORTED): S.READY,
    (S.DRAINING, E.DRAIN_COMPLETED): S.DRAINED,
    (S.INTERRUPTED, E.DRAIN_COMPLETED): S.DRAINED,
    (S.REQUESTED, E.SPOT_NOTICE): S.INTERRUPTED,
    (S.JOINING, E.SPOT_NOTICE): S.INTERRUPTED,
    (S.READY, E.SPOT_NOTICE): S.INTERRUPTED,
    (S.DRAINING, E.SPOT_NOTICE): S.INTERRUPTED,
    (S.DRAINED, E.NODE_TERMINATED): S.TERMINATED,
    (S.LOST, E.NODE_TERMINATED): S.TERMINATED,
    (S.INTERRUPTED, E.NODE_TERMINATED): S.TERMINATED,
    (S.REQUESTED, E.NODE_TERMINATED): S.TERMINATED,
    (S.JOINING, E.NODE_LEFT): S.TERMINATED,
    (S.READY, E.NODE_LEFT): S.TERMINATED,
    (S.LOST, E.NODE_LEFT): S.TERMINATED,
}

# States in which a member counts towards the cluster's size (and its max).
LIVE_STATES = frozenset({S.REQUESTED, S.JOINING, S.READY, S.DRAINING, S.DRAINED, S.LOST, S.INTERRUPTED})
# States in which the member's agent is expected to heartbeat.
HEARTBEATING_STATES = frozenset({S.JOINING, S.READY, S.DRAINING, S.INTERRUPTED})


class IllegalTransition(Exception):
    def __init__(self, state: MemberState | None, event: MemberEvent) -> None:
        super().__init__(f"a member in state {state or 'NEW'} cannot take event {event}")
        self.state, self.event = state, event


def next_state(state: MemberState | None, event: MemberEvent) -> MemberState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def can_take(state: MemberState | None, event: MemberEvent) -> bool:
    return (state, event) in TRANSITIONS
