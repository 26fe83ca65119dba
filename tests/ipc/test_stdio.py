"""The pipe transport: two connections over a pair of pipes, as the core and a child speak on stdio."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection
from spacedrive.ipc._errors import ConnectionClosed
from spacedrive.ipc._stdio import ChildPipes, connect_pipes

from .conftest import WAIT


async def echo(ctx: RequestContext, params: Any) -> Any:
    return params


@asynccontextmanager
async def piped(core: Connection, child: Connection) -> AsyncIterator[None]:
    pipes = ChildPipes.open()
    await connect_pipes(core, *pipes.take_core_ends())
    await connect_pipes(child, pipes.child_stdin, pipes.child_stdout)
    async with core, child:
        yield


async def test_requests_travel_both_ways_over_a_pair_of_pipes() -> None:
    core, child = Connection({"echo": echo}), Connection({"echo": echo})
    async with asyncio.timeout(WAIT), piped(core, child):
        assert await core.request("echo", {"a": 1}) == {"a": 1}
        assert await child.request("echo", [2]) == [2]
        big = "x" * (1 << 20)  # more than a pipe buffer: needs the write side's flow control
        assert await core.request("echo", [big]) == [big]


async def test_closing_one_side_ends_the_other_and_fails_its_pending_requests() -> None:
    blocked = asyncio.Event()

    async def hang(ctx: RequestContext, params: Any) -> Any:
        blocked.set()
        await asyncio.Event().wait()

    core, child = Connection(), Connection({"hang": hang})
    async with asyncio.timeout(WAIT), piped(core, child):
        pending = asyncio.ensure_future(core.request("hang"))
        await blocked.wait()
        child.close()
        await core.wait_closed()
        with pytest.raises(ConnectionClosed):
            await pending
