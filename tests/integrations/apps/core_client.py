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
* ``"open"``: ``options`` ``{"path"}``: tries to read the file itself (no core API), answers
  ``{"read": bytes read}`` or ``{"errno": "ENOENT"}``: what its sandbox lets it see;
* ``"connect"``: ``options`` ``{"host", "port"}``: a TCP connection straight to it (no
  proxy): ``{"connected": true}`` or ``{"errno": ...}``;
* ``"fetch"``: ``options`` ``{"url"}``: an HTTP GET the way a client library does it (through
  the proxy of ``HTTP_PROXY``, if set): ``{"status", "body"}`` or ``{"error"}``;
* ``"sleep"``: ``options`` ``{"seconds"}``: answers ``{"slept": seconds}`` after them;
* ``"environ"``: answers its environment;
* ``"fail"``: ``options`` ``{"code", "message"}``: answers that error (any code, even -32002);
* anything else: ``InvalidParams``.
"""

import asyncio
import errno
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from spacedrive.sdk import ContentProcessor, Context, Integration, IntegrationError, InvalidParams, Session

app = Integration(
    os.environ.get("SPACEDRIVE_INTEGRATION_ID", "core-client"), name="Core client", version="1.0.0"
)
app.capability(
    ContentProcessor(
        input_types=[
            "call",
            "read",
            "write",
            "events",
            "open",
            "connect",
            "fetch",
            "sleep",
            "environ",
            "fail",
        ],
        output_formats=["json"],
    )
)

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
    if input_type in PROBES:
        return await asyncio.to_thread(PROBES[input_type], options)
    if input_type == "environ":
        return dict(os.environ)
    if input_type == "fail":
        raise IntegrationError(options["message"], code=int(options["code"]))
    if input_type == "sleep":
        await asyncio.sleep(float(options["seconds"]))
        return {"slept": options["seconds"]}
    raise InvalidParams(f"unknown input_type {input_type!r}")


def read_file(options: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(options["path"], "rb") as f:
            return {"read": len(f.read())}
    except OSError as exc:
        return {"errno": errno.errorcode.get(exc.errno or 0, str(exc))}


def connect(options: dict[str, Any]) -> dict[str, Any]:
    try:
        with socket.create_connection((options["host"], int(options["port"])), timeout=5):
            return {"connected": True}
    except OSError as exc:
        return {"errno": errno.errorcode.get(exc.errno or 0, str(exc))}


def fetch(options: dict[str, Any]) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(options["url"], timeout=5) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode("utf-8", "replace")}
    except OSError as exc:
        return {"error": str(exc)}


PROBES = {"open": read_file, "connect": connect, "fetch": fetch}


app.run()
