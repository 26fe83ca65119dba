"""A zygote: a Python process with the SDK imported that forks one child per integration start.

::

    async with Zygote() as zygote:
        async with launch(argv, integration_id="hello", spawner=zygote.create_subprocess_exec) as peer:
            ...

Why. Starting a Python integration is mostly starting an interpreter and importing
``spacedrive.sdk`` (``asyncio`` alone is ~50 ms on a small VM): 90 to 130 ms before the first
byte of the handshake. The zygote pays that once. The core starts it (``Zygote``) with
``[python, -I, -c, "...serve()", --fd N, --parent CORE_PID]``; it imports :data:`PRELOAD`
(and :data:`PRELOAD_IF_INSTALLED`), freezes the garbage collector's view of those objects
(``gc.freeze``: fewer pages copied after the fork), says ``ready``, and then waits. A start
costs a ``fork`` and a few system calls.

The channel. One ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair: each message is one JSON object
(message boundaries for free, descriptors attached with ``SCM_RIGHTS``). Core → zygote:
``{"id", "argv", "env", "cwd", "session", "fds": [target, ...]}`` with one descriptor per
target (0, 1, 2, then each of ``pass_fds``, in order). Zygote → core: ``{"ready": pid}``
once; ``{"id", "pid"}`` or ``{"id", "errno", "error", "filename"}`` per request (an exec or
``chdir`` that failed in the child: the core raises ``OSError`` as ``subprocess`` does);
``{"exit": pid, "returncode": n}`` when it reaped a child (negative: killed by that signal,
as asyncio reports). The zygote stays single-threaded, with no event loop: a blocking
``poll`` over the channel and a SIGCHLD wakeup pipe. It sets ``PR_SET_PDEATHSIG`` (SIGKILL)
on itself and checks that the core is still its parent; it exits when the channel closes.

The child, between ``fork`` and the integration's first line: ``setsid`` (when
``start_new_session``: ``launch`` signals the group with ``killpg``), ``PR_SET_PDEATHSIG``
SIGKILL and a check that the zygote is still its parent (the zygote itself dies with the
core, so the chain ends at the core); the descriptors moved above every number in play,
then ``dup2``'d to their targets (as ``subprocess`` does, so that a source and a target may
share a number), every other descriptor closed; the signal mask emptied and the handlers the
zygote changed put back; ``os.environ`` replaced by the requested environment; ``chdir``.
Then one of three:

* the sandbox launcher's command (``python -I -c LAUNCH_CODE --fd N -- ...``, see
  :mod:`spacedrive.sandbox.launch`) on this interpreter: the launcher's ``main`` runs here,
  told that its parent is the zygote (the policy names the core, its grandparent);
* ``python script.py ...`` or ``python -m module ...`` on this interpreter, without
  interpreter options and without ``PYTHON*`` variables the zygote cannot honour once
  started (all but ``PYTHONPATH``, ``PYTHONDONTWRITEBYTECODE`` and ``PYTHONUNBUFFERED``),
  with the zygote's locale: it runs here, through the launcher's own ``run``: ``sys.argv``,
  a fresh ``__main__``, ``sys.path[0]`` the script's folder, new ``sys.std*`` objects on the
  new descriptors, ``PYTHONPATH`` applied, no event loop, default signal handlers, logging
  untouched (the SDK configures none at import);
* anything else: ``os.execve`` (correct, and no faster than a plain spawn).

A child that runs in-process exits as an interpreter would: ``SystemExit``'s code, 1 after an
uncaught exception (its traceback on stderr), death by SIGINT after ``KeyboardInterrupt``;
threads joined and ``atexit`` handlers run first. It never returns into the zygote's loop.
What cannot be made identical: ``sys.flags`` are those of ``-I`` (isolated, no user site,
safe path), ``sys.orig_argv`` is the zygote's, and modules the zygote preloaded stay the ones
it found (a ``PYTHONPATH`` that shadows ``spacedrive`` is not honoured for them).

The core's side. ``Zygote.create_subprocess_exec`` has ``asyncio.create_subprocess_exec``'s
signature (the keywords ``launch`` passes) and returns a ``ZygoteProcess``, an
``asyncio.subprocess.Process`` whose exit status comes from the zygote. ``PIPE`` becomes an
``os.pipe`` whose read end is an ``asyncio.StreamReader``; ``DEVNULL`` opens ``/dev/null``;
``None`` passes the core's own descriptor. ``stdin=PIPE`` is not supported. ``preexec_fn``
cannot run in a zygote's child: it is accepted and ignored, because the one the core uses
(the supervisor's parent-death signal) is what every child of the zygote gets anyway; a
caller whose ``preexec_fn`` does anything else must not use the zygote.

When the zygote dies: pending spawns fail with :class:`ZygoteError` (an ``OSError``); its
children die of their parent-death signal and their ``wait()`` returns -9 once they are gone
(watched through pidfds); the next spawn starts a new zygote. With ``fallback=True`` a spawn
the zygote cannot serve (it cannot start, or died during the spawn) is made by
``asyncio.create_subprocess_exec`` instead (with ``preexec_fn``), with a warning; a zygote that
failed to start is not tried again before ``RETRY_AFTER`` seconds. Leaving the
context closes the channel (the zygote exits, its children die with it) and waits for them,
bounded by :data:`STOP_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import importlib
import io
import json
import logging
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Final, NoReturn, Self

from ._env import ENV_INTEGRATION_ID, ENV_IPC, ENV_PROTOCOL, ENV_SECRET

__all__ = [
    "MAX_MESSAGE",
    "PRELOAD",
    "PRELOAD_IF_INSTALLED",
    "RETRY_AFTER",
    "SPAWN_TIMEOUT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Zygote",
    "ZygoteError",
    "ZygoteProcess",
    "serve",
]

PRELOAD: Final = (
    "spacedrive.sdk",
    "spacedrive.sandbox.launch",
    "spacedrive.sandbox._landlock",
    "spacedrive.sandbox._seccomp",
    "spacedrive.sandbox._view",
    "resource",
)
"""Modules the zygote imports before it says ready: what every Python integration imports,
and the modules of the sandbox launcher's steps (its ``preload`` step, 1.5 ms in a forked
child, then finds them loaded)."""
PRELOAD_IF_INSTALLED: Final = ("uvloop", "zstandard", "pathlib")
"""Imported too when installed: a loop an integration may choose, what the SDK imports late
(``zstandard`` once compression is negotiated), what most integrations import (``pathlib``)."""
START_TIMEOUT: Final = 10.0
"""Seconds from starting the zygote to its ``ready`` (an interpreter start and the imports)."""
SPAWN_TIMEOUT: Final = 5.0
"""Seconds the zygote may take to answer one spawn (a fork; more means it is stuck)."""
RETRY_AFTER: Final = 30.0
"""Seconds after a failed start of the zygote before another is tried (spawns fail, or fall
back, at once meanwhile: a zygote that cannot start must not add its timeout to every start)."""
STOP_TIMEOUT: Final = 2.0
"""Seconds for the zygote, then its children, to exit once the channel is closed."""
MAX_MESSAGE: Final = 1 << 20
"""The largest message on the channel (a request carries the child's whole environment)."""
MAX_FDS: Final = 253
"""Descriptors one request may carry (the kernel's limit for one ``SCM_RIGHTS`` message)."""
SERVE_CODE: Final = "from spacedrive.ipc._zygote import serve; serve()"

_LAUNCHER_OPTIONS: Final = ("-I", "-c")
_HONOURED_PYTHON_VARIABLES: Final = frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"})
_LOCALE_VARIABLES: Final = ("LC_ALL", "LC_CTYPE", "LANG")
_LAUNCH_VARIABLES: Final = (ENV_IPC, ENV_SECRET, ENV_INTEGRATION_ID, ENV_PROTOCOL)
_PYTHON_IGNORED_SIGNALS: Final = ("SIGPIPE", "SIGXFSZ")
"""Ignored by every Python interpreter at start; put back to default before an exec."""
_EXIT_SETUP_FAILED: Final = 127
_STDERR_TAIL_LINES: Final = 20
_READ_SIZE: Final = 65536
logger = logging.getLogger(__name__)


class ZygoteError(OSError):
    """The zygote could not start, died, or did not answer: the spawn did not happen there."""


# =============================================================================================
# The core's side
# =============================================================================================


class Zygote:
    """The core's handle on a zygote process (an async context manager; see the module docs)."""

    def __init__(
        self,
        *,
        python: str | None = None,
        preload: Sequence[str] = PRELOAD,
        start_timeout: float = START_TIMEOUT,
        spawn_timeout: float = SPAWN_TIMEOUT,
        fallback: bool = False,
    ) -> None:
        self.python = python or sys.executable
        self.preload = tuple(preload)
        self.start_timeout = start_timeout
        self.spawn_timeout = spawn_timeout
        self.fallback = fallback
        self.starts = 0
        """How many zygote processes were started (more than one: it died and was restarted)."""
        self._current: _Incarnation | None = None
        self._previous: list[_Incarnation] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._start_failed: tuple[float, str] | None = None  # (loop time, why) of the last failed start

    @property
    def pid(self) -> int | None:
        """The running zygote's pid (``None`` before it started or once it died)."""
        current = self._current
        return current.pid if current is not None and not current.lost else None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the zygote now (else the first spawn does); ``ZygoteError`` if it cannot (with
        ``fallback``: a warning, and each spawn tries again before it falls back)."""
        async with self._lock:
            try:
                await self._running()
            except ZygoteError as exc:
                if not self.fallback:
                    raise
                logger.warning("%s; spawns fall back to asyncio.create_subprocess_exec", exc)

    async def aclose(self) -> None:
        """Stop the zygote; its children die with it (waited for, bounded by ``STOP_TIMEOUT``)."""
        self._closed = True
        for incarnation in [*self._previous, *([self._current] if self._current else [])]:
            await incarnation.stop()
        self._previous.clear()
        self._current = None

    async def create_subprocess_exec(
        self,
        program: str | os.PathLike[str],
        *args: str | os.PathLike[str],
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_new_session: bool = False,
        preexec_fn: Callable[[], object] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> asyncio.subprocess.Process:
        """Fork a child of the zygote that runs ``program *args`` (a ``launch`` spawner): a
        ``ZygoteProcess``, or with ``fallback`` a plain ``Process`` when the zygote failed.

        Raises ``OSError`` as ``asyncio.create_subprocess_exec`` does (e.g. ``FileNotFoundError``
        when the program or ``cwd`` does not exist), :class:`ZygoteError` when the zygote
        cannot serve the spawn (unless ``fallback``), ``ValueError`` for ``stdin=PIPE``.
        ``preexec_fn`` is ignored (see the module docs).
        """
        argv = [os.fsdecode(program), *(os.fsdecode(arg) for arg in args)]
        if stdin == asyncio.subprocess.PIPE:
            raise ValueError("a zygote's child cannot have stdin=PIPE: pass a descriptor or DEVNULL")
        request = _Request(argv, dict(os.environ if env is None else env), cwd, start_new_session)
        try:
            async with self._lock:
                return await self._spawn(request, (stdin, stdout, stderr), tuple(pass_fds))
        except ZygoteError as exc:
            if not self.fallback or self._closed:
                raise
            logger.warning("zygote: %s; starting %s without it", exc, argv[0])
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=request.env,
            cwd=cwd,
            start_new_session=start_new_session,
            preexec_fn=preexec_fn,
            pass_fds=pass_fds,
        )

    # -- internals --------------------------------------------------------------------------

    async def _running(self) -> _Incarnation:
        if self._closed:
            raise ZygoteError("the zygote is closed")
        current = self._current
        if current is not None and not current.lost:
            return current
        if current is not None:
            self._previous.append(current)  # its children may still be dying: stop() waits for them
        self._current = None
        now = asyncio.get_running_loop().time()
        if self._start_failed is not None and now - self._start_failed[0] < RETRY_AFTER:
            retry_in = RETRY_AFTER - (now - self._start_failed[0])
            raise ZygoteError(f"{self._start_failed[1]} (tried again in {retry_in:.0f} s)")
        self.starts += 1
        try:
            self._current = await _Incarnation.start(self.python, self.preload, self.start_timeout)
        except ZygoteError as exc:
            self._start_failed = (now, str(exc))
            raise
        self._start_failed = None
        return self._current

    async def _spawn(
        self, request: _Request, stdio: tuple[int | IO[Any] | None, ...], pass_fds: tuple[int, ...]
    ) -> ZygoteProcess:
        incarnation = await self._running()
        fds = _ChildFds.open(stdio, pass_fds)
        try:
            transport = await incarnation.spawn(request, fds, self.spawn_timeout)
        except BaseException:
            fds.close_ours()
            raise
        finally:
            fds.close_theirs()
        loop = asyncio.get_running_loop()
        streams = _Streams()
        for target, read_fd in fds.ours.items():
            streams.attach(target, await _read_pipe(loop, read_fd, transport))
        fds.ours.clear()
        return ZygoteProcess(transport, streams, loop)


class ZygoteProcess(asyncio.subprocess.Process):
    """A child of the zygote, as ``asyncio.subprocess.Process`` (``pid``, ``returncode``,
    ``wait()``, ``stdout``, ``stderr``, ``send_signal``/``terminate``/``kill``)."""

    def __init__(
        self, transport: _ZygoteTransport, streams: _Streams, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(transport, streams, loop)
        self._child = transport

    @property
    def returncode(self) -> int | None:
        return self._child.get_returncode()

    async def wait(self) -> int:
        return await self._child.wait()

    async def communicate(self, input: bytes | bytearray | memoryview | None = None) -> tuple[bytes, bytes]:
        """Read stdout and stderr (the ``PIPE`` ones) to their end, then wait for the exit."""
        if input is not None:
            raise ValueError("a zygote's child has no stdin pipe")

        async def read(stream: asyncio.StreamReader | None) -> bytes:
            return b"" if stream is None else await stream.read()

        out, err = await asyncio.gather(read(self.stdout), read(self.stderr))
        await self.wait()
        return out, err


class _Request:
    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str | os.PathLike[str] | None, session: bool
    ) -> None:
        self.argv = argv
        self.env = env
        self.cwd = None if cwd is None else os.fsdecode(cwd)
        self.session = session

    def encode(self, request_id: int, targets: Sequence[int]) -> bytes:
        message = {
            "id": request_id,
            "argv": self.argv,
            "env": self.env,
            "cwd": self.cwd,
            "session": self.session,
            "fds": list(targets),
        }
        return json.dumps(message).encode()


class _ChildFds:
    """The descriptors a child gets (target → our descriptor), and which of them we made."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}
        self.ours: dict[int, int] = {}  # target (1 or 2) → read end of a PIPE, kept by the core
        self._made: list[int] = []  # closed once sent: the child has its copies

    @classmethod
    def open(cls, stdio: tuple[int | IO[Any] | None, ...], pass_fds: tuple[int, ...]) -> _ChildFds:
        fds = cls()
        try:
            for target, spec in enumerate(stdio):
                fds.sent[target] = fds._resolve(target, spec)
            for fd in pass_fds:
                fds.sent[int(fd)] = int(fd)
        except BaseException:
            fds.close_theirs()
            fds.close_ours()
            raise
        return fds

    def _resolve(self, target: int, spec: int | IO[Any] | None) -> int:
        if spec is None:
            return target if _is_open(target) else self._devnull()
        if spec == asyncio.subprocess.DEVNULL:
            return self._devnull()
        if spec == asyncio.subprocess.STDOUT:
            return self.sent[1]
        if spec == asyncio.subprocess.PIPE:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            self.ours[target] = read_end
            self._made.append(write_end)
            return write_end
        return spec if isinstance(spec, int) else spec.fileno()

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._made.append(fd)
        return fd

    def close_theirs(self) -> None:
        for fd in self._made:
            os.close(fd)
        self._made.clear()

    def close_ours(self) -> None:
        for fd in self.ours.values():
            os.close(fd)
        self.ours.clear()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class _Streams(asyncio.BaseProtocol):
    """What ``asyncio.subprocess.Process`` reads its ``stdin``/``stdout``/``stderr`` from."""

    def __init__(self) -> None:
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None

    def attach(self, target: int, reader: asyncio.StreamReader) -> None:
        if target == 1:
            self.stdout = reader
        else:
            self.stderr = reader


async def _read_pipe(
    loop: asyncio.AbstractEventLoop, fd: int, owner: _ZygoteTransport
) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    owner.pipes.append(transport)
    return reader


class _ZygoteTransport(asyncio.SubprocessTransport):
    """One child's state: its pid, its exit status (from the zygote) and the pipes we read."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.returncode: int | None = None
        self.pipes: list[asyncio.ReadTransport] = []
        self._exited = asyncio.Event()
        self._closing = False
        self._pidfd: int | None = None

    def get_pid(self) -> int:
        return self.pid

    def get_returncode(self) -> int | None:
        return self.returncode

    def get_pipe_transport(self, fd: int) -> asyncio.BaseTransport | None:
        return None

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signal: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close the pipes we read (``launch`` does when a grandchild still holds them)."""
        self._closing = True
        for pipe in self.pipes:
            pipe.close()

    def exited(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self._exited.set()
        self._stop_watching()

    def orphaned(self, loop: asyncio.AbstractEventLoop) -> None:
        """The zygote died: this child dies of its parent-death signal; -9 once it is gone."""
        if self.returncode is not None or self._pidfd is not None:
            return
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # gone already (or no pidfds: then it is dying, report it now)
            self.exited(-signal.SIGKILL)
            return
        loop.add_reader(self._pidfd, self.exited, -signal.SIGKILL)

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


class _StderrLines(asyncio.Protocol):
    """The zygote's own stderr: each line logged, the last ones kept for a start error."""

    def __init__(self) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            self.tail.append(text)
            logger.warning("zygote: %s", text)


class _Incarnation:
    """One zygote process and its channel; ``lost`` once the channel ended."""

    def __init__(
        self, process: asyncio.subprocess.Process, channel: socket.socket, stderr: _StderrLines
    ) -> None:
        self.process = process
        self.channel = channel
        self.stderr = stderr
        self.pid = process.pid
        self.lost = False
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[int] = self.loop.create_future()
        self.pending: dict[int, asyncio.Future[_ZygoteTransport]] = {}
        self.children: dict[int, _ZygoteTransport] = {}
        self.orphans: list[_ZygoteTransport] = []  # alive when the zygote died: dying of SIGKILL
        self.next_id = 1
        self.stderr_transport: asyncio.BaseTransport | None = None
        self.loop.add_reader(channel.fileno(), self._readable)

    @classmethod
    async def start(cls, python: str, preload: Sequence[str], limit: float) -> _Incarnation:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        argv = [python, "-I", "-c", SERVE_CODE, "--fd", str(theirs.fileno()), "--parent", str(os.getpid())]
        argv += ["--preload", ",".join(preload)]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=write_end,
                env=_zygote_environ(),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a ^C at the core's terminal is for the core
            )
        except BaseException:
            ours.close()
            os.close(read_end)
            raise
        finally:
            theirs.close()
            os.close(write_end)
        stderr = _StderrLines()
        incarnation = cls(process, ours, stderr)
        await incarnation._read_stderr(read_end)
        await incarnation._wait_ready(limit)
        return incarnation

    async def _read_stderr(self, fd: int) -> None:
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            self.stderr_transport, _ = await self.loop.connect_read_pipe(lambda: self.stderr, pipe)
        except BaseException:
            pipe.close()
            raise

    async def _wait_ready(self, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await self.ready
        except (TimeoutError, ZygoteError) as exc:
            await self.stop()
            why = f"did not say ready within {limit} s" if isinstance(exc, TimeoutError) else str(exc)
            raise ZygoteError(self._with_tail(f"the zygote {why}")) from None
        except BaseException:
            await self.stop()
            raise

    def _with_tail(self, message: str) -> str:
        if not self.stderr.tail:
            return message
        return message + "; its stderr:\n" + "\n".join(f"  | {line}" for line in self.stderr.tail)

    async def spawn(self, request: _Request, fds: _ChildFds, limit: float) -> _ZygoteTransport:
        request_id = self.next_id
        self.next_id += 1
        reply: asyncio.Future[_ZygoteTransport] = self.loop.create_future()
        self.pending[request_id] = reply
        try:
            await self._send(request.encode(request_id, list(fds.sent)), list(fds.sent.values()))
            async with asyncio.timeout(limit):
                return await reply
        except TimeoutError:
            self._lose(f"the zygote did not answer a spawn within {limit} s")
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            raise ZygoteError(f"the zygote (pid {self.pid}) did not answer within {limit} s") from None
        finally:
            self.pending.pop(request_id, None)

    async def _send(self, data: bytes, fds: list[int]) -> None:
        if len(data) > MAX_MESSAGE or len(fds) > MAX_FDS:
            raise ValueError(f"a spawn request is limited to {MAX_MESSAGE} bytes and {MAX_FDS} descriptors")
        while True:
            if self.lost:
                raise ZygoteError(f"the zygote (pid {self.pid}) exited")
            try:
                socket.send_fds(self.channel, [data], fds)
                return
            except BlockingIOError:
                await self._writable()
            except (BrokenPipeError, ConnectionResetError):
                self._lose("the channel broke")

    async def _writable(self) -> None:
        ready = self.loop.create_future()
        self.loop.add_writer(self.channel.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            self.loop.remove_writer(self.channel.fileno())

    def _readable(self) -> None:
        while not self.lost:
            try:
                data = self.channel.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lose(f"the zygote (pid {self.pid}) exited")
                return
            try:
                self._dispatch(json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("zygote: unreadable message %r: %s", data[:200], exc)
                self._lose("the zygote sent an unreadable message")
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exit" in message:
            child = self.children.pop(int(message["exit"]), None)
            if child is not None:
                child.exited(int(message["returncode"]))
        elif "id" in message:
            reply = self.pending.get(int(message["id"]))
            if reply is None or reply.done():
                return
            if "pid" in message:
                child = self.children[message["pid"]] = _ZygoteTransport(int(message["pid"]))
                reply.set_result(child)
            else:
                error = OSError(int(message["errno"]), message["error"], message.get("filename"))
                reply.set_exception(error)
        elif "ready" in message and not self.ready.done():
            self.ready.set_result(int(message["ready"]))

    def _lose(self, reason: str) -> None:
        """The channel ended: fail what waits on it, watch the children die."""
        if self.lost:
            return
        self.lost = True
        self.loop.remove_reader(self.channel.fileno())
        self.channel.close()
        waiting: list[asyncio.Future[Any]] = [self.ready, *self.pending.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(ZygoteError(reason))
        for child in self.children.values():
            child.orphaned(self.loop)
        self.orphans = [child for child in self.children.values() if child.returncode is None]
        self.children.clear()

    async def stop(self) -> None:
        """Close the channel (the zygote exits: its children die), wait for it and for them."""
        self._lose("the zygote was stopped")
        if not await _exits_within(self.process.wait(), STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await _exits_within(self.process.wait(), STOP_TIMEOUT)
        if self.stderr_transport is not None:
            self.stderr_transport.close()
        orphans = self.orphans
        if orphans and not await _exits_within(asyncio.gather(*(o.wait() for o in orphans)), STOP_TIMEOUT):
            logger.error("zygote: children %s outlived it by %s s", [o.pid for o in orphans], STOP_TIMEOUT)


async def _exits_within(awaitable: Any, seconds: float) -> bool:
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task})
    return bool(done) and not task.cancelled()


def _zygote_environ() -> dict[str, str]:
    """The core's environment without an integration's launch variables (the SDK reads
    ``SPACEDRIVE_IPC`` at import: the zygote must not look like an integration)."""
    return {name: value for name, value in os.environ.items() if name not in _LAUNCH_VARIABLES}


# =============================================================================================
# The zygote's side
# =============================================================================================


def serve(args: Sequence[str] | None = None) -> NoReturn:
    """The zygote's entry point: ``--fd N --parent PID [--preload a,b]`` (``sys.argv[1:]``)."""
    fd, parent, preload = _parse(list(sys.argv[1:] if args is None else args))
    from spacedrive.sandbox import _sys

    _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the core died before prctl: nobody to serve
    for name in preload:
        importlib.import_module(name)
    for name in PRELOAD_IF_INSTALLED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _Server(fd).run()


def _parse(args: list[str]) -> tuple[int, int, list[str]]:
    options = dict(zip(args[::2], args[1::2], strict=False))
    try:
        fd, parent = int(options["--fd"]), int(options["--parent"])
    except (KeyError, ValueError):
        raise SystemExit("usage: python -I -c '...serve()' --fd N --parent PID [--preload a,b]") from None
    preload = [name for name in options.get("--preload", ",".join(PRELOAD)).split(",") if name]
    return fd, parent, preload


class _Server:
    """The zygote's loop: one request at a time, children reaped on SIGCHLD."""

    def __init__(self, fd: int) -> None:
        self.channel = socket.socket(fileno=fd)
        self.channel.setblocking(True)
        self.pid = os.getpid()
        self.locale = {name: os.environ.get(name) for name in _LOCALE_VARIABLES}
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> NoReturn:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the core stops us by closing the channel
        signal.signal(signal.SIGCHLD, _ignore_signal)  # a handler, so that the wakeup fd is written
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        gc.freeze()  # the preloaded objects: the children's collections leave their pages shared
        self.send({"ready": self.pid})
        poller = select.poll()
        poller.register(self.channel.fileno(), select.POLLIN)
        poller.register(self.wake_read, select.POLLIN)
        while True:
            for fd, _event in poller.poll():
                if fd == self.wake_read:
                    _drain(self.wake_read)
                else:
                    self.receive()
            self.reap()

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.channel.send(json.dumps(message).encode())
        except OSError:
            os._exit(0)  # the core is gone

    def receive(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(self.channel, MAX_MESSAGE, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds, flags = b"", [], 0
        if not data:
            os._exit(0)  # the core closed the channel (or died): our children die with us
        request_id = 0
        try:
            request = json.loads(data)
            request_id = int(request["id"])
            if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != len(request["fds"]):
                raise OSError(0, "the request's descriptors did not all arrive")
            self.send({"id": request_id, "pid": self.fork(request, fds)})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.send({"id": request_id, **_failure(exc)})
        finally:
            for fd in fds:
                os.close(fd)

    def fork(self, request: dict[str, Any], fds: list[int]) -> int:
        """Fork the child; its pid once it runs (execs, or starts the Python code)."""
        report_read, report_write = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:
            os.close(report_read)
            os.close(report_write)
            raise
        if pid == 0:
            _Child(self, request, fds, report_write).main()
        os.close(report_write)
        try:
            failure = _read_to_end(report_read)
        finally:
            os.close(report_read)
        if failure:
            os.waitpid(pid, 0)  # it exits at once: reap it here, the core never hears of it
            report = json.loads(failure)
            raise OSError(report["errno"], os.strerror(report["errno"]), report.get("filename"))
        return pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"exit": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _failure(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, OSError):
        return {"errno": exc.errno or 0, "error": exc.strerror or str(exc), "filename": exc.filename}
    return {"errno": 0, "error": f"malformed request: {type(exc).__name__}: {exc}", "filename": None}


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGCHLD's handler in the zygote: the wakeup fd does the work."""


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


class _Child:
    """The forked child, until the integration runs; ``main`` never returns."""

    def __init__(self, server: _Server, request: dict[str, Any], fds: list[int], report: int) -> None:
        self.server = server
        self.argv: list[str] = request["argv"]
        self.env: dict[str, str] = request["env"]
        self.cwd: str | None = request["cwd"]
        self.session = bool(request["session"])
        self.targets: list[int] = request["fds"]
        self.fds = fds
        self.report = report

    def main(self) -> NoReturn:
        code = _EXIT_SETUP_FAILED
        try:
            code = self.start()
        except BaseException:  # a bug of ours: never return into the zygote's loop
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
        os._exit(code)

    def start(self) -> int:
        signal.set_wakeup_fd(-1)
        self.server.channel.detach()  # its number is closed below: the object must not close it later
        try:
            self.prepare()
            mode, executable = self.choose()
            if mode == "exec":
                _restore_exec_signals()
                os.execve(executable, self.argv, self.env)
        except OSError as exc:
            self.fail(exc)
            return _EXIT_SETUP_FAILED
        os.close(self.report)  # running: the zygote answers the core with our pid
        return _run_python(mode, self.argv, executable, self.server.pid)

    def prepare(self) -> None:
        if self.session:
            os.setsid()
        from spacedrive.sandbox import _sys

        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.server.pid:
            os._exit(_EXIT_SETUP_FAILED)  # the zygote (so the core) died before prctl
        self.report = _install_fds(self.fds, self.targets, self.report)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(self.env)
        if self.cwd is not None:
            os.chdir(self.cwd)

    def choose(self) -> tuple[str, str]:
        """``("launcher" | "python" | "exec", the executable)``."""
        from spacedrive.sandbox import launch

        executable = launch._resolve_executable(self.argv[0])
        if os.path.abspath(executable) != os.path.abspath(sys.executable):
            return "exec", executable  # another interpreter (even of the same install: another venv)
        if tuple(self.argv[1:3]) == _LAUNCHER_OPTIONS and self.argv[3:4] == [launch.LAUNCH_CODE]:
            return "launcher", executable
        if launch._runs_in_process(executable, self.argv) and self.honourable():
            return "python", executable
        return "exec", executable

    def honourable(self) -> bool:
        """Whether an interpreter started with ``env`` would behave as this one does."""
        for name, value in self.env.items():
            if name.startswith("PYTHON") and value and name not in _HONOURED_PYTHON_VARIABLES:
                return False
        return all(self.env.get(name) == value for name, value in self.server.locale.items())

    def fail(self, exc: OSError) -> None:
        filename = exc.filename if isinstance(exc.filename, str) else None
        report = json.dumps({"errno": exc.errno or 0, "filename": filename}).encode()
        with contextlib.suppress(OSError):
            os.write(self.report, report)


def _install_fds(sources: list[int], targets: list[int], report: int) -> int:
    """Put ``sources`` at ``targets`` (inheritable), close everything else; the report's new number.

    Everything moves above every number in play first, so that a source sitting on another
    one's target is never overwritten before it is copied.
    """
    import fcntl

    floor = max([*sources, *targets, report, 2]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in sources]
    report = fcntl.fcntl(report, fcntl.F_DUPFD_CLOEXEC, floor)
    for fd, target in zip(moved, targets, strict=True):
        os.dup2(fd, target)  # inheritable
    low = 0
    for keep in sorted({*targets, report}):
        if low < keep:  # closerange(n, n) would close everything from n (close_range(n, n - 1))
            os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, max(os.sysconf("SC_OPEN_MAX"), low + 1))
    return report


def _restore_exec_signals() -> None:
    for name in _PYTHON_IGNORED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_DFL)


def _run_python(mode: str, argv: list[str], executable: str, zygote_pid: int) -> int:
    """Run the launcher or the integration in this interpreter; the exit status it leaves."""
    from spacedrive.sandbox import launch

    honoured = mode == "python"  # the launcher runs under -I: it ignores PYTHON* variables
    _fresh_stdio(unbuffered=honoured and bool(os.environ.get("PYTHONUNBUFFERED")))
    if honoured:
        _apply_python_variables()
    _claim_stdio_as_the_sdk_would()
    if mode == "launcher":
        sys.argv = ["-c", *argv[4:]]
        return _as_interpreter(lambda: launch.main(argv[4:], parent_pid=zygote_pid))
    return _as_interpreter(lambda: launch.run(argv, executable, True))


def _fresh_stdio(*, unbuffered: bool) -> None:
    """New ``sys.std*`` on descriptors 0, 1 and 2, as the interpreter makes them at start."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        stream = _standard_stream(fd, old, unbuffered=unbuffered and fd > 0)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _standard_stream(fd: int, old: Any, *, unbuffered: bool) -> io.TextIOWrapper | None:
    if not _is_open(fd):
        return None
    write = fd > 0
    binary: Any = open(fd, "wb" if write else "rb", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115
    stream = io.TextIOWrapper(
        binary,
        encoding=getattr(old, "encoding", None),
        errors=getattr(old, "errors", None),
        newline="\n",
        line_buffering=not unbuffered and (fd == 2 or os.isatty(fd)),
        write_through=unbuffered,
    )
    stream.mode = "w" if write else "r"  # type: ignore[misc]  # as io.open sets it
    return stream


def _apply_python_variables() -> None:
    """What the interpreter does at start with ``PYTHONPATH`` and ``PYTHONDONTWRITEBYTECODE``."""
    extra = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    sys.path[0:0] = extra  # after the script's folder, which ``run`` puts first
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        sys.dont_write_bytecode = True


def _claim_stdio_as_the_sdk_would() -> None:
    """``import spacedrive.sdk`` takes fds 0 and 1 for frames when ``SPACEDRIVE_IPC=stdio``; the
    zygote imported it without that variable, so the child does it now."""
    if "spacedrive.sdk" in sys.modules and os.environ.get(ENV_IPC) == "stdio":
        from ._stdio import claim_stdio

        claim_stdio()


def _as_interpreter(body: Callable[[], None]) -> int:
    """Run ``body`` and finish as ``python`` would: the exit status, threads, ``atexit``, flush."""
    interrupted = False
    try:
        body()
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
    _finalize()
    if interrupted:  # as the interpreter does: die of SIGINT, so that the parent sees it
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _finalize() -> None:
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    with contextlib.suppress(Exception):
        if shutdown is not None:
            shutdown()  # non-daemon threads are joined, as at the interpreter's exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
