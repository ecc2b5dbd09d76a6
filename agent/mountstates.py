"""The lifecycle of one mount on a node, as data. Pure: no I/O.

    unmounted --start--> mounting --ready--> mounted --lost--> stale --retry--> mounting
                          |                                     |
                          +--mount-failed--> failed <--give-up--+
    any state --unmount--> unmounted;  failed --start--> mounting (a new create/sync retries it)
"""

from __future__ import annotations

import enum


class MountState(enum.StrEnum):
    MOUNTING = "mounting"
    MOUNTED = "mounted"
    STALE = "stale"  # the worker died or stopped answering; the kernel returns ENOTCONN
    FAILED = "failed"  # gave up after retries; the report's message says why
    UNMOUNTED = "unmounted"


class MountEvent(enum.StrEnum):
    START = "start"
    READY = "ready"
    MOUNT_FAILED = "mount-failed"
    LOST = "lost"
    RETRY = "retry"
    GIVE_UP = "give-up"
    UNMOUNT = "unmount"


TRANSITIONS: dict[tuple[MountState, MountEvent], MountState] = {
    (MountState.UNMOUNTED, MountEvent.START): MountState.MOUNTING,
    (MountState.FAILED, MountEvent.START): MountState.MOUNTING,
    (MountState.MOUNTING, MountEvent.READY): MountState.MOUNTED,
    (MountState.MOUNTING, MountEvent.MOUNT_FAILED): MountState.FAILED,
    (MountState.MOUNTED, MountEvent.LOST): MountState.STALE,
    (MountState.STALE, MountEvent.RETRY): MountState.MOUNTING,
    (MountState.STALE, MountEvent.GIVE_UP): MountState.FAILED,
    **{(state, MountEvent.UNMOUNT): MountState.UNMOUNTED for state in MountState},
}


class InvalidTransition(Exception):
    pass


def next_state(state: MountState, event: MountEvent) -> MountState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"a mount that is {state} cannot take the event {event}") from None
