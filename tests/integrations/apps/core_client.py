"""A test integration that calls the core's APIs as told: granted or refused by its manifest alone.

Its id comes from the launch environment, so that the manager tests install the same file
under two manifests: one granting every core API, one granting none.

``content.process`` with ``input_type``:

* ``"call"``: ``options`` ``{"method", "params"?}``: calls the core and answers
  ``{"result": ...}``; the core's error is raised as it came (same code, message and data), so
  the caller of the integration sees it;
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
app.capability(ContentProcessor(input_types=["call", "events"], output_formats=["json"]))

events: list[Any] = []
arrived = asyncio.Event()


def on_event(params: Any) -> None:
    events.append(params)
    arrived.set()


@app.on_initialize
async def listen(session: Session) -> None:
    # The SDK has no API for notifications from the core yet: register on its connection.
    session.core._connection.set_notification_handler("core.event", on_event)


@app.method("content.process")
async def process(
    ctx: Context, path: str, input_type: str, output_format: str, options: dict[str, Any] | None = None
) -> Any:
    options = options or {}
    if input_type == "call":
        return {"result": await ctx.core.request(options["method"], options.get("params"))}
    if input_type == "events":
        async with asyncio.timeout(float(options.get("timeout_s", 10))):
            while len(events) < int(options.get("count", 1)):
                arrived.clear()
                await arrived.wait()
        return {"events": events}
    raise InvalidParams(f"unknown input_type {input_type!r}")


app.run()
