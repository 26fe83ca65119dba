"""Advisory file locks (``flock``) that order the processes of one data dir.

Two kinds are used:

* the **store lock**, ``<data dir>/.credentials.lock``: held shared by every operation that
  uses the master key (sealing, opening), exclusive by a key rotation and its recovery. A
  rotation therefore never runs beside a process that seals under the key it replaces.
* a **refresh lock** per credential, in the runtime dir: held across the token request, so
  that two processes (the daemon and a CLI) never spend the same refresh token twice.

``flock`` locks belong to an open file description, so two opens in one process exclude each
other as two processes do. Where ``flock`` does not exist (Windows) the locks are no-ops.

The asynchronous form tries without blocking first; when the lock is taken it waits in a
daemon thread, bounded by ``timeout_s``. If the waiter gives up (timeout, cancellation) while
the thread still waits, the thread closes the descriptor once it gets the lock, which releases
it: a lock is never left held by nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

from .errors import CredentialError

if sys.platform != "win32":
    import fcntl

__all__ = ["STORE_LOCK_FILE", "hold", "hold_async"]

STORE_LOCK_FILE: Final = ".credentials.lock"


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise CredentialError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def hold(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the lock of ``path`` (blocking until it is free)."""
    fd = _open(path)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def hold_async(path: Path, *, exclusive: bool, timeout_s: float, what: str) -> AsyncIterator[None]:
    """Hold the lock of ``path``, waiting at most ``timeout_s`` seconds (``CredentialError`` then)."""
    fd = _open(path)
    if sys.platform != "win32":
        await _acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout_s, what)
    try:
        yield
    finally:
        os.close(fd)


if sys.platform != "win32":

    async def _acquire(fd: int, operation: int, timeout_s: float, what: str) -> None:
        """Lock ``fd``; on any failure ``fd`` is closed (now, or by the waiting thread)."""
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            os.close(fd)
            raise CredentialError(f"cannot lock {what}: {exc.strerror or exc}") from exc
        waiter = _Waiter(fd, operation)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter.wait()
        except TimeoutError:
            waiter.abandon()
            raise CredentialError(f"timed out after {timeout_s:g} s waiting for {what}") from None
        except BaseException:
            waiter.abandon()
            raise

    class _Waiter:
        """A thread blocked in ``flock``, and who closes the descriptor if the waiter leaves."""

        def __init__(self, fd: int, operation: int) -> None:
            self._fd = fd
            self._operation = operation
            self._loop = asyncio.get_running_loop()
            self._done: asyncio.Future[None] = self._loop.create_future()
            self._guard = threading.Lock()
            self._state = "waiting"  # -> "locked" | "failed" (the thread) | "abandoned" (the waiter)
            threading.Thread(target=self._run, name="spacedrive-credential-lock", daemon=True).start()

        async def wait(self) -> None:
            await asyncio.shield(self._done)

        def _run(self) -> None:
            error: OSError | None = None
            try:
                fcntl.flock(self._fd, self._operation)
            except OSError as exc:
                error = exc
            with self._guard:
                if self._state == "abandoned":
                    os.close(self._fd)  # releases the lock we just got
                    return
                self._state = "failed" if error is not None else "locked"
            try:
                self._loop.call_soon_threadsafe(self._settle, error)
            except RuntimeError:  # the loop is closed: nobody will use the lock
                os.close(self._fd)

        def _settle(self, error: OSError | None) -> None:
            if self._done.done() or self._state == "abandoned":
                return
            if error is not None:
                self._done.set_exception(CredentialError(f"cannot take a lock: {error.strerror or error}"))
            else:
                self._done.set_result(None)

        def abandon(self) -> None:
            """The waiter leaves: whoever holds the descriptor last closes it."""
            with self._guard:
                waiting = self._state == "waiting"
                self._state = "abandoned"
            if not waiting:
                os.close(self._fd)
