#!/usr/bin/env python3
"""python-hello: a minimal Spacedrive integration written with the Python SDK.

A ``FileTypeHandler`` for plain-text and Markdown files below the folder named by its
configuration (``root``); request paths are POSIX paths relative to that folder.

* ``filetype.extract_metadata``: line, word and character counts (and Markdown headings).
* ``filetype.validate``: reads the file step by step, checks it is UTF-8 without NUL bytes,
  reports progress after each step and stops as soon as the core cancels the request.

The core starts it (see manifest.json); run by hand it explains that it needs the core.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from pathlib import Path
from typing import Any

from spacedrive.sdk import (
    ConfigurationError,
    Context,
    FileTypeHandler,
    Integration,
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
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise ConfigurationError("config.root must be the absolute path of a folder")
    if not await asyncio.to_thread(Path(root).is_dir):
        raise ConfigurationError(f"config.root {root!r} is not a folder")
    log.info("serving text files below %s", root)


def resolve(ctx: Context, path: str) -> Path:
    """The file at ``path`` (relative to ``config.root``); never outside of it."""
    root = Path(ctx.config["root"]).resolve()
    target = (root / path.lstrip("/")).resolve()
    if not target.is_relative_to(root):
        raise PermissionDenied(f"{path!r} is outside the folder of this integration", data={"path": path})
    if not target.is_file():
        raise NotFound(f"no file {path!r}", data={"path": path})
    return target


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    file = resolve(ctx, path)
    data = await asyncio.to_thread(file.read_bytes)
    text = data.decode("utf-8", errors="replace")
    metadata: dict[str, Any] = {
        "bytes": len(data),
        "characters": len(text),
        "lines": len(text.splitlines()),
        "words": len(text.split()),
    }
    if file.suffix == ".md":
        metadata["headings"] = [
            line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")
        ]
    return {"metadata": metadata}


@app.method("filetype.validate")
async def validate(ctx: Context, path: str) -> dict[str, Any]:
    file = resolve(ctx, path)
    chunk_size = int(ctx.config.get("chunk_size", DEFAULT_CHUNK_SIZE))
    delay = float(ctx.config.get("chunk_delay_ms", 0)) / 1000
    total = file.stat().st_size
    decoder = codecs.getincrementaldecoder("utf-8")()
    errors: list[str] = []
    done = 0
    with file.open("rb") as stream:
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
