from __future__ import annotations

import asyncio

from spacedrive.core.events import EventBus, JobProgress, JobStatusChanged, LocationAdded

WAIT_S = 2.0


async def test_subscribers_receive_only_the_types_they_asked_for() -> None:
    bus = EventBus()
    jobs = bus.subscribe(JobStatusChanged)
    everything = bus.subscribe()
    bus.publish(LocationAdded(1, "/tmp"))
    bus.publish(JobStatusChanged("j1", "indexer", "running"))
    async with asyncio.timeout(WAIT_S):
        assert await jobs.get() == JobStatusChanged("j1", "indexer", "running")
        assert [await everything.get(), await everything.get()] == [
            LocationAdded(1, "/tmp"),
            JobStatusChanged("j1", "indexer", "running"),
        ]
    assert jobs.queue.empty()


async def test_a_predicate_filters_events() -> None:
    bus = EventBus()
    mine = bus.subscribe(JobProgress, predicate=lambda e: isinstance(e, JobProgress) and e.job_id == "a")
    bus.publish(JobProgress("b", "x", 1, 10))
    bus.publish(JobProgress("a", "x", 2, 10))
    async with asyncio.timeout(WAIT_S):
        assert (await mine.get()).job_id == "a"  # type: ignore[attr-defined]
    assert mine.queue.empty()


async def test_a_slow_subscriber_never_blocks_the_publisher_and_its_drops_are_counted() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=1000)
    for i in range(10):
        bus.publish(JobProgress("j", "x", i, 10))  # returns at once although nobody reads `slow`
    assert slow.dropped == 7
    assert bus.stats() == {"subscribers": 2, "published": 10, "dropped": 7}
    async with asyncio.timeout(WAIT_S):
        kept = [await slow.get() for _ in range(3)]
    assert [e.completed for e in kept] == [7, 8, 9]  # type: ignore[attr-defined]
    assert fast.dropped == 0
    assert fast.queue.qsize() == 10


async def test_a_broken_predicate_does_not_break_the_publisher() -> None:
    bus = EventBus()

    def broken(_event: object) -> bool:
        raise RuntimeError("bug in a subscriber")

    bus.subscribe(predicate=broken)
    good = bus.subscribe()
    bus.publish(LocationAdded(1, "/x"))
    async with asyncio.timeout(WAIT_S):
        assert await good.get() == LocationAdded(1, "/x")


async def test_a_closed_subscription_receives_nothing_more() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        pass
    bus.publish(LocationAdded(1, "/x"))
    assert sub.queue.empty()
    assert bus.stats()["subscribers"] == 0


def test_events_serialise_with_their_type_name() -> None:
    assert JobStatusChanged("j", "indexer", "failed", "boom").to_json() == {
        "type": "JobStatusChanged",
        "job_id": "j",
        "name": "indexer",
        "status": "failed",
        "error": "boom",
    }
