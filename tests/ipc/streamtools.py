"""Helpers shared by the stream, compression and fd-passing tests."""

import asyncio
from collections.abc import Callable

from spacedrive.ipc import Connection, StreamReader, StreamWriter


async def eventually(condition: Callable[[], bool]) -> None:
    """Let the loop run, one iteration at a time, until ``condition`` holds.

    Not a sleep: nothing here depends on time; the caller bounds it with ``asyncio.timeout``.
    """
    loop = asyncio.get_running_loop()
    while not condition():
        tick = loop.create_future()
        loop.call_soon(tick.set_result, None)
        await tick


async def accept(connection: Connection, stream_id: int) -> StreamReader:
    """Accept a stream once its opening frame arrived (a real peer announces it after that)."""
    await eventually(lambda: connection._mux is not None and connection._mux.unclaimed(stream_id) is not None)
    return connection.accept_stream(stream_id)


async def read_all(reader: StreamReader) -> bytes:
    return b"".join([bytes(chunk) async for chunk in reader])


async def write_all(writer: StreamWriter, data: bytes, piece: int = 100_000) -> None:
    async with writer:
        for start in range(0, len(data), piece):
            await writer.write(data[start : start + piece])
