"""The Python SDK for Spacedrive integrations: declare capabilities and handlers, then ``run()``.

::

    from spacedrive.sdk import Context, FileTypeHandler, Integration

    app = Integration("hello", name="Hello", version="1.0.0")
    app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"],
                                   processing_modes=["metadata"]))

    @app.method("filetype.extract_metadata")
    async def extract(ctx: Context, path: str) -> dict[str, object]:
        ctx.progress(message="counting")
        return {"metadata": {"lines": 3}}

    @app.method("filetype.generate_thumbnail")   # bulk bytes go on a stream, never in JSON
    async def thumbnail(ctx: Context, path: str, size: dict[str, int]) -> dict[str, object]:
        stream = ctx.stream_from(render_png_chunks(path, size))   # an async iterable of bytes
        return {"format": "png", "width": 64, "height": 64, "stream": stream.id}

    if __name__ == "__main__":
        app.run()

The SDK checks the handlers against the declared capabilities before it connects, does the
handshake, answers ``ping``, delivers cancellation (``ctx.cancelled``; the handler's task is
cancelled), and keeps stdout clean: in stdio mode ``print`` output and ``logging`` records
reach the core as ``$/log`` messages, never as bytes among the frames. To that end, importing
this package in a process launched on stdio (``SPACEDRIVE_IPC=stdio``) takes fds 0 and 1 for
the frames at once, and points fd 1 at stderr: output written before ``run()`` goes to the
integration's log, not into the protocol. (Output written before this import is not covered.)
"""

import os as _os

from spacedrive.ipc._env import ENV_IPC as _ENV_IPC
from spacedrive.ipc._errors import (
    AuthenticationFailed,
    ConfigurationError,
    IntegrationError,
    InvalidParams,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimitExceeded,
    RequestCancelled,
    StreamReset,
)
from spacedrive.ipc._handshake import (
    Capability,
    ContentProcessor,
    Features,
    FileTypeHandler,
    LocationProvider,
    Permissions,
    SearchProvider,
    ThumbnailGenerator,
)
from spacedrive.ipc._stdio import claim_stdio as _claim_stdio
from spacedrive.ipc._streams import StreamReader, StreamWriter

from ._app import Integration, SessionHook
from ._context import Context, CoreClient, Session
from ._errors import DeclarationError
from ._types import CloudLocation, Entry

if _os.environ.get(_ENV_IPC) == "stdio":
    _claim_stdio()

__all__ = [
    "AuthenticationFailed",
    "Capability",
    "CloudLocation",
    "ConfigurationError",
    "ContentProcessor",
    "Context",
    "CoreClient",
    "DeclarationError",
    "Entry",
    "Features",
    "FileTypeHandler",
    "Integration",
    "IntegrationError",
    "InvalidParams",
    "LocationProvider",
    "NetworkError",
    "NotFound",
    "PermissionDenied",
    "Permissions",
    "RateLimitExceeded",
    "RequestCancelled",
    "SearchProvider",
    "Session",
    "SessionHook",
    "StreamReader",
    "StreamReset",
    "StreamWriter",
    "ThumbnailGenerator",
]
