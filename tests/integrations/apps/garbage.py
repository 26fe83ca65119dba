"""An integration that breaks the framing on request: ``path == "garbage"`` writes text where a
frame header belongs, ``path == "oversize"`` announces a frame of 1 GiB. Otherwise it answers."""

import os
from typing import Any

from spacedrive.sdk import Context, FileTypeHandler, Integration

app = Integration("garbage", name="Garbage", version="1.0.0")
app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"], processing_modes=["metadata"]))

BAD_BYTES = {
    "garbage": b"GET / HTTP/1.1\r\nHost: core\r\n\r\n",
    "oversize": (2**30 - 1).to_bytes(4, "big") + b"{",
}


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    if path in BAD_BYTES:
        transport = ctx._request.connection.transport  # raw access: no SDK would ever do this
        assert transport is not None
        transport.write(BAD_BYTES[path])
    return {"pid": os.getpid()}


app.run()
