"""A test integration that calls the core's APIs as told: granted or refused by its manifest alone.

Its id comes from the launch environment, so that the manager tests install the same file
under two manifests: one granting every core API, one granting none.

``content.process`` with ``input_type``:

* ``"call"``: ``options`` ``{"method", "params"?}``: calls the core and answers
  ``{"result": ...}``; the core's error is raised as it came (same code, message and data), so
  the caller of the integration sees it;
* ``"read"``: ``options`` are ``core.files.read`` params: answers ``{"size", "text"}``, the
  text being the bytes of the stream the core answered with;
* ``"write"``: ``options`` ``{"path", "text", "repeat"?}``: sends ``text`` ``repeat`` times on
  a stream to ``core.files.write``; answers ``{"result": ...}``;
* ``"events"``: ``options`` ``{"count", "timeout_s"}``: waits until that many ``core.event``
  notifications arrived (bounded) and answers them all;
* anything else: ``InvalidParams``.
"""

import asyncio
import os
from typing import Any

from spacedrive.sdk import ContentProcessor, Context, Integration, InvalidParams, Session

app = Integration(
    os.environ.get("SPACEDRIVE_INTEGRATION_ID", "core-client"), name="Core client", version="1.0.0"
)
app.capability(ContentProcessor(input_types=["call", "read", "write", "events"], output_formats=["json"]))

events: list[Any] = []
arrived = asyncio.Event()


def on_event(params: Any) -> None:
    events.append(params)
    arrived.set()


@app.on_initialize
async def listen(session: Session) -> None:
    session.core.on_notification("core.event", on_event)


@app.method("content.process")
async def process(
    ctx: Context, path: str, input_type: str, output_format: str, options: dict[str, Any] | None = None
) -> Any:
    options = options or {}
    if input_type == "call":
        return {"result": await ctx.core.request(options["method"], options.get("params"))}
    if input_type == "read":  # core.files.read, then the bytes from its stream
        answer = await ctx.core.request("core.files.read", options)
        data = b"".join([bytes(c) async for c in ctx.core.accept_stream(answer["stream"])])
        return {"size": answer["size"], "text": data.decode("utf-8", "replace")}
    if input_type == "write":  # options {path, text, repeat?}: the bytes go on a stream
        writer = ctx.core.open_stream()
        call = asyncio.ensure_future(
            ctx.core.request("core.files.write", {"path": options["path"], "stream": writer.id})
        )
        chunk = options["text"].encode("utf-8")
        async with writer:
            for _ in range(int(options.get("repeat", 1))):
                await writer.write(chunk)
        return {"result": await call}
    if input_type == "events":
        async with asyncio.timeout(float(options.get("timeout_s", 10))):
            while len(events) < int(options.get("count", 1)):
                arrived.clear()
                await arrived.wait()
        return {"events": events}
    raise InvalidParams(f"unknown input_type {input_type!r}")


app.run()
