"""Running an integration: connect as the launch environment says, then answer the protocol.

The runner owns one ``Connection`` and follows the session lifecycle of docs/protocol.md §4:

* **connected** (until ``initialize`` is answered): ``initialize`` is answered once (version
  and feature negotiation, the id check, the ``on_initialize`` hooks, then the capabilities);
  a second one is refused with ``InvalidRequest`` (-32600) ``"initialize was already
  received"``, whether the first is still running or not.
* **initializing** (until ``initialized``): capability methods are refused with -32600
  ``"not initialized"``, as before ``initialize`` was answered.
* **ready**: everything is served.
* **shutting down** (from ``shutdown``): new capability requests are refused with -32600
  ``"shutting down"``. Every request received before ``shutdown`` is answered before
  ``shutdown`` is: it may finish within ``shutdown_grace_period`` seconds, then it is cancelled
  and answered ``RequestCancelled`` (-32009); handlers get ``CANCEL_GRACE_PERIOD`` seconds to
  stop. Then the ``on_shutdown`` hooks run and ``shutdown`` is answered ``null`` (again for
  each later ``shutdown``). The whole stays within the core's 5 s ``shutdown`` timeout.

``ping`` is answered at once in every state, and ``$/cancel`` delivered, by the dispatcher.
``exit`` or the end of the connection ends ``serve``, whose result is the exit status of §4.5:
0 once ``shutdown`` was answered, 1 otherwise and after any protocol error. The integration's
own calls to the core (``ctx.core``) are allowed, ``ping`` aside, only from ``initialized`` to
the answer of ``shutdown``. While it serves, ``logging`` records go to the core as ``$/log``,
and in stdio mode so does whatever the integration prints (``sys.stdout`` is replaced; fd 1
points at stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection, RequestHandler
from spacedrive.ipc._env import LaunchEnvironment, TransportKind
from spacedrive.ipc._errors import (
    ConfigurationError,
    InvalidRequest,
    ProtocolError,
    RequestCancelled,
    UsageError,
)
from spacedrive.ipc._handshake import (
    InitializeResult,
    PeerInfo,
    negotiate_features,
    negotiate_version,
    parse_initialize_params,
    supported_features,
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

__all__ = [
    "CANCEL_GRACE_PERIOD",
    "EXIT_TIMEOUT",
    "MAX_SHUTDOWN_GRACE_PERIOD",
    "SHUTDOWN_GRACE_PERIOD",
    "Runner",
    "connect",
    "exit_within",
]

SHUTDOWN_GRACE_PERIOD: Final = 2.0
"""Default seconds the requests in flight at ``shutdown`` may run on before they are cancelled."""
MAX_SHUTDOWN_GRACE_PERIOD: Final = 3.0
"""The longest grace period allowed: with ``CANCEL_GRACE_PERIOD`` it must leave the hooks time
within the core's 5 s ``shutdown`` timeout (docs/protocol.md §9.1)."""
CANCEL_GRACE_PERIOD: Final = 1.0
"""Seconds cancelled handlers get to stop before ``shutdown`` is answered without them."""
EXIT_TIMEOUT: Final = 2.0
"""Seconds ``run`` allows for clean-up once the session ended; then the process exits anyway
(it MUST exit on ``exit`` and at the end of the connection; the core waits 3 s)."""

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


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


def exit_within(timeout: float, integration_id: str) -> Callable[[int], None]:
    """A ``Runner`` ``on_session_end`` that ends the process ``timeout`` s later if it is still there.

    Clean-up after the session normally takes milliseconds; a handler that ignores
    cancellation, or a thread blocked in ``asyncio.to_thread``, would keep the process alive.
    """

    def arm(status: int) -> None:
        def force_exit() -> None:
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"{integration_id}: still running {timeout} s after the session ended (a handler "
                    f"ignores cancellation, or a thread is blocked): exiting with status {status}\n"
                )
                sys.stderr.flush()
            os._exit(status)

        timer = threading.Timer(timeout, force_exit)
        timer.daemon = True
        timer.start()

    return arm


