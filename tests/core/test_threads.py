from __future__ import annotations

import asyncio
import threading

from spacedrive.core._threads import run_blocking

WAIT_S = 5.0
BATCH_S = 0.3  # how long the simulated batch goes on after the cancel


async def test_a_cancelled_caller_waits_for_its_thread_before_unwinding() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def work() -> str:
        started.set()
        release.wait(WAIT_S)
        finished.append("thread")
        return "done"

    async def caller() -> None:
        try:
            await run_blocking(work)
        finally:
            finished.append("caller")  # where a connection would be closed

    task = asyncio.create_task(caller())
    async with asyncio.timeout(WAIT_S):
        await asyncio.to_thread(started.wait, WAIT_S)
    # The batch "runs" a little longer after the cancel: without the fix, the caller's
    # finally would run at once, before the thread is done.
    threading.Timer(BATCH_S, release.set).start()
    task.cancel()
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert finished == ["thread", "caller"]


async def test_results_and_errors_come_back_from_the_thread() -> None:
    assert await run_blocking(sum, [1, 2, 3]) == 6
    try:
        await run_blocking(int, "not a number")
    except ValueError as exc:
        assert "not a number" in str(exc)
    else:
        raise AssertionError("the thread's exception was lost")
