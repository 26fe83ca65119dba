"""What a request handler receives besides its params: who asked, cancellation, progress, logs."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any

from ._jsonrpc import Id

if TYPE_CHECKING:
    from ._dispatcher import Connection
    from ._streams import StreamReader, StreamWriter

__all__ = ["RequestContext"]


class RequestContext:
    """The context of one incoming request, valid while its handler runs.

    ``cancelled`` turns true when the requester sent ``$/cancel`` (the handler's task is then
    cancelled too; a handler that shields work can poll it). ``progress`` sends ``$/progress``
    with the request id as token, which also resets the requester's timeout. ``connection``
    lets the handler call back into the peer.

    Streams (when negotiated): ``open_stream`` opens one tied to this request: it is reset if
    the handler fails or returns a result that does not announce it (``{"stream": id}``);
    ``accept_stream`` takes the one the params announce (it is cancelled when the request is
    answered unless it was read to the end).
    """

    __slots__ = ("_cancelled", "_opened", "connection", "method", "request_id")

    def __init__(self, connection: Connection, request_id: Id, method: str) -> None:
        self.connection = connection
        self.request_id = request_id
        self.method = method
        self._cancelled = False
        self._opened: list[StreamWriter] | None = None  # created by open_stream

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

    def open_stream(self) -> StreamWriter:
        """A stream to the peer that lives on after this request only if the result announces it."""
        writer = self.connection.open_stream()
        if self._opened is None:
            self._opened = []
        self._opened.append(writer)
        return writer

    def accept_stream(self, stream_id: object) -> StreamReader:
        """The stream the peer announced (``InvalidParams`` if there is none by that id)."""
        return self.connection.accept_stream(stream_id)

    def stream_from(self, source: AsyncIterable[bytes | bytearray | memoryview]) -> StreamWriter:
        """A stream carrying ``source``'s chunks, written in the background; return ``{"stream": id}``.

        The usual way to answer with bytes: ``return {"size": n, "stream": ctx.stream_from(chunks).id}``.
        The writing goes on after the answer (the peer reads the stream once it has the answer);
        the stream ends with END, or RESET if ``source`` raises or the result does not announce it.
        """
        writer = self.open_stream()
        self.connection.produce(writer, source)
        return writer
