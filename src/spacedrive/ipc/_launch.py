"""The core's side of starting an integration process and shaking hands with it.

::

    async with launch([sys.executable, "main.py"], integration_id="hello", transport="unix",
                      config={"root": "/data"}) as peer:
        peer.result.capabilities            # what the integration declared
        await peer.connection.request("filetype.extract_metadata", {"path": "/notes.md"})

``launch`` makes the rendezvous (a Unix socket in a private 0700 folder, a loopback TCP port,
or the child's stdin/stdout), starts the process in its own process group with the
environment of docs/protocol.md §1, waits for it to connect (a TCP client must first prove the
secret; a Unix client must be the child itself where the OS can tell), then runs the handshake:
``initialize`` → result (validated: version in range, only offered features) → ``initialized``.
The whole of it is bounded by ``handshake_timeout``. The child's stderr (and, on sockets, its
stdout) is forwarded line by line to the ``spacedrive.ipc.integration`` logger (and to
``on_output``, if given), never parsed; its last lines go into the error when the process exits
early (``ProcessExitedEarly``) or the handshake times out (``HandshakeTimeout``). ``preexec_fn``
runs in the child between fork and exec (the supervisor sets a parent-death signal there).

Leaving the block stops the process in steps: ``shutdown`` request (``SHUTDOWN_TIMEOUT``),
``exit`` notification, the connection is closed, ``EXIT_GRACE_PERIOD`` to exit, then SIGTERM to
its process group, ``TERMINATE_GRACE_PERIOD``, then SIGKILL. Whatever is left of the group after
the process exited gets SIGTERM. A failed handshake skips the polite steps.

This is a building block: restarts, backoff and health checks belong to the supervisor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from spacedrive import __version__

from ._dispatcher import Connection, LogHandler, NotificationHandler, RequestHandler
from ._env import IpcAddress, LaunchEnvironment, TransportKind, new_secret
from ._errors import ConnectionClosed, IntegrationError, InvalidParams, ProcessCrashed, RequestTimeout
from ._handshake import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    Capability,
    Features,
    InitializeParams,
    InitializeResult,
    PeerInfo,
    Permissions,
    VersionRange,
    check_accepted_features,
    parse_initialize_result,
    supported_features,
    to_wire,
)
from ._listen import Listener
from ._stdio import ChildPipes, connect_pipes

__all__ = [
    "CORE_INFO",
    "DEFAULT_VERSIONS",
    "EXIT_GRACE_PERIOD",
    "HANDSHAKE_TIMEOUT",
    "KILL_TIMEOUT",
    "OUTPUT_DRAIN_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "STDERR_TAIL_LINES",
    "TERMINATE_GRACE_PERIOD",
    "HandshakeTimeout",
    "LaunchOptions",
    "OutputHandler",
    "Peer",
    "ProcessExitedEarly",
    "launch",
    "remove_stale_rendezvous",
]

HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds from starting the process to the answer of ``initialize``."""
SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds the ``shutdown`` request may take."""
EXIT_GRACE_PERIOD: Final = 3.0
"""Seconds the process has to exit after ``exit`` before it gets SIGTERM."""
TERMINATE_GRACE_PERIOD: Final = 2.0
"""Seconds between SIGTERM and SIGKILL."""
KILL_TIMEOUT: Final = 5.0
"""Seconds to wait for the process to be reaped after SIGKILL."""
OUTPUT_DRAIN_TIMEOUT: Final = 1.0
"""Seconds to read the rest of the child's output once it exited (a grandchild may hold it)."""
STDERR_TAIL_LINES: Final = 20
"""Lines of the child's stderr quoted in launch errors."""
_MAX_LINE: Final = 8192  # longer output lines are cut
_READ_SIZE: Final = 65536

CORE_INFO: Final = PeerInfo("spacedrive", __version__)
DEFAULT_VERSIONS: Final = VersionRange(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX)
logger = logging.getLogger(__name__)
output_logger = logging.getLogger("spacedrive.ipc.integration")
_T = TypeVar("_T")

OutputHandler: TypeAlias = Callable[[Literal["stdout", "stderr"], str], None]
"""Receives each line the child writes to stderr (and, on sockets, stdout), without its newline."""
Spawner: TypeAlias = Callable[..., Awaitable[asyncio.subprocess.Process]]
"""``asyncio.create_subprocess_exec``'s signature, with the keywords ``launch`` passes: ``stdin``,
``stdout``, ``stderr``, ``env``, ``cwd``, ``start_new_session``, ``preexec_fn``, ``pass_fds``.
What it returns needs ``pid``, ``returncode``, ``wait()``, ``stdout`` and ``stderr``."""


