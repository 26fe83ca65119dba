"""The file locks: shared and exclusive, bounded waits, and no lock left held by a waiter that gave up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spacedrive.credentials import CredentialError
from spacedrive.credentials._locks import hold, hold_async

WAIT_S = 30.0


async def test_shared_holders_coexist_and_keep_an_exclusive_one_out(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    async with hold_async(path, exclusive=False, timeout_s=WAIT_S, what="a"):
        async with hold_async(path, exclusive=False, timeout_s=0.05, what="b"):  # no wait: shared
            pass
        with pytest.raises(CredentialError, match="timed out"):
            async with hold_async(path, exclusive=True, timeout_s=0.05, what="c"):
                pass
    async with hold_async(path, exclusive=True, timeout_s=WAIT_S, what="c"):
        pass


async def test_an_exclusive_waiter_gets_the_lock_when_the_holder_leaves(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    got = asyncio.Event()

    async def waiter() -> None:
        async with hold_async(path, exclusive=True, timeout_s=WAIT_S, what="the test lock"):
            got.set()

    with hold(path, exclusive=True):
        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        assert not got.is_set()
    async with asyncio.timeout(WAIT_S):
        await task
    assert got.is_set()


async def test_a_waiter_that_times_out_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    expected = r"timed out after 0\.05 s waiting for the test lock"
    with hold(path, exclusive=True), pytest.raises(CredentialError, match=expected):
        async with hold_async(path, exclusive=True, timeout_s=0.05, what="the test lock"):
            pass
    # The abandoned thread takes the lock once it is free, and lets it go at once.
    async with hold_async(path, exclusive=True, timeout_s=WAIT_S, what="the test lock"):
        pass


async def test_a_cancelled_waiter_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "lock"

    async def waiter() -> None:
        async with hold_async(path, exclusive=True, timeout_s=WAIT_S, what="the test lock"):
            pass

    with hold(path, exclusive=True):
        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with hold_async(path, exclusive=True, timeout_s=WAIT_S, what="the test lock"):
        pass
