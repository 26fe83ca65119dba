"""The event bus: typed events, filtered subscriptions, publishers that never wait.

Each subscription owns a bounded queue. When a subscriber falls behind and its queue is full,
the *oldest* event in it is dropped to make room (the newest state is the useful one for
progress) and the drop is counted on the subscription and on the bus. A publisher therefore
never blocks and never fails because of a subscriber.

The bus lives on one event loop: ``publish`` must be called from that loop's thread (worker
threads hand their results back to the loop, which publishes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "EntriesChanged",
    "Event",
    "EventBus",
    "JobProgress",
    "JobStatusChanged",
    "LocationAdded",
    "LocationRemoved",
    "Subscription",
]

DEFAULT_QUEUE_SIZE = 1024
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event on the bus."""

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {"type": type(self).__name__, **data}


@dataclass(frozen=True, slots=True)
class JobStatusChanged(Event):
    job_id: str
    name: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JobProgress(Event):
    job_id: str
    name: str
    completed: int
    total: int | None
    message: str = ""


@dataclass(frozen=True, slots=True)
class LocationAdded(Event):
    location_id: int
    path: str


@dataclass(frozen=True, slots=True)
class LocationRemoved(Event):
    location_id: int


@dataclass(frozen=True, slots=True)
class EntriesChanged(Event):
    location_id: int
    added: int
    modified: int
    removed: int


EventFilter = Callable[[Event], bool]


@dataclass(eq=False)
class Subscription:
    """A subscriber's view of the bus; iterate it, or ``await get()``."""

    bus: EventBus
    types: tuple[type[Event], ...]
    predicate: EventFilter | None
    queue: asyncio.Queue[Event]
    dropped: int = 0
    closed: bool = field(default=False)

    def wants(self, event: Event) -> bool:
        if self.types and not isinstance(event, self.types):
            return False
        if self.predicate is None:
            return True
        try:
            return self.predicate(event)
        except Exception:  # a broken filter must not break the publisher
            logger.exception("event filter %r failed; event not delivered", self.predicate)
            return False

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self.bus.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True
        self.bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while not self.closed:
            yield await self.queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0
        self.dropped = 0

    def subscribe(
        self,
        *types: type[Event],
        predicate: EventFilter | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        """Receive events of the given types (all when none) that pass ``predicate``."""
        if maxsize < 1:
            raise ValueError("a subscription's queue must hold at least one event")
        sub = Subscription(self, types, predicate, asyncio.Queue(maxsize))
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in self._subscriptions:
            if sub.wants(event):
                sub.offer(event)

    def stats(self) -> dict[str, int]:
        return {
            "subscribers": len(self._subscriptions),
            "published": self.published,
            "dropped": self.dropped,
        }
