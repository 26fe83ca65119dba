"""An integration that neither exits after `exit` nor on SIGTERM: only SIGKILL stops it."""

import signal
import sys
import threading

from spacedrive.sdk import Context, Integration, SearchProvider, Session

app = Integration("stubborn")
app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))


@app.method("search.query")
async def query(ctx: Context, query: object, context: object) -> object:
    return {"results": []}


@app.on_shutdown
async def linger(session: Session) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM from now on", file=sys.stderr, flush=True)
    threading.Thread(target=threading.Event().wait).start()  # a non-daemon thread: no exit


app.run()
