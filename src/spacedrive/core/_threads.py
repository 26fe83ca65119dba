"""Blocking work in a thread, without letting cancellation outrun it.

``asyncio.to_thread`` returns as soon as the awaiting task is cancelled, while the thread goes
on running. When that thread uses a resource the task then releases (an SQLite connection
closed in a ``finally``), the two collide: closing a connection under a running statement
crashes the process. :func:`run_blocking` waits for the thread before letting a cancellation
through, so what the task owns outlives the work done with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_blocking"]

_T = TypeVar("_T")
_MAX_WORKERS = 4
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(_MAX_WORKERS, thread_name_prefix="spacedrive-io")
    return _executor


async def run_blocking(fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn(*args)`` in a worker thread; if cancelled, wait for it to finish, then re-raise."""
    future = _pool().submit(fn, *args)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        # Block the loop for the rest of this one batch (bounded by the caller's batch size):
        # awaiting here could itself be cancelled again by a shutting-down event loop.
        concurrent.futures.wait([future])
        raise
