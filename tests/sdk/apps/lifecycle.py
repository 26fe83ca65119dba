"""An integration whose ``search.query`` does what the query text says, for the lifecycle tests.

``argv[1]``, if given, is its ``shutdown_grace_period`` in seconds. Query texts:

* ``"sleep:<seconds>"``: reports progress, works that long, then answers;
* ``"forever"``: reports progress, then waits until it is cancelled;
* ``"stubborn"``: reports progress, then ignores every cancellation (a bug the SDK must survive);
* ``"blocked"``: reports progress, then waits for a thread blocked for a minute;
* anything else: answers at once.
"""

import asyncio
import sys
import time
from typing import Any

from spacedrive.sdk import Context, Integration, SearchProvider

STUCK_FOR = 60.0
"""Seconds the stubborn and blocked requests take: longer than any test."""

options: dict[str, Any] = {"shutdown_grace_period": float(sys.argv[1])} if len(sys.argv) > 1 else {}
app = Integration("lifecycle", name="Lifecycle", version="1.0.0", **options)
app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))


@app.method("search.query")
async def query(ctx: Context, query: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    text = str(query.get("text", ""))
    if text != "now":
        ctx.progress(message="started")
    if text.startswith("sleep:"):
        await asyncio.sleep(float(text.removeprefix("sleep:")))
    elif text == "forever":
        await asyncio.Event().wait()
    elif text == "stubborn":
        deadline = time.monotonic() + STUCK_FOR
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(deadline - time.monotonic())
            except asyncio.CancelledError:
                print("lifecycle: ignoring a cancellation", file=sys.stderr, flush=True)
    elif text == "blocked":
        await asyncio.to_thread(time.sleep, STUCK_FOR)
    return {"results": [{"id": "1", "title": text, "score": 1.0}]}


app.run()
