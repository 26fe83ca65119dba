"""A test cloud integration (``requires_credentials: true``): it uses what the core hands over.

Its id comes from the launch environment, so the tests install it under several ids.

``storage.list``: no entries, and the type and id of ``ctx.credential`` (the SDK's accessor,
for methods whose spec has no ``credential`` param).

``location.list_locations(credential)``:

* an ``OAuth2`` credential is sent as a bearer token to ``config.api_url`` (the test OAuth2
  server's protected resource); a 401 there is answered ``AuthenticationFailed`` (-32003), as a
  real cloud integration does when its service refuses the token;
* whatever the type, the answer describes the credential without revealing it: its type and
  id, the SHA-256 of its secret, which fields it carried, and whether the secret appears in
  this process's command line or environment (it must not).

It logs a line per call (through ``logging``, which the SDK turns into ``$/log``) naming the
credential's type and id, so the tests can check that logs stay free of secrets.
"""

import asyncio
import hashlib
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from spacedrive.sdk import AuthenticationFailed, Context, Integration, LocationProvider, NotFound

app = Integration(os.environ.get("SPACEDRIVE_INTEGRATION_ID", "cloud"), name="Test cloud", version="1.0.0")
app.capability(LocationProvider(supported_protocols=["testcloud"], auth_methods=["OAuth2", "ApiKey"]))
log = logging.getLogger("cloud")

SECRET_FIELDS = {"OAuth2": "access_token", "ApiKey": "key", "Basic": "password"}


def secret_of(credential: dict[str, Any]) -> str:
    field = SECRET_FIELDS.get(credential["type"])
    return credential[field] if field else json.dumps(credential.get("data"), sort_keys=True)


def exposed(secret: str) -> dict[str, bool]:
    argv = "\0".join(sys.orig_argv)  # the interpreter's own command line (no /proc in the sandbox)
    return {
        "in_argv": secret in argv,
        "in_environ": any(secret in value for value in os.environ.values()),
    }


def call_api(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@app.method("location.list_locations")
async def list_locations(ctx: Context, credential: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    if credential is None:
        raise AuthenticationFailed("no credential was handed over")
    log.info("listing with %s credential %s", credential["type"], credential["id"])
    secret = secret_of(credential)
    if credential["type"] == "OAuth2" and ctx.config.get("api_url"):
        status = await asyncio.to_thread(call_api, ctx.config["api_url"], secret)
        if status == 401:
            raise AuthenticationFailed("the cloud refused the access token", data={"status": status})
    facts = {
        "type": credential["type"],
        "id": credential["id"],
        "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "fields": sorted(credential),
        **exposed(secret),
    }
    return [{"id": "root", "name": "Test cloud", "path": "/", "facts": facts}]


@app.method("storage.list")
async def storage_list(ctx: Context, path: str, cursor: str | None = None, limit: int | None = None) -> Any:
    """No ``credential`` param in this method's spec: the handler reads ``ctx.credential``."""
    credential = ctx.credential
    seen = None if credential is None else {"type": credential["type"], "id": credential["id"]}
    return {"entries": [], "cursor": None, "credential": seen}


@app.method("storage.stat")
async def storage_stat(ctx: Context, path: str) -> Any:
    raise NotFound(f"{path} does not exist")


@app.method("storage.read")
async def storage_read(ctx: Context, path: str, offset: int | None = None, length: int | None = None) -> Any:
    raise NotFound(f"{path} does not exist")


app.run()