class ProcessExitedEarly(ProcessCrashed):
    """The process exited before the handshake completed; ``data`` holds its status and stderr."""


class HandshakeTimeout(RequestTimeout):
    """The process did not connect, or did not answer ``initialize``, in time."""


@dataclass(frozen=True)
class LaunchOptions:
    """Everything ``launch`` takes besides ``argv`` (see its docstring)."""

    integration_id: str
    transport: TransportKind = "unix"
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike[str] | None = None
    runtime_dir: str | os.PathLike[str] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    permissions: Permissions = field(default_factory=Permissions)
    features: Features | None = None
    """Offered in ``initialize``; ``None``: everything this library supports on the transport."""
    protocol_versions: VersionRange = DEFAULT_VERSIONS
    core_info: PeerInfo = CORE_INFO
    handlers: Mapping[str, RequestHandler] | None = None
    notification_handlers: Mapping[str, NotificationHandler] | None = None
    on_log: LogHandler | None = None
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    shutdown_timeout: float = SHUTDOWN_TIMEOUT
    on_output: OutputHandler | None = None
    preexec_fn: Callable[[], None] | None = None
    pass_fds: Sequence[int] = ()
    """Descriptors the child inherits under their numbers (the sandbox launcher's channel)."""
    on_spawn: Callable[[int], None] | None = None
    """Called with the pid as soon as the process exists (before the handshake)."""
    spawner: Spawner | None = None
    """Starts the process instead of ``asyncio.create_subprocess_exec`` (a zygote's fork)."""


