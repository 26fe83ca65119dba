"""What a request handler receives besides its params: who asked, cancellation, progress, logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._jsonrpc import Id

if TYPE_CHECKING:
    from ._dispatcher import Connection

__all__ = ["RequestContext"]


class RequestContext:
    """The context of one incoming request, valid while its handler runs.

    ``cancelled`` turns true when the requester sent ``$/cancel`` (the handler's task is then
    cancelled too; a handler that shields work can poll it). ``progress`` sends ``$/progress``
    with the request id as token, which also resets the requester's timeout. ``connection``
    lets the handler call back into the peer.
    """

    __slots__ = ("_cancelled", "connection", "method", "request_id")

    def __init__(self, connection: Connection, request_id: Id, method: str) -> None:
        self.connection = connection
        self.request_id = request_id
        self.method = method
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def progress(
        self, progress: float | None = None, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress (all arguments optional: an empty report is a keep-alive)."""
        params: dict[str, Any] = {"token": self.request_id}
        if progress is not None:
            params["progress"] = progress
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        self.connection.notify("$/progress", params)

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Send a ``$/log`` notification to the peer."""
        self.connection.log(level, message, data)
