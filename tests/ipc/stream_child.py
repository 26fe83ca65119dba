"""The integration side of the real-process tests: ``python stream_child.py MODE SOCKET [MIB]``.

Modes (the core's side is the test, with a ``UnixServer`` whose connections have streams on):

* ``send``: opens a stream, calls ``store {"stream", "size"}`` and writes MIB mebibytes of
  ``block(i)``; prints one JSON line: the answer, its own peak RSS and its RSS before the
  transfer;
* ``die``: answers ``storage.read`` with a stream and writes MIB mebibytes to it, but exits
  abruptly (``os._exit``) halfway;
* ``fd``: puts MIB mebibytes in a memfd, enables fd passing after ``fd_passing`` (the core
  switches first), passes the descriptor and calls ``import_fd {"fd", "size"}``; prints the answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
from typing import Any

from benchmarks._common import peak_rss_mib, rss_now_mib

from spacedrive.ipc import Connection, Params, RequestContext, StreamWriter, connect_unix

MIB = 1024 * 1024
SEED = 20260525


def block(index: int, _base: list[bytes] = []) -> bytes:  # noqa: B006 (a cache)
    """The ``index``-th MiB of the test data: random, and different from every other MiB."""
    if not _base:
        _base.append(random.Random(SEED).randbytes(MIB))
    return index.to_bytes(8, "big") + _base[0][8:]


async def pump(writer: StreamWriter, mib: int, *, die: bool = False) -> None:
    async with writer:
        for index in range(mib):
            if die and index == mib // 2:
                os._exit(3)
            await writer.write(block(index))


async def send(connection: Connection, mib: int) -> object:
    writer = connection.open_stream()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pump(writer, mib))
        return await connection.request("store", {"stream": writer.id, "size": mib * MIB})


async def serve_and_die(connection: Connection, mib: int) -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def read(ctx: RequestContext, params: Params) -> Any:
        writer = ctx.open_stream()
        tasks.add(asyncio.create_task(pump(writer, mib, die=True)))
        return {"size": mib * MIB, "stream": writer.id}

    connection.set_handler("storage.read", read)
    await connection.wait_closed()


async def send_fd(connection: Connection, mib: int) -> object:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("stream-child")
    else:
        fd, path = tempfile.mkstemp()
        os.unlink(path)
    try:
        for index in range(mib):
            os.write(fd, block(index))
        os.lseek(fd, 0, os.SEEK_SET)
        await connection.request("fd_passing")
        connection.enable_fd_passing()
        fd_id = await connection.send_fd(fd)
        return await connection.request("import_fd", {"fd": fd_id, "size": mib * MIB})
    finally:
        os.close(fd)


async def main(mode: str, path: str, mib: int) -> None:
    connection = Connection(name="child", request_timeout=60.0)
    connection.enable_streams(role="integration")
    await connect_unix(path, connection)
    block(0)
    baseline = rss_now_mib()
    async with connection:
        if mode == "die":
            await serve_and_die(connection, mib)
            return
        answer = await send_fd(connection, mib) if mode == "fd" else await send(connection, mib)
    print(json.dumps({"answer": answer, "peak_rss_mib": peak_rss_mib(), "baseline_rss_mib": baseline}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1))
