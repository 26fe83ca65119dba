"""An integration that stops reading: on ``path == "sleep"`` it blocks its event loop with
``time.sleep``; on ``path == "stop"`` it sends itself SIGSTOP. Either way pings go unanswered."""

import os
import signal
import time
from typing import Any

from spacedrive.sdk import Context, FileTypeHandler, Integration

HANG_SECONDS = 120  # far longer than any test; the supervisor kills it well before

app = Integration("hang", name="Hang", version="1.0.0")
app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"], processing_modes=["metadata"]))


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    if path == "sleep":
        time.sleep(HANG_SECONDS)  # noqa: ASYNC251 -- the point: the whole loop stops
    elif path == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    return {"pid": os.getpid()}


app.run()
