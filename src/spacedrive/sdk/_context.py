"""What a handler receives: its request (cancellation, progress, logs) and the session (config, core)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any, Final

from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection, NotificationHandler, ProgressHandler
from spacedrive.ipc._handshake import Features, PeerInfo, Permissions
from spacedrive.ipc._jsonrpc import Id, Params
from spacedrive.ipc._streams import StreamReader, StreamWriter

__all__ = ["LOG_LEVELS", "Context", "CoreClient", "Session"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
"""The levels of ``$/log`` (docs/protocol.md §3.9)."""


class CoreClient:
    """Calls the core's APIs (``core.*``); each needs its permission in the manifest's ``core_apis``.

    ``await ctx.core.request("core.locations.list")``: a refused API raises ``PermissionDenied``.
    The core may be called (except with ``ping``) only between ``initialized`` and the answer to
    ``shutdown`` (docs/protocol.md §4.1): ``check``, given by the SDK, raises ``UsageError``
    outside that window, before anything is sent.
    """

    def __init__(self, connection: Connection, *, check: Callable[[str], None] | None = None) -> None:
        self._connection = connection
        self._check = check

    async def request(
        self,
        method: str,
        params: Params = None,
        *,
        idle_timeout: float | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> Any:
        """Call ``method`` on the core; ``idle_timeout`` is reset by each progress report."""
        if self._check is not None and method != "ping":
            self._check(method)
        return await self._connection.request(
            method, params, idle_timeout=idle_timeout, on_progress=on_progress
        )

    def notify(self, method: str, params: Params = None) -> None:
        self._connection.notify(method, params)

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        """Call ``handler(params)`` for each ``method`` notification of the core (``core.event``)."""
        self._connection.set_notification_handler(method, handler)

    def open_stream(self) -> StreamWriter:
        """A stream to the core, to announce in a call's params (``core.files.write {"stream"}``)."""
        return self._connection.open_stream()

    def accept_stream(self, stream_id: object) -> StreamReader:
        """The stream a core answer announced (``core.files.read`` → ``{"stream"}``)."""
        return self._connection.accept_stream(stream_id)


@dataclass(frozen=True, slots=True)
class Session:
    """What ``initialize`` established: it lasts as long as the connection."""

    integration_id: str
    protocol_version: int
    core_info: PeerInfo
    config: dict[str, Any]
    permissions: Permissions
    features: Features
    core: CoreClient


class Context:
    """The context of one call to a handler.

    ``cancelled`` turns true when the core cancels the request, or when ``shutdown`` cancels
    it because it outlived the grace period (the handler's task is also cancelled: its next
    ``await`` raises ``CancelledError``, and the core gets ``RequestCancelled``). ``progress``
    reports progress and keeps the core from timing out (it is dropped once the request is
    answered); ``log`` sends a ``$/log`` message.
    """

    __slots__ = ("_answered", "_params", "_request", "_stopping", "session")

    def __init__(self, request: RequestContext, session: Session, params: Any = None) -> None:
        self._request = request
        self.session = session
        self._params = params
        self._stopping = False  # cancelled by shutdown (set by the runner)
        self._answered = False  # the handler returned or raised: no more progress for it

    @property
    def cancelled(self) -> bool:
        return self._stopping or self._request.cancelled

    @property
    def request_id(self) -> Id:
        return self._request.request_id

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def credential(self) -> dict[str, Any] | None:
        """The credential the core handed over with this request (docs/protocol.md §6.2), or ``None``.

        Present when the manifest sets ``permissions.requires_credentials``: ``{"id", "type",
        ...its fields}``, whatever the method (a handler may also take a ``credential``
        param where the method's spec lists one, as ``location.*`` do).
        """
        credential = self._params.get("credential") if isinstance(self._params, dict) else None
        return credential if isinstance(credential, dict) else None

    @property
    def config(self) -> dict[str, Any]:
        """The integration's configuration, as validated by the core."""
        return self.session.config

    @property
    def permissions(self) -> Permissions:
        return self.session.permissions

    @property
    def core(self) -> CoreClient:
        return self.session.core

    def progress(
        self, progress: float | None = None, total: float | None = None, message: str | None = None
    ) -> None:
        """Send ``$/progress`` for this request; ignored once the request was answered (§3.7)."""
        if not self._answered:
            self._request.progress(progress, total, message)

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Send ``$/log``; ``level`` is one of ``LOG_LEVELS`` (else ``ValueError``)."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
        self._request.log(level, message, data)

    def open_stream(self) -> StreamWriter:
        """A stream to the core; it is reset unless the result announces it (``{"stream": id}``)."""
        return self._request.open_stream()

    def accept_stream(self, stream_id: object) -> StreamReader:
        """The stream the core announced in this request's params (``params["stream"]``)."""
        return self._request.accept_stream(stream_id)

    def stream_from(self, source: AsyncIterable[bytes | bytearray | memoryview]) -> StreamWriter:
        """Answer with bytes: ``return {"size": n, "stream": ctx.stream_from(chunks).id}``.

        ``source``'s chunks are written after the answer, as the core reads them; the stream
        ends with END, or RESET if ``source`` raises.
        """
        return self._request.stream_from(source)

    async def send_fd(self, fd: int) -> int:
        """Send a duplicate of ``fd`` to the core; announce the returned id as ``{"fd": id}``."""
        return await self._request.connection.send_fd(fd)

    def receive_fd(self, fd_id: object) -> int:
        """Take the descriptor the core sent as ``fd_id`` (the caller closes it)."""
        return self._request.connection.receive_fd(fd_id)
