"""A test integration that moves bulk bytes with the SDK's streams and fd passing.

* ``storage.read {path, offset?, length?}``: the file's bytes on a stream (``ctx.stream_from``).
* ``storage.write {path, stream}``: the core's stream, written to ``path``; answers the size
  and the BLAKE2b digest of what it read.
* ``content.process {..., options: {fd}}``: the file behind a descriptor the core passed; answers its size and
  digest (a descriptor, not a path: what a sandboxed integration gets, docs/protocol.md §8c).
* ``session.features``: the features the handshake switched on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from spacedrive.sdk import ContentProcessor, Context, Integration, InvalidParams, LocationProvider

app = Integration("bulk", name="Bulk", version="1.0.0")
app.capability(LocationProvider(supported_protocols=["file"], auth_methods=["None"]))
app.capability(ContentProcessor(input_types=["*"], output_formats=["digest"]))

CHUNK = 256 * 1024


async def chunks(path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size if length is None else offset + length
        while offset < end:
            data = await asyncio.to_thread(os.pread, fd, min(CHUNK, end - offset), offset)
            if not data:
                return
            offset += len(data)
            yield data
    finally:
        os.close(fd)


@app.method("storage.read")
async def read(ctx: Context, path: str, offset: int = 0, length: int | None = None) -> dict[str, Any]:
    size = os.stat(path).st_size - offset
    size = size if length is None else min(size, length)
    return {"size": size, "stream": ctx.stream_from(chunks(path, offset, length)).id}


@app.method("storage.write")
async def write(ctx: Context, path: str, stream: int) -> dict[str, Any]:
    digest = hashlib.blake2b()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        async for chunk in ctx.accept_stream(stream):
            digest.update(chunk)
            await asyncio.to_thread(os.write, fd, chunk)  # a regular file: one write takes it all
            size += len(chunk)
    finally:
        os.close(fd)
    return {"size": size, "digest": digest.hexdigest()}


@app.method("content.process")
async def process(
    ctx: Context, path: str, input_type: str, output_format: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    if options is None or "fd" not in options:
        raise InvalidParams("options.fd is required", data={"field": "options.fd"})
    digest = hashlib.blake2b()
    size = 0
    with os.fdopen(ctx.receive_fd(options["fd"]), "rb") as file:
        while data := file.read(CHUNK):
            digest.update(data)
            size += len(data)
    return {"size": size, "digest": digest.hexdigest()}


@app.method("storage.stat")
async def stat(ctx: Context, path: str) -> dict[str, Any]:
    return {"path": path, "size": os.stat(path).st_size}


@app.method("storage.list")
async def features(ctx: Context, path: str = "/") -> dict[str, Any]:
    """Not a listing: what the handshake switched on (the test asks through a declared method)."""
    return {"features": msgspec.to_builtins(ctx.session.features)}


if __name__ == "__main__":
    app.run()
