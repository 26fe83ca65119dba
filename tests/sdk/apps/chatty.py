"""An integration that writes to stdout in every way it can: none of it may reach the frames."""

import logging
import os
import sys
from typing import Any

from spacedrive.sdk import Context, Integration, SearchProvider

print("printed at import, before run()")  # stdout is a pipe: block-buffered until run() takes it

app = Integration("chatty", name="Chatty", version="1.0.0")
app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))


@app.method("search.query")
async def query(ctx: Context, query: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    print("a stray print from a handler")
    print("two lines\nin one print")
    sys.stdout.write("no newline yet")
    sys.stdout.flush()
    logging.getLogger("chatty").warning("a warning from logging")
    os.write(1, b"raw bytes written to fd 1\n")  # as a C library or a child process would
    return {"results": [{"id": "1", "title": query["text"], "score": 1.0}]}


app.run()
