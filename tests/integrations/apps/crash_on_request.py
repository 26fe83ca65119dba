"""An integration that dies in the middle of a request (``path == "crash"``) with status 7."""

import os
import sys
from typing import Any

from spacedrive.sdk import Context, FileTypeHandler, Integration

app = Integration("crasher", name="Crasher", version="1.0.0")
app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"], processing_modes=["metadata"]))


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    if path == "crash":
        print("fatal: corrupted index, giving up", file=sys.stderr, flush=True)
        os._exit(7)
    return {"pid": os.getpid()}


app.run()
