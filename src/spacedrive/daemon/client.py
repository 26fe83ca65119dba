"""Find the daemon of a data dir and talk to it: the one client of the control socket.

::

    async with DaemonClient(data_dir) as daemon:      # DaemonNotRunning, DaemonUnreachable
        daemon.info["pid"]                              # its daemon.status, asked on connect
        rows = await daemon.request("integration.status", {"id": "hello"})

    info = run_with_daemon(data_dir, lambda daemon: daemon.request("daemon.status"))   # from sync code

Entering connects to ``<runtime dir>/daemon.sock`` and asks ``daemon.status`` within
``ANSWER_TIMEOUT``. What can go wrong, and what it raises:

* no socket, and nobody holds the daemon lock: :class:`DaemonNotRunning` (commands fall back
  to working without a daemon);
* a socket nobody listens on, and nobody holds the lock: the socket of a daemon that did not
  stop cleanly: :class:`DaemonNotRunning` too (the next daemon removes it);
* the lock is held but there is no socket, or it refuses connections, or the daemon does not
  answer in time: :class:`DaemonUnreachable`, naming the pid and the socket (a daemon that is
  starting, stopping, or stuck);
* ``library`` given and the daemon hosts another library: :class:`DaemonServesAnotherLibrary`
  (a ``DaemonNotRunning``: for that library, no daemon runs).

Errors the daemon answers with arrive as ``spacedrive.ipc`` exceptions (``NotFound``,
``InvalidParams``, ...); a connection lost midway is :class:`DaemonUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from spacedrive.core.library import DEFAULT_LIBRARY_NAME
from spacedrive.daemon._files import DaemonFiles
from spacedrive.daemon.errors import DaemonNotRunning, DaemonServesAnotherLibrary, DaemonUnreachable
from spacedrive.integrations.manager import IntegrationRequest, IntegrationResponse
from spacedrive.ipc import (
    MAX_REQUEST_TIMEOUT,
    Connection,
    ConnectionClosed,
    ErrorObject,
    Params,
    ProgressHandler,
    RequestTimeout,
    connect_unix,
)

__all__ = [
    "ANSWER_TIMEOUT",
    "CALL_MARGIN",
    "RELOAD_TIMEOUT",
    "DaemonClient",
    "call_timeout",
    "response_from_json",
    "run_with_daemon",
]

ANSWER_TIMEOUT: Final = 5.0
"""Seconds the daemon has to accept a connection and answer ``daemon.status`` (and other quick methods)."""
CALL_MARGIN: Final = 5.0
"""Seconds added to an integration request's own bound, for the daemon's routing and answer."""
RELOAD_TIMEOUT: Final = 60.0
"""Seconds ``integration.reload`` may take: a graceful stop drains requests, then stops in steps."""

_T = TypeVar("_T")


def response_from_json(raw: Any) -> IntegrationResponse:
    """An ``IntegrationResponse`` from its JSON form (``IntegrationResponse.to_json``)."""
    error = raw.get("error")
    return IntegrationResponse(
        str(raw["request_id"]),
        bool(raw["success"]),
        raw.get("data"),
        None if error is None else ErrorObject(int(error["code"]), str(error["message"]), error.get("data")),
    )


def call_timeout(timeout_ms: int | None) -> float:
    """How long to wait for ``integration.call``: the request's bound (else the longest) plus a margin."""
    bound = MAX_REQUEST_TIMEOUT if timeout_ms is None else timeout_ms / 1000
    return bound + CALL_MARGIN