class Runner:
    """Serves one integration on one connection (see the module docstring).

    ``on_session_end`` is called with the exit status once the session ended (``exit`` or the
    end of the connection), before the connection is torn down.
    """

    def __init__(
        self,
        app: Integration,
        *,
        transport: TransportKind = "unix",
        on_session_end: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.supported = supported_features(transport)
        """What this SDK accepts of the core's offer: every feature the library has on ``transport``."""
        handlers: dict[str, RequestHandler] = {"initialize": self._initialize, "shutdown": self._shutdown}
        for method, handler in app.handlers.items():
            handlers[method] = self._capability_handler(handler)
        self.connection = Connection(
            handlers,
            {"initialized": self._initialized, "exit": self._exit},
            name=f"integration {app.id!r}",
        )
        self.session: Session | None = None
        """Set when ``initialize`` is answered with a result."""
        self.initialized = asyncio.Event()
        self.exited = asyncio.Event()
        self.shutting_down = False
        """``shutdown`` was received."""
        self.shutdown_answered = False
        self._on_session_end = on_session_end
        self._initialize_received = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self._in_flight: dict[asyncio.Task[Any], Context | None] = {}  # requests shutdown waits for
        self._stopped: set[asyncio.Task[Any]] = set()  # cancelled by shutdown: answered -32009

    @property
    def exit_status(self) -> int:
        """The exit status of docs/protocol.md §4.5, as the session stands now."""
        if isinstance(self.connection.close_reason, ProtocolError):
            return 1
        return 0 if self.shutdown_answered else 1

    @property
    def end_reason(self) -> str:
        """How the session ended, in words (for the one line ``run`` writes to stderr)."""
        reason = self.connection.close_reason
        if isinstance(reason, ProtocolError):
            return f"the connection was closed on a protocol error: {reason}"
        how = "exit" if self.exited.is_set() else "the end of the connection"
        return f"{how} after shutdown" if self.shutdown_answered else f"{how} without shutdown"

    async def serve(self) -> int:
        """Serve the (connected) connection until ``exit`` or its end; the exit status (§4.5)."""
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
                status = self.exit_status
                if self._on_session_end is not None:
                    self._on_session_end(status)
            await self._stop_shutdown_task()
        return status

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
        # Checked and marked before the first await: a second initialize sent right behind the
        # first must not slip past while the first one's hooks run.
        if self._initialize_received:
            raise _refusal("initialize was already received")
        self._initialize_received = True
        if self.shutting_down:
            raise _refusal("shutting down", "initialize arrived after shutdown")
        return await self._tracked(None, self._handshake(params))

    async def _handshake(self, params: Params) -> dict[str, Any]:
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
            features=negotiate_features(init.features, self.supported),
            core=CoreClient(self.connection, check=self._check_core_call),
        )
        for hook in self.app.initialize_hooks:
            await hook(session)
        result = InitializeResult(
            protocol_version=version,
            info=PeerInfo(self.app.name, self.app.version),
            capabilities=self.app.capabilities,
            features=session.features,
        )
        wire = to_wire(result)
        self.session = session  # the answer is written as this returns: no await in between
        return wire

    def _initialized(self, params: Params) -> None:
        if self.session is None:
            logger.warning("%s: initialized arrived before initialize was answered: ignored", self.app.id)
            return
        if self.initialized.is_set():
            logger.warning("%s: a second initialized was ignored", self.app.id)
            return
        # Synchronously, before the next frame is read: a stream the core opens right behind
        # `initialized` must find streams switched on (docs/protocol.md §4).
        self.connection.enable_features(to_wire(self.session.features), role="integration")
        self.initialized.set()

    async def _shutdown(self, ctx: RequestContext, params: Params) -> None:
        if self._shutdown_task is None:
            self.shutting_down = True
            self._shutdown_task = asyncio.ensure_future(self._shut_down())  # owned: see serve
        # Shielded: a $/cancel for shutdown (which the core must not send) answers this request,
        # but does not stop the clean-up halfway. A later shutdown waits for the same one.
        await asyncio.shield(self._shutdown_task)
        self.shutdown_answered = True  # the answer is written as this returns

    async def _shut_down(self) -> None:
        """Answer every request received before ``shutdown`` (finish or cancel), then the hooks."""
        await self._finish_or_cancel(self.app.shutdown_grace_period)
        if self.session is None:
            return
        for hook in self.app.shutdown_hooks:
            try:
                await hook(self.session)
            except Exception:
                logger.exception("%s: a shutdown hook failed", self.app.id)

    async def _finish_or_cancel(self, grace_period: float) -> None:
        running = set(self._in_flight)
        if not running:
            return
        _, running = await asyncio.wait(running, timeout=grace_period)
        if not running:
            return
        logger.warning(
            "%s: shutdown: cancelling %d request(s) still running after %s s",
            self.app.id,
            len(running),
            grace_period,
        )
        for task in running:
            context = self._in_flight.get(task)
            if context is not None:
                context._stopping = True
            self._stopped.add(task)
            task.cancel()
        _, stuck = await asyncio.wait(running, timeout=CANCEL_GRACE_PERIOD)
        if stuck:
            logger.error(
                "%s: shutdown: %d request(s) ignored cancellation for %s s; answering shutdown without them",
                self.app.id,
                len(stuck),
                CANCEL_GRACE_PERIOD,
            )

    async def _stop_shutdown_task(self) -> None:
        task = self._shutdown_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE_PERIOD)
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved: it is logged where it happened

    def _exit(self, params: Params) -> None:
        self.exited.set()

    # -- capability methods -----------------------------------------------------------------

    def _capability_handler(self, handler: Handler) -> RequestHandler:
        async def call(request: RequestContext, params: Params) -> Any:
            session = self._check_ready(handler.method)
            context = Context(request, session, params)
            return await self._tracked(context, handler.func(context, **handler.bind(params)))

        return call

    def _check_ready(self, method: str) -> Session:
        """The session, or ``InvalidRequest`` if a capability method is not served now (§4.1)."""
        if self.shutting_down:
            raise _refusal("shutting down", f"{method} arrived after shutdown")
        if self.session is None:
            raise _refusal("not initialized", f"{method} arrived before initialize was answered")
        if not self.initialized.is_set():
            raise _refusal("not initialized", f"{method} arrived before initialized")
        return self.session

    async def _tracked(self, context: Context | None, work: Awaitable[_T]) -> _T:
        """Run ``work`` as a request ``shutdown`` waits for; answered -32009 if shutdown cancels it."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight[task] = context
        try:
            return await work
        except asyncio.CancelledError:
            if task not in self._stopped or self.connection.is_closed:
                raise  # the core's $/cancel (the dispatcher answers it), or the connection ended
            task.uncancel()
            raise RequestCancelled() from None
        finally:
            del self._in_flight[task]
            self._stopped.discard(task)
            if context is not None:
                context._answered = True

    def _check_core_call(self, method: str) -> None:
        """``UsageError`` if the integration may not call the core now (docs/protocol.md §4.1)."""
        if self.shutdown_answered:
            raise UsageError(f"{self.app.id}: cannot call {method}: shutdown was answered")
        if not self.initialized.is_set():
            raise UsageError(
                f"{self.app.id}: cannot call {method} before the core sent initialized (only ping "
                "may be sent before, e.g. from an on_initialize hook)"
            )


def _refusal(reason: str, detail: str | None = None) -> InvalidRequest:
    """-32600 for a request in the wrong state; the message starts with ``reason`` (§4.1, §7)."""
    message = reason if detail is None else f"{reason}: {detail}"
    return InvalidRequest(message, data={"reason": reason})
