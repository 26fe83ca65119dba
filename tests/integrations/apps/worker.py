"""A well-behaved integration for the supervisor tests: tells its pid, sleeps on demand, logs.

``filetype.extract_metadata`` with ``path``:

* ``"pid"``: answers ``{"pid": <its pid>}`` at once;
* ``"sleep:<seconds>"``: reports progress, sleeps (without blocking its loop), then answers its pid;
* ``"chatty"``: writes a line to stderr and one through ``logging`` (a ``$/log``), then its pid;
* anything else: ``NotFound``.
"""

import asyncio
import logging
import os
import sys
from typing import Any

from spacedrive.sdk import Context, FileTypeHandler, Integration, NotFound

app = Integration("worker", name="Worker", version="1.0.0")
app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"], processing_modes=["metadata"]))


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    if path.startswith("sleep:"):
        ctx.progress(message="started")
        await asyncio.sleep(float(path.removeprefix("sleep:")))
    elif path == "chatty":
        print("a line on stderr", file=sys.stderr, flush=True)
        logging.getLogger("worker").warning("a warning through $/log")
    elif path != "pid":
        raise NotFound(f"no file {path!r}")
    return {"pid": os.getpid()}


app.run()
