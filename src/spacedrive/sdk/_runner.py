"""Running an integration: connect as the launch environment says, then answer the protocol.

The runner owns one ``Connection``. It answers ``initialize`` (version and feature negotiation,
then the integration's capabilities), ``shutdown`` (the shutdown hooks, then ``null``); ``exit``
ends ``serve``; the dispatcher itself answers ``ping`` and delivers ``$/cancel``. Capability
methods are refused (``InvalidRequest``) before ``initialize`` and after ``shutdown``. While it
serves, ``logging`` records go to the core as ``$/log``, and in stdio mode so does whatever
the integration prints (``sys.stdout`` is replaced; fd 1 points at stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection, RequestHandler
from spacedrive.ipc._env import LaunchEnvironment
from spacedrive.ipc._errors import ConfigurationError, InvalidRequest
from spacedrive.ipc._handshake import (
    Features,
    InitializeResult,
    PeerInfo,
    negotiate_features,
    negotiate_version,
    parse_initialize_params,
    to_wire,
)
from spacedrive.ipc._jsonrpc import Params
from spacedrive.ipc._stdio import connect_stdio
from spacedrive.ipc._tcp import connect_tcp, send_hello
from spacedrive.ipc._unix import connect_unix

from ._context import Context, CoreClient, Session
from ._handlers import Handler
from ._output import LogForwarder, StdoutToLog

if TYPE_CHECKING:
    from ._app import Integration

__all__ = ["SUPPORTED_FEATURES", "Runner", "connect"]

SUPPORTED_FEATURES: Final = Features()
"""What this SDK can use today: no stream frames, no compression, no fd passing (yet)."""

logger = logging.getLogger(__name__)


async def connect(connection: Connection, env: LaunchEnvironment) -> None:
    """Connect ``connection`` to the core named by the launch environment (``$/hello`` first on sockets)."""
    address = env.address
    if address.kind == "stdio":
        await connect_stdio(connection)
    elif address.kind == "unix":
        await connect_unix(address.path, connection)
        send_hello(connection, env.secret)
    else:
        await connect_tcp(address.host, address.port, connection, secret=env.secret)


class Runner:
    """Serves one integration on one connection (see the module docstring)."""

    def __init__(self, app: Integration) -> None:
        self.app = app
        handlers: dict[str, RequestHandler] = {"initialize": self._initialize, "shutdown": self._shutdown}
        for method, handler in app.handlers.items():
            handlers[method] = self._capability_handler(handler)
        self.connection = Connection(
            handlers,
            {"initialized": self._initialized, "exit": self._exit},
            name=f"integration {app.id!r}",
        )
        self.session: Session | None = None
        self.initialized = asyncio.Event()
        self.exited = asyncio.Event()
        self.shutting_down = False

    async def serve(self) -> int:
        """Serve the (connected) connection until ``exit`` or its end; 0 after shutdown and exit."""
        loop = asyncio.get_running_loop()
        with self._forward_output(loop):
            async with self.connection:
                closed = asyncio.ensure_future(self.connection.wait_closed())  # owned: awaited or cancelled
                exited = asyncio.ensure_future(self.exited.wait())
                try:
                    await asyncio.wait({closed, exited}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in (closed, exited):
                        waiter.cancel()
                    await asyncio.gather(closed, exited, return_exceptions=True)
        return 0 if self.shutting_down and self.exited.is_set() else 1

    @contextlib.contextmanager
    def _forward_output(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """``logging`` (and, on stdio, ``sys.stdout``) to ``$/log`` while serving."""
        forwarder = LogForwarder(self.connection, loop)
        root = logging.getLogger()
        root.addHandler(forwarder)
        stdout = sys.stdout
        if self._on_stdio():
            sys.stdout = StdoutToLog(self.connection, loop)
        try:
            yield
        finally:
            if sys.stdout is not stdout:
                sys.stdout.flush()
                sys.stdout = stdout
            root.removeHandler(forwarder)

    def _on_stdio(self) -> bool:
        transport = self.connection.transport
        return transport is not None and transport.get_extra_info("peername") == "stdio"

    # -- protocol methods -------------------------------------------------------------------

    async def _initialize(self, ctx: RequestContext, params: Params) -> Any:
        if self.session is not None:
            raise InvalidRequest("initialize was already received")
        init = parse_initialize_params(params)
        version = negotiate_version(init.protocol_versions, self.app.protocol_versions)
        if init.integration_id != self.app.id:
            raise ConfigurationError(
                f"this program is integration {self.app.id!r}, but the core started it as "
                f"{init.integration_id!r}: check the id in its manifest"
            )
        session = Session(
            integration_id=self.app.id,
            protocol_version=version,
            core_info=init.core,
            config=init.config,
            permissions=init.permissions,
            features=negotiate_features(init.features, SUPPORTED_FEATURES),
            core=CoreClient(self.connection),
        )
        for hook in self.app.initialize_hooks:
            await hook(session)
        self.session = session
        result = InitializeResult(
            protocol_version=version,
            info=PeerInfo(self.app.name, self.app.version),
            capabilities=self.app.capabilities,
            features=session.features,
        )
        return to_wire(result)

    def _initialized(self, params: Params) -> None:
        self.initialized.set()

    async def _shutdown(self, ctx: RequestContext, params: Params) -> None:
        self.shutting_down = True
        if self.session is not None:
            for hook in self.app.shutdown_hooks:
                await hook(self.session)

    def _exit(self, params: Params) -> None:
        self.exited.set()

    def _capability_handler(self, handler: Handler) -> RequestHandler:
        async def call(request: RequestContext, params: Params) -> Any:
            session = self.session
            if session is None:
                raise InvalidRequest(f"{handler.method} before initialize")
            if self.shutting_down:
                raise InvalidRequest(f"{handler.method} after shutdown")
            return await handler.func(Context(request, session), **handler.bind(params))

        return call