class DaemonClient:
    """A connection to the daemon of ``data_dir`` (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        library: str | None = None,
        check_library: bool = False,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.files = DaemonFiles(Path(data_dir))
        self.answer_timeout = answer_timeout
        self.library = library
        self.check_library = check_library
        self.info: dict[str, Any] = {}
        self._connection: Connection | None = None

    @property
    def socket(self) -> Path:
        return self.files.socket

    async def __aenter__(self) -> Self:
        connection = Connection(name="daemon client")
        try:
            async with asyncio.timeout(self.answer_timeout):
                await connect_unix(self.socket, connection)
        except FileNotFoundError:
            raise self._absent(
                "it has no socket there (starting or stopping, or another XDG_RUNTIME_DIR)"
            ) from None
        except ConnectionRefusedError:
            raise self._absent("it does not accept connections") from None
        except TimeoutError:
            raise self._unreachable(f"connecting took more than {self.answer_timeout:g} s") from None
        except OSError as exc:
            raise self._unreachable(f"cannot connect: {exc.strerror or exc}") from None
        await connection.__aenter__()
        self._connection = connection
        try:
            info = await self.request("daemon.status", timeout=self.answer_timeout)
            self.info = dict(info) if isinstance(info, dict) else {}
            self._check_library()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.__aexit__(None, None, None)

    async def request(
        self,
        method: str,
        params: Params = None,
        *,
        timeout: float = ANSWER_TIMEOUT,  # noqa: ASYNC109 -- the dispatcher's bound for this request
        on_progress: ProgressHandler | None = None,
    ) -> Any:
        """Call a control method; its result, or the daemon's error (``spacedrive.ipc`` exceptions)."""
        if self._connection is None:
            raise DaemonNotRunning("not connected to the daemon: use `async with DaemonClient(...)`")
        try:
            return await self._connection.request(
                method, params, idle_timeout=timeout, max_timeout=timeout, on_progress=on_progress
            )
        except RequestTimeout:
            raise self._unreachable(f"it did not answer {method} within {timeout:g} s") from None
        except ConnectionClosed:
            raise self._unreachable(f"it closed the connection during {method} (it stopped?)") from None

    # -- the control methods, typed ----------------------------------------------------------

    async def call(
        self, request: IntegrationRequest, *, on_progress: ProgressHandler | None = None
    ) -> IntegrationResponse:
        """``integration.call``: route ``request`` through the daemon's manager; ``on_progress``
        receives the integration's progress reports, forwarded by the daemon."""
        raw = await self.request(
            "integration.call",
            request.to_json(),
            timeout=call_timeout(request.timeout_ms),
            on_progress=on_progress,
        )
        return response_from_json(raw)

    async def batch(self, requests: Sequence[IntegrationRequest]) -> list[IntegrationResponse]:
        """``integration.batch``: answers in order."""
        longest = max((call_timeout(r.timeout_ms) for r in requests), default=ANSWER_TIMEOUT)
        raw = await self.request(
            "integration.batch", {"requests": [r.to_json() for r in requests]}, timeout=longest
        )
        return [response_from_json(item) for item in raw]

    async def integration_status(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        """``integration.status``: one row per integration, live."""
        params = {} if integration_id is None else {"id": integration_id}
        return list(await self.request("integration.status", params))

    async def reload(self, integration_id: str) -> dict[str, Any]:
        """``integration.reload``: ``{"id", "action", "state"}`` (may wait for a graceful stop)."""
        return dict(await self.request("integration.reload", {"id": integration_id}, timeout=RELOAD_TIMEOUT))

    async def stop(self, timeout: float) -> bool:  # noqa: ASYNC109 -- a bound, not a deadline API
        """``daemon.stop``, then wait until the daemon closes the connection; whether it did in time."""
        await self.request("daemon.stop")
        return await self.wait_closed(timeout)

    async def wait_closed(self, timeout: float) -> bool:  # noqa: ASYNC109 -- a bound, not a deadline API
        """Wait until the daemon closes the connection (``daemon.stop``); whether it did in time."""
        if self._connection is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connection.wait_closed()
        return self._connection.is_closed

    def _check_library(self) -> None:
        if not self.check_library:
            return
        hosted = self.info.get("library") or {}
        wanted = self.library or DEFAULT_LIBRARY_NAME
        if wanted not in (hosted.get("name"), hosted.get("id")):
            raise DaemonServesAnotherLibrary(
                f"the daemon of {self.files.data_dir} hosts library {hosted.get('name')!r}, not {wanted!r}"
            )

    def _absent(self, why: str) -> DaemonNotRunning | DaemonUnreachable:
        """No usable socket: a daemon starting, stopping or stuck if the lock is held, else none."""
        if self.files.lock_held():
            return self._unreachable(why)
        stale = " (its socket was left by a daemon that did not stop cleanly)" if self.socket.exists() else ""
        return DaemonNotRunning(f"no daemon runs for {self.files.data_dir}{stale}")

    def _unreachable(self, why: str) -> DaemonUnreachable:
        pid = self.files.read_pid()
        who = f"the daemon (pid {pid})" if pid is not None else "the daemon"
        return DaemonUnreachable(
            f"{who} of {self.files.data_dir} does not answer on {self.socket}: {why}; try again, or stop "
            f"it: spacedrive daemon stop" + (f" (or kill {pid})" if pid is not None else "")
        )


def run_with_daemon(
    data_dir: Path,
    use: Callable[[DaemonClient], Awaitable[_T]],
    *,
    library: str | None = None,
    check_library: bool = False,
) -> _T:
    """From synchronous code: connect, ``await use(client)``, disconnect; raises as entering does."""

    async def main() -> _T:
        async with DaemonClient(data_dir, library=library, check_library=check_library) as client:
            return await use(client)

    return asyncio.run(main())
