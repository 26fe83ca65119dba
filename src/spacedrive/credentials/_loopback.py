"""The loopback redirect of a browser login (RFC 8252 §7.3): one HTTP GET on 127.0.0.1.

``async with LoopbackRedirect() as receiver:`` listens on ``127.0.0.1`` (an ephemeral port
unless one is given); ``receiver.redirect_uri`` is ``http://127.0.0.1:<port>/callback``;
``await receiver.wait()`` returns the full URL of the first request for ``/callback``. Other
paths (a browser's ``/favicon.ico``) get 404 and are ignored. The browser gets a short page
telling the user to go back to the terminal. The request head is parsed by
:func:`parse_request_target`, a pure function over bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Final, Self

__all__ = ["CALLBACK_PATH", "HEAD_TIMEOUT_S", "LoopbackRedirect", "parse_request_target"]

CALLBACK_PATH: Final = "/callback"
LOOPBACK_HOST: Final = "127.0.0.1"
HEAD_TIMEOUT_S: Final = 10.0
"""How long a connection may take to send its request head."""
MAX_HEAD_BYTES: Final = 16 * 1024
_PAGE: Final = (
    b"<!doctype html><meta charset=utf-8><title>Spacedrive</title>"
    b"<p>Spacedrive received the answer of the sign-in. You can close this window and go back to "
    b"the terminal.</p>"
)


def parse_request_target(head: bytes) -> tuple[str, str] | None:
    """``(method, target)`` of an HTTP/1.x request head, or ``None`` if it is not one."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not method.isalpha() or not target.startswith("/"):
        return None
    return method, target


class LoopbackRedirect:
    """Receives the authorization server's redirect on the loopback interface."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._answer: asyncio.Future[str] | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self._port}{CALLBACK_PATH}"

    async def __aenter__(self) -> Self:
        self._answer = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._serve, LOOPBACK_HOST, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait(self) -> str:
        """The URL of the redirect (``http://127.0.0.1:<port>/callback?code=...&state=...``)."""
        assert self._answer is not None, "enter the receiver first"
        return await asyncio.shield(self._answer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        found = parse_request_target(head[:MAX_HEAD_BYTES])
        ours = found is not None and found[0] == "GET" and found[1].partition("?")[0] == CALLBACK_PATH
        if ours and found is not None and self._answer is not None and not self._answer.done():
            self._answer.set_result(f"http://{LOOPBACK_HOST}:{self._port}{found[1]}")
        status, body = (b"200 OK", _PAGE) if ours else (b"404 Not Found", b"not found")
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
