#!/usr/bin/env python3
"""python-hello: a minimal Spacedrive integration written with the Python SDK.

A ``FileTypeHandler`` for plain-text and Markdown files. As for every ``filetype.*`` method
(docs/protocol.md §5), ``path`` is the absolute local path of the file on the core's machine:
a relative one is refused with -32602 (``InvalidParams``).

* ``filetype.extract_metadata``: line, word and character counts (and Markdown headings).
* ``filetype.validate``: reads the file step by step, checks it is UTF-8 without NUL bytes,
  reports progress after each step and stops as soon as the core cancels the request.

Configuration (all optional): ``root``, an absolute folder that confines the integration: a
path outside it (symbolic links resolved) is refused with -32006 (``PermissionDenied``);
``chunk_size`` and ``chunk_delay_ms`` for ``filetype.validate``. File errors follow §7: a
missing file is -32001 (``NotFound``), another operating-system error -32000 with
``data: {"path", "errno"}``.

The core starts it (see manifest.json); run by hand it explains that it needs the core.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import logging
import stat
from pathlib import Path
from typing import Any

from spacedrive.sdk import (
    ConfigurationError,
    Context,
    FileTypeHandler,
    Integration,
    IntegrationError,
    InvalidParams,
    NotFound,
    PermissionDenied,
    Session,
)

app = Integration("python-hello", name="Hello (Python)", version="0.1.0")
app.capability(
    FileTypeHandler(
        extensions=["txt", "md"],
        mime_types=["text/plain", "text/markdown"],
        processing_modes=["metadata", "validate"],
    )
)
log = logging.getLogger("python-hello")

DEFAULT_CHUNK_SIZE = 64 * 1024


@app.on_initialize
async def check_config(session: Session) -> None:
    root = session.config.get("root")
    if root is None:
        log.info("serving text files anywhere the core sends them")
        return
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise ConfigurationError("config.root must be the absolute path of a folder")
    if not await asyncio.to_thread(Path(root).is_dir):
        raise ConfigurationError(f"config.root {root!r} is not a folder")
    log.info("serving text files below %s", root)


async def open_file(ctx: Context, path: str) -> Path:
    """The regular file at ``path`` (absolute), checked against ``config.root`` if it is set."""
    file = Path(path)
    if "\0" in path or not file.is_absolute():
        raise InvalidParams(
            f"path must be an absolute local path, not {path!r}",
            data={"field": "path", "reason": "not an absolute path"},
        )
    root = ctx.config.get("root")
    if root is not None:
        real, real_root = await asyncio.to_thread(lambda: (file.resolve(), Path(root).resolve()))
        if not real.is_relative_to(real_root):
            raise PermissionDenied(f"{path!r} is outside config.root {root!r}", data={"path": path})
    try:
        mode = (await asyncio.to_thread(file.stat)).st_mode  # stat first: opening a FIFO would block
    except OSError as exc:
        raise file_error(exc, path) from None
    if not stat.S_ISREG(mode):
        raise InvalidParams(
            f"{path!r} is not a regular file", data={"field": "path", "path": path, "reason": "not a file"}
        )
    return file


def file_error(exc: OSError, path: str) -> IntegrationError:
    """An operating-system error as the core should see it (docs/protocol.md §7)."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    data = {"path": path, "errno": code}
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFound(f"no file {path!r}", data=data)
    return IntegrationError(f"cannot read {path!r}: {exc.strerror or code}", data=data)


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    file = await open_file(ctx, path)
    try:
        data = await asyncio.to_thread(file.read_bytes)
    except OSError as exc:
        raise file_error(exc, path) from None
    text = data.decode("utf-8", errors="replace")
    metadata: dict[str, Any] = {
        "bytes": len(data),
        "characters": len(text),
        "lines": len(text.splitlines()),
        "words": len(text.split()),
    }
    if file.suffix.lower() == ".md":
        metadata["headings"] = [
            line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")
        ]
    return {"metadata": metadata}


@app.method("filetype.validate")
async def validate(ctx: Context, path: str) -> dict[str, Any]:
    file = await open_file(ctx, path)
    chunk_size = int(ctx.config.get("chunk_size", DEFAULT_CHUNK_SIZE))
    delay = float(ctx.config.get("chunk_delay_ms", 0)) / 1000
    try:
        return await check_file(ctx, file, chunk_size, delay)
    except OSError as exc:
        raise file_error(exc, path) from None


async def check_file(ctx: Context, file: Path, chunk_size: int, delay: float) -> dict[str, Any]:
    total = (await asyncio.to_thread(file.stat)).st_size
    decoder = codecs.getincrementaldecoder("utf-8")()
    errors: list[str] = []
    done = 0
    with file.open("rb") as stream:  # a regular file (checked): opening it does not block
        while not errors and (chunk := await asyncio.to_thread(stream.read, chunk_size)):
            errors += check_chunk(decoder, chunk, done)
            done += len(chunk)
            ctx.progress(done, total, f"checked {done} of {total} bytes")
            await asyncio.sleep(delay)  # a cancellation from the core lands here
    if not errors:
        errors += check_chunk(decoder, b"", done, final=True)
    return {"valid": not errors, "errors": errors}


def check_chunk(
    decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, final: bool = False
) -> list[str]:
    """The problems of ``chunk``, which starts at byte ``offset`` of the file."""
    nul = chunk.find(b"\0")
    if nul >= 0:
        return [f"NUL byte at offset {offset + nul}"]
    pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        return [f"not UTF-8 at offset {offset - pending + exc.start}: {exc.reason}"]
    return []


if __name__ == "__main__":
    app.run()
