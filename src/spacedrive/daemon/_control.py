"""The daemon's control socket: the methods the CLI calls, on the integrations' own protocol.

The server is a ``spacedrive.ipc.UnixServer`` (length-prefixed JSON-RPC 2.0, docs/protocol.md
§2 and §3) bound in the private runtime folder; each client gets a ``Connection`` whose handlers
are built here. There is no handshake: the socket is the user's own (0600 in a 0700 folder),
and where the OS tells who connected (``SO_PEERCRED``, Linux) a client of another uid is
refused: its connection is closed, and every handler checks it again (a request may arrive
before the connection is looked at). docs/protocol.md, "Daemon control socket", lists the
methods; :data:`CONTROL_METHODS` is the same list.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any, Final, Protocol

from spacedrive.integrations.errors import IntegrationNotFound
from spacedrive.integrations.manager import IntegrationManager, IntegrationRequest
from spacedrive.ipc import (
    MAX_BATCH_LENGTH,
    Connection,
    InvalidParams,
    InvalidRequest,
    NotFound,
    Params,
    PermissionDenied,
    RequestContext,
    RequestHandler,
)

__all__ = ["CONTROL_METHODS", "ControlHost", "check_peer", "control_connection", "control_handlers"]

CONTROL_METHODS: Final = (
    "daemon.status",
    "daemon.stop",
    "integration.status",
    "integration.call",
    "integration.batch",
    "integration.reload",
)
_CREDENTIALS: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
logger = logging.getLogger(__name__)


class ControlHost(Protocol):
    """What the handlers need from the daemon."""

    @property
    def manager(self) -> IntegrationManager:
        """The running manager (``InvalidRequest`` while the daemon starts or stops)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


def control_handlers(host: ControlHost) -> dict[str, RequestHandler]:
    """The handlers of :data:`CONTROL_METHODS`, each refusing a client of another user."""

    async def daemon_status(ctx: RequestContext, params: Params) -> Any:
        _object(params)
        return host.status()

    async def daemon_stop(ctx: RequestContext, params: Params) -> Any:
        _object(params)
        host.stop()  # answered first: the server closes only after this answer is written
        return None

    async def integration_status(ctx: RequestContext, params: Params) -> Any:
        integration_id = _optional_string(_object(params), "id")
        manager = host.manager
        manager.discover_integrations()  # installed since the daemon started?
        try:
            return manager.status(integration_id)
        except IntegrationNotFound as exc:
            raise NotFound(str(exc), data={"id": integration_id}) from None

    async def integration_call(ctx: RequestContext, params: Params) -> Any:
        request = _request(_object(params), default_id=str(ctx.request_id))

        def forward(report: dict[str, Any]) -> None:  # the integration's progress, to the caller
            ctx.progress(report.get("progress"), report.get("total"), report.get("message"))

        return (await host.manager.handle_request(request, on_progress=forward)).to_json()

    async def integration_batch(ctx: RequestContext, params: Params) -> Any:
        raw = _object(params).get("requests")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_BATCH_LENGTH:
            raise InvalidParams(
                f"requests must be a list of 1 to {MAX_BATCH_LENGTH} requests",
                data={"field": "requests", "reason": "invalid"},
            )
        requests = [
            _request(item, default_id=str(index), field=f"requests[{index}]")
            for index, item in enumerate(raw)
        ]
        return [response.to_json() for response in await host.manager.handle_batch(requests)]

    async def integration_reload(ctx: RequestContext, params: Params) -> Any:
        integration_id = _optional_string(_object(params), "id")
        if integration_id is None:
            raise InvalidParams("id is required", data={"field": "id", "reason": "missing"})
        manager = host.manager
        action = await manager.reload_integration(integration_id)
        supervisor = manager.supervisor(integration_id)
        state = supervisor.state.value if supervisor is not None else "stopped"
        return {"id": integration_id, "action": action, "state": state}

    handlers = {
        "daemon.status": daemon_status,
        "daemon.stop": daemon_stop,
        "integration.status": integration_status,
        "integration.call": integration_call,
        "integration.batch": integration_batch,
        "integration.reload": integration_reload,
    }
    assert tuple(handlers) == CONTROL_METHODS
    return {method: _same_user_only(handler) for method, handler in handlers.items()}


def control_connection(handlers: Mapping[str, RequestHandler]) -> Connection:
    """A connection for one control client (the ``UnixServer``'s factory)."""
    return Connection(handlers, name="daemon control")


async def check_peer(connection: Connection) -> None:
    """Close the connection of a client that runs as another user (``UnixServer.on_connection``)."""
    if not _same_user(connection):
        logger.warning("daemon control: refused a client of uid %s", _peer_uid(connection))
        connection.close()


# -- helpers ---------------------------------------------------------------------------------


def _same_user_only(handler: RequestHandler) -> RequestHandler:
    async def guarded(ctx: RequestContext, params: Params) -> Any:
        if not _same_user(ctx.connection):
            raise PermissionDenied("only the user who runs the daemon may control it")
        return await handler(ctx, params)

    return guarded


def _same_user(connection: Connection) -> bool:
    uid = _peer_uid(connection)
    return uid is None or uid == os.getuid()


def _peer_uid(connection: Connection) -> int | None:
    """The uid of the client process, where the OS tells (``SO_PEERCRED``, Linux); else ``None``."""
    option = getattr(socket, "SO_PEERCRED", None)
    transport: asyncio.BaseTransport | None = connection.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if option is None or sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        _pid, uid, _gid = _CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CREDENTIALS.size))
    except OSError:
        return None
    return int(uid)


def _object(params: Params) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object", data={"field": "params", "reason": "not an object"})
    return params


def _optional_string(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidParams(f"{name} must be a string", data={"field": name, "reason": "not a string"})
    return value


def _request(value: Any, *, default_id: str, field: str = "") -> IntegrationRequest:
    """An ``IntegrationRequest`` from params (``id`` defaults to ``default_id``), or ``InvalidParams``."""
    prefix = f"{field}." if field else ""
    if not isinstance(value, dict):
        raise InvalidParams(f"{field or 'params'} must be an object", data={"field": field or "params"})
    try:
        return IntegrationRequest.from_json({"id": default_id, **value})
    except InvalidRequest as exc:
        data = dict(exc.data) if isinstance(exc.data, dict) else {}
        if "field" in data:
            data["field"] = prefix + str(data["field"])
        raise InvalidParams(f"{prefix}{exc.message}", data=data) from None
