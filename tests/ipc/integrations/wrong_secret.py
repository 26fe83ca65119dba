"""An integration that presents the wrong secret in its $/hello (the core must refuse it)."""

import os

from spacedrive.sdk import Context, Integration, SearchProvider

app = Integration("wrong-secret")
app.capability(SearchProvider(query_languages=["plain"], result_types=["file"]))


@app.method("search.query")
async def query(ctx: Context, query: object, context: object) -> object:
    return {"results": []}


os.environ["SPACEDRIVE_IPC_SECRET"] = "0" * 64
app.run()
