"""An integration that starts processes of its own: one in its process group, one that escapes it.

``filetype.extract_metadata`` (any ``path``) starts both (once) and answers
``{"pid": <its pid>, "child": <pid in its group>, "escaped": <pid in a session of its own>}``.
Both children sleep for ``LIFETIME`` seconds: bounded, so that a failing test leaves nothing
behind for long.
"""

import os
import subprocess
import sys
from typing import Any

from spacedrive.sdk import Context, FileTypeHandler, Integration

LIFETIME = "120"
app = Integration("spawner", name="Spawner", version="1.0.0")
app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"], processing_modes=["metadata"]))
_children: dict[str, int] = {}


def _sleeper(**options: Any) -> int:
    argv = [sys.executable, "-c", f"import time; time.sleep({LIFETIME})"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **options).pid


@app.method("filetype.extract_metadata")
async def extract_metadata(ctx: Context, path: str) -> dict[str, Any]:
    if not _children:
        _children["child"] = _sleeper()
        _children["escaped"] = _sleeper(start_new_session=True)
    return {"pid": os.getpid(), **_children}


app.run()