class _Output:
    """Forwards one output pipe of the child to logging (and ``on_output``), keeping its last lines."""

    def __init__(
        self,
        name: str,
        stream: asyncio.StreamReader,
        tail: collections.deque[str] | None,
        kind: Literal["stdout", "stderr"] = "stderr",
        on_output: OutputHandler | None = None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.tail = tail
        self.kind: Literal["stdout", "stderr"] = kind
        self.on_output = on_output

    async def forward(self) -> None:
        pending = b""
        try:
            while chunk := await self.stream.read(_READ_SIZE):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._emit(line)
                pending = pending[:_MAX_LINE]
        except Exception:
            logger.exception("%s: reading failed", self.name)
        if pending:
            self._emit(pending)

    def _emit(self, raw: bytes) -> None:
        line = raw[:_MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        if self.tail is not None:
            self.tail.append(line)
        output_logger.info("%s: %s", self.name, line)
        if self.on_output is not None:
            try:
                self.on_output(self.kind, line)
            except Exception:
                logger.exception("%s: output handler failed", self.name)


class Peer:
    """A launched integration after a successful handshake."""

    def __init__(
        self,
        integration_id: str,
        connection: Connection,
        result: InitializeResult,
        process: asyncio.subprocess.Process,
        stderr: collections.deque[str],
        readers: Sequence[asyncio.Task[None]] = (),
    ) -> None:
        self.integration_id = integration_id
        self.connection = connection
        self.result = result
        self.process = process
        self._stderr = stderr
        self._readers = list(readers)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def info(self) -> PeerInfo:
        return self.result.info

    @property
    def capabilities(self) -> list[Capability]:
        return self.result.capabilities

    @property
    def features(self) -> Features:
        """The features both sides negotiated."""
        return self.result.features

    def stderr_tail(self) -> list[str]:
        """The last ``STDERR_TAIL_LINES`` lines the process wrote to stderr."""
        return list(self._stderr)

    async def output_closed(self) -> None:
        """Wait until the child's output pipes reached their end (bound it with ``asyncio.timeout``).

        Once the process exited, this is when ``stderr_tail`` holds its last words.
        """
        if self._readers:
            await asyncio.wait(self._readers)


@asynccontextmanager
async def launch(
    argv: Sequence[str],
    *,
    integration_id: str,
    transport: TransportKind = "unix",
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    runtime_dir: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    permissions: Permissions | None = None,
    features: Features | None = None,
    protocol_versions: VersionRange = DEFAULT_VERSIONS,
    core_info: PeerInfo = CORE_INFO,
    handlers: Mapping[str, RequestHandler] | None = None,
    notification_handlers: Mapping[str, NotificationHandler] | None = None,
    on_log: LogHandler | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    on_output: OutputHandler | None = None,
    preexec_fn: Callable[[], None] | None = None,
    pass_fds: Sequence[int] = (),
    on_spawn: Callable[[int], None] | None = None,
    spawner: Spawner | None = None,
) -> AsyncIterator[Peer]:
    """Start ``argv`` as integration ``integration_id``; yield the ``Peer`` once it shook hands.

    ``transport`` is ``"unix"``, ``"tcp"`` or ``"stdio"``. ``env`` replaces our environment for
    the child (the protocol variables are always set on top); ``runtime_dir`` is where the
    private socket folder goes (default: a private folder in the temp dir; the core passes
    ``spacedrive.core.paths.runtime_dir``). ``config``, ``permissions``, ``features`` (offered;
    default: all that ``supported_features`` lists for the transport; fd passing is never offered
    off Unix sockets) and ``protocol_versions`` go into ``initialize``; what the peer accepts is
    switched on before ``initialized`` is sent; ``handlers`` and ``notification_handlers``
    answer the integration's calls (the core APIs it may use); ``on_log`` receives its ``$/log``,
    ``on_output`` each line of its stderr (and stdout on sockets). ``preexec_fn`` is called in the
    child just before exec (``subprocess.Popen``'s, with all its caveats: keep it tiny).
    ``pass_fds`` are inherited by the child under their numbers; ``on_spawn`` gets the pid as
    soon as the process exists; ``spawner`` replaces ``asyncio.create_subprocess_exec`` (see
    ``Spawner``).

    Raises ``ProcessExitedEarly``, ``HandshakeTimeout``, ``ProcessCrashed`` (cannot start),
    the peer's error for ``initialize`` (e.g. ``ProtocolVersionMismatch``), or ``InvalidParams``
    naming the field of an invalid ``initialize`` result.
    """
    options = LaunchOptions(
        integration_id=integration_id,
        transport=transport,
        env=env,
        cwd=cwd,
        runtime_dir=runtime_dir,
        config=dict(config or {}),
        permissions=permissions or Permissions(),
        features=features,
        protocol_versions=protocol_versions,
        core_info=core_info,
        handlers=handlers,
        notification_handlers=notification_handlers,
        on_log=on_log,
        handshake_timeout=handshake_timeout,
        shutdown_timeout=shutdown_timeout,
        on_output=on_output,
        preexec_fn=preexec_fn,
        pass_fds=tuple(pass_fds),
        on_spawn=on_spawn,
        spawner=spawner,
    )
    async with _Session(list(argv), options) as session:
        yield await session.start()


RENDEZVOUS_PREFIX: Final = "i-"
"""The private folder of one launch's Unix socket (``<runtime dir>/i-XXXX/s``)."""
STALE_AFTER: Final = 60.0
"""Seconds a socket folder must be old before it may be found stale (a launch binds at once)."""


def remove_stale_rendezvous(runtime_dir: str | os.PathLike[str]) -> list[str]:
    """Remove the socket folders of launches that ended without cleaning up (the core was killed).

    A folder is stale when it is older than ``STALE_AFTER`` (another core's launch may be
    between making it and binding its socket) and nothing listens on its socket any more (a
    live launch's listener takes the connection attempt and refuses it, not being its child).
    Returns the names removed.
    """
    removed = []
    old = time.time() - STALE_AFTER
    with contextlib.suppress(OSError):
        for entry in os.scandir(runtime_dir):
            if not entry.name.startswith(RENDEZVOUS_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_mtime < old and not _listening(
                os.path.join(entry.path, "s")
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except BlockingIOError:  # the backlog is full: someone listens
            return True
        except OSError:  # ENOENT, ECONNREFUSED: nobody
            return False
        return True


class _Session:
    """The state of one launch, from the rendezvous to the reaped process."""

    def __init__(self, argv: list[str], options: LaunchOptions) -> None:
        if not argv:
            raise ValueError("argv is empty")
        self.argv = argv
        self.options = options
        offered = options.features if options.features is not None else supported_features(options.transport)
        if options.transport != "unix" and offered.fd_passing:
            offered = msgspec.structs.replace(offered, fd_passing=False)
        self.offered = offered
        self.name = f"integration {options.integration_id!r}"
        self.secret = new_secret()
        self.connection = Connection(
            options.handlers,
            options.notification_handlers,
            name=self.name,
            on_log=options.on_log,
        )
        self.stack = AsyncExitStack()
        self.tg = asyncio.TaskGroup()
        self.listener: Listener | None = None
        self.pipes: ChildPipes | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.exit_task: asyncio.Task[int] | None = None
        self.readers: list[asyncio.Task[None]] = []
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.phase = "starting"
        self.handshaken = False

    async def __aenter__(self) -> _Session:
        await self.tg.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        polite = exc_type is None or issubclass(exc_type, Exception)  # not when cancelled
        try:
            await self._stop(graceful=self.handshaken and polite)
        except BaseException:
            self._signal_group(signal.SIGKILL)
            raise
        finally:
            await self.tg.__aexit__(None, None, None)  # readers never fail: don't wrap the body's error

    # -- start ------------------------------------------------------------------------------

    async def start(self) -> Peer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.handshake_timeout
        address = await self._rendezvous()
        await self._spawn(address)
        assert self.process is not None
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._handshake()
        except (TimeoutError, RequestTimeout):
            raise self._timeout_error() from None
        self.handshaken = True
        return Peer(
            self.options.integration_id, self.connection, result, self.process, self.stderr, self.readers
        )

    async def _rendezvous(self) -> IpcAddress:
        kind = self.options.transport
        if kind == "stdio":
            self.pipes = ChildPipes.open()
            return IpcAddress("stdio")
        if kind == "unix":
            folder = tempfile.mkdtemp(prefix=RENDEZVOUS_PREFIX, dir=self._runtime_dir())
            self.stack.callback(shutil.rmtree, folder, ignore_errors=True)
            listener = Listener.unix(os.path.join(folder, "s"), self.connection, secret=self.secret)
        elif kind == "tcp":
            listener = Listener.tcp(self.connection, secret=self.secret)
        else:
            raise ValueError(f"unknown transport {kind!r}: use 'unix', 'tcp' or 'stdio'")
        self.listener = await self.stack.enter_async_context(listener)
        return listener.address

    def _runtime_dir(self) -> str:
        if self.options.runtime_dir is not None:
            return os.fspath(self.options.runtime_dir)
        folder = tempfile.mkdtemp(prefix="sd-")  # private (0700), short enough for a socket path
        self.stack.callback(shutil.rmtree, folder, ignore_errors=True)
        return folder

    async def _spawn(self, address: IpcAddress) -> None:
        env = dict(os.environ if self.options.env is None else self.options.env)
        options = self.options
        launch_env = LaunchEnvironment(
            address, self.secret, options.integration_id, options.protocol_versions.max
        )
        env.update(launch_env.to_environ())
        stdio = self.pipes is not None
        pipes = self.pipes
        spawn = options.spawner or asyncio.create_subprocess_exec
        try:
            self.process = await spawn(
                *self.argv,
                stdin=pipes.child_stdin if pipes else asyncio.subprocess.DEVNULL,
                stdout=pipes.child_stdout if pipes else asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.options.cwd,
                start_new_session=True,
                preexec_fn=self.options.preexec_fn,
                pass_fds=options.pass_fds,
            )
        except OSError as exc:
            if pipes is not None:
                pipes.close_all()
            raise ProcessCrashed(f"cannot start {self.name}: {self.argv[0]}: {exc.strerror or exc}") from exc
        self.exit_task = self.tg.create_task(self.process.wait())
        if options.on_spawn is not None:
            options.on_spawn(self.process.pid)
        self._forward_output(stdio)
        if pipes is not None:
            pipes.close_child_ends()
            await connect_pipes(self.connection, *pipes.take_core_ends())

    def _forward_output(self, stdio: bool) -> None:
        assert self.process is not None and self.process.stderr is not None
        label = f"{self.name}[{self.process.pid}]"
        on_output = self.options.on_output
        outputs = [_Output(f"{label} stderr", self.process.stderr, self.stderr, "stderr", on_output)]
        if not stdio and self.process.stdout is not None:
            outputs.append(_Output(f"{label} stdout", self.process.stdout, None, "stdout", on_output))
        self.readers = [self.tg.create_task(output.forward()) for output in outputs]

    async def _handshake(self) -> InitializeResult:
        assert self.process is not None
        if self.listener is not None:
            self.phase = "connecting"
            await self._unless_exited(self.listener.accept(peer_pid=self.process.pid))
        await self.stack.enter_async_context(self.connection)
        self.phase = "answering initialize"
        params = InitializeParams(
            protocol_versions=self.options.protocol_versions,
            core=self.options.core_info,
            integration_id=self.options.integration_id,
            permissions=self.options.permissions,
            config=dict(self.options.config),
            features=self.offered,
        )
        wait = self.options.handshake_timeout  # the deadline of start() is the real bound
        request = self.connection.request("initialize", to_wire(params), idle_timeout=wait, max_timeout=wait)
        result = self._check_result(await self._unless_exited(request))
        # Before `initialized`: the integration may open a stream as soon as it has it (§4).
        self.connection.enable_features(to_wire(result.features), role="core")
        self.connection.notify("initialized", {})
        return result

    def _check_result(self, raw: object) -> InitializeResult:
        result = parse_initialize_result(raw)
        versions = self.options.protocol_versions
        if not versions.min <= result.protocol_version <= versions.max:
            raise InvalidParams(
                f"invalid initialize result (field `protocol_version`): {result.protocol_version} is not "
                f"in the core's range {versions}",
                data={"field": "protocol_version", "reason": "outside the core's range"},
            )
        check_accepted_features(self.offered, result.features)
        return result

    async def _unless_exited(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable``, unless the process exits first (then ``ProcessExitedEarly``)."""
        assert self.exit_task is not None
        task = asyncio.ensure_future(awaitable)  # owned here: finished or cancelled before we return
        try:
            await asyncio.wait({task, self.exit_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            raise await self._exited_error()
        try:
            return task.result()
        except ConnectionClosed:
            if await self._exited_within(OUTPUT_DRAIN_TIMEOUT):  # the connection ended as it exited
                raise await self._exited_error() from None
            raise

    # -- errors -----------------------------------------------------------------------------

    async def _exited_error(self) -> ProcessExitedEarly:
        await self._drain_output()
        assert self.process is not None
        status = self.process.returncode
        message = f"{self.name} (pid {self.process.pid}) exited with status {status} while {self.phase}"
        return ProcessExitedEarly(self._with_tail(message), data=self._error_data(status))

    def _timeout_error(self) -> HandshakeTimeout:
        timeout = self.options.handshake_timeout
        message = f"{self.name} did not finish the handshake within {timeout} s (while {self.phase})"
        status = self.process.returncode if self.process is not None else None
        return HandshakeTimeout(self._with_tail(message), data=self._error_data(status))

    def _with_tail(self, message: str) -> str:
        if not self.stderr:
            return f"{message}; it wrote nothing to stderr"
        lines = "\n".join(f"  | {line}" for line in self.stderr)
        return f"{message}; the last lines of its stderr:\n{lines}"

    def _error_data(self, status: int | None) -> dict[str, Any]:
        return {
            "integration_id": self.options.integration_id,
            "returncode": status,
            "phase": self.phase,
            "stderr": list(self.stderr),
        }

    # -- stop -------------------------------------------------------------------------------

    async def _stop(self, *, graceful: bool) -> None:
        try:
            if graceful:
                await self._say_goodbye()
            await self.stack.aclose()  # closes the connection (the child sees EOF) and the listener
            self.connection.close()  # in case it was connected but never entered
            if self.pipes is not None:
                self.pipes.close_all()
            if self.process is not None:
                await self._reap(EXIT_GRACE_PERIOD if graceful else 0.0)
                await self._drain_output()
        finally:
            for reader in self.readers:
                reader.cancel()
            if self.exit_task is not None and not self.exit_task.done():
                self.exit_task.cancel()
            self._close_process_transport()

    async def _say_goodbye(self) -> None:
        if self.connection.is_closed:
            return
        timeout = self.options.shutdown_timeout
        try:
            await self.connection.request("shutdown", idle_timeout=timeout, max_timeout=timeout)
        except IntegrationError as exc:
            logger.warning("%s: shutdown failed: %s", self.name, exc)
        self.connection.notify("exit")

    async def _reap(self, grace: float) -> None:
        """Wait ``grace`` s for the process to exit, then SIGTERM, then SIGKILL its group."""
        assert self.process is not None
        if grace > 0 and await self._exited_within(grace):
            self._signal_group(signal.SIGTERM)  # leftovers of its group, if any
            return
        for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_PERIOD), (signal.SIGKILL, KILL_TIMEOUT)):
            self._signal_group(sig)
            if await self._exited_within(wait):
                if sig is signal.SIGTERM:
                    self._signal_group(signal.SIGKILL)  # what ignored SIGTERM in its group
                return
        logger.error("%s (pid %s) survived SIGKILL for %s s", self.name, self.process.pid, KILL_TIMEOUT)

    async def _exited_within(self, seconds: float) -> bool:
        assert self.exit_task is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.shield(self.exit_task)
        return self.exit_task.done()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)  # start_new_session: its group id is its pid

    async def _drain_output(self) -> None:
        if self.readers:
            await asyncio.wait(self.readers, timeout=OUTPUT_DRAIN_TIMEOUT)

    def _close_process_transport(self) -> None:
        """Close the subprocess transport if a grandchild still holds the output pipes open."""
        transport = getattr(self.process, "_transport", None)
        exited = self.exit_task is not None and self.exit_task.done()
        if isinstance(transport, asyncio.SubprocessTransport) and exited and not transport.is_closing():
            transport.close()
