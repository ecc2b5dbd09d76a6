"""In-process fan-out of cluster events to WatchEvents subscribers (bounded; slow readers drop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClusterEventData:
    at: float
    kind: str  # "transition", "decision", "mount", "activity"
    message: str
    member_id: str = ""
    detail: dict[str, str] = field(default_factory=dict)


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[ClusterEventData]] = set()
        self._queue_size = queue_size

    def publish(self, event: ClusterEventData) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a stalled watcher must not grow memory without bound
                queue.get_nowait()
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[ClusterEventData]:
        queue: asyncio.Queue[ClusterEventData] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ClusterEventData]) -> None:
        self._subscribers.discard(queue)
