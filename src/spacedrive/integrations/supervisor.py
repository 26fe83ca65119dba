"""The supervisor of one integration: starts, watches, restarts and routes to its processes.

::

    async with Supervisor([sys.executable, "main.py"], LaunchOptions("hello")) as sup:
        result = await sup.request("filetype.extract_metadata", {"path": "/notes.md"})  # lazy start
        sup.status()          # JSON-ready: state, pids, restarts, latency, CPU, RSS, last error, ...

One ``Supervisor`` per integration; it is an async context manager that owns a ``TaskGroup``:
one task per process slot of its pool (``Policy.pool_size``, default 1), and in each, a task
group of watchers for the running process. Leaving the block stops every process gracefully
(or kills them, when the block is left by an exception or a cancellation).

State machine (each slot of the pool has one; the integration's state is ``FAILED`` or
``STOPPING`` when the supervisor says so, else the first of RUNNING, STARTING, BACKOFF,
STOPPING that some slot is in, else STOPPED; ``status()`` shows both)::

                request() / start()              handshake done
    STOPPED ───────────────────────▶ STARTING ─────────────────▶ RUNNING
       ▲                              │    ▲                       │  │
       │                 start failed │    │ backoff delay over    │  │ crashed, hung (ping),
       │                              ▼    │                       │  │ protocol error
       │                             BACKOFF ◀─────────────────────┼──┘
       │                                                           │ idle_timeout, stop()
       └────────────────────────── STOPPING ◀──────────────────────┘

    crash budget spent, or a start refused for its config or protocol version ─▶ FAILED
    FAILED ──reset()──▶ STOPPED (started again by the next request)

* **Lazy start**: the first ``request`` starts the pool (``start()`` does it eagerly, for
  manifests that ask to start at enable); a request waits for a running process, bounded by
  the handshake timeout plus any pending backoff. A start that fails fails the requests waiting
  for it with its error (``ProcessExitedEarly``, ``HandshakeTimeout``, ...).
* **Crash**: every request in flight on the process fails at once with ``ProcessCrashed``,
  whose message names the exit status or signal and quotes the last lines of stderr (``data``:
  ``pid``, ``returncode``, ``signal``, ``reason``, ``stderr``). The process is restarted after
  ``backoff_initial * backoff_factor ** (n - 1)`` seconds (``n`` crashes in the window; capped
  at ``backoff_max``; ±``backoff_jitter``). ``crash_budget`` crashes within ``crash_window``
  seconds mark the integration ``FAILED`` (``status()["reason"]`` says why) until ``reset()``;
  so does at once a start refused for its configuration or protocol version (retrying cannot
  help).
* **Hang**: each process is pinged every ``ping_interval``; a ping not answered within the
  interval is a hang (detected within two intervals): the process group is killed, which is a
  crash. Unless requests on that process were answered, or reported progress, meanwhile: a
  saturated integration stops reading, so our ping waits in its socket behind requests.
* **Protocol errors** (garbage, oversize frames): the dispatcher drops that connection alone;
  the process is killed; a crash.
* **Idle**: after ``idle_timeout`` seconds without a request, the processes are stopped
  (``STOPPED``); the next request starts them again.
* **Stop** (``stop()``, and leaving the block): refuses new requests, lets those in flight
  finish (``stop_drain_timeout``), then launch's steps: ``shutdown``, ``exit``, grace period,
  SIGTERM to the group, SIGKILL.
* **Process groups and parent death**: launch starts each process in its own session; the
  supervisor adds ``PR_SET_PDEATHSIG`` = SIGKILL on Linux, so no integration outlives the core
  (a sandboxed process gets it from its launcher instead).
* **Sandbox** (``sandbox=``, a factory from ``_sandboxing``): each process runs in its own;
  its launcher's report confirms what is enforced before the process counts as running; each
  request is bounded by the maximum execution time (past it the sandbox kills the
  integration: a crash, with ``data.reason`` ``"execution_time"``).
* **Logs**: stderr and stdout lines, ``$/log`` notifications (with their level) and the
  supervisor's own notes go to ``<log_dir>/<id>.log`` (rotating); ``logs(id, lines=N)`` reads
  the tail back.
* **Pool**: requests go to the running process with the fewest requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from spacedrive.core.paths import resolve_data_dir
from spacedrive.ipc._dispatcher import ProgressHandler
from spacedrive.ipc._errors import (
    ConfigurationError,
    ConnectionClosed,
    IntegrationError,
    ProcessCrashed,
    ProtocolError,
    ProtocolVersionMismatch,
    RequestTimeout,
    UsageError,
)
from spacedrive.ipc._jsonrpc import Params
from spacedrive.ipc._launch import (
    EXIT_GRACE_PERIOD,
    KILL_TIMEOUT,
    OUTPUT_DRAIN_TIMEOUT,
    TERMINATE_GRACE_PERIOD,
    LaunchOptions,
    Peer,
    launch,
)

from ._logfile import LOG_TAIL_LINES, IntegrationLog, log_path, read_log_tail
from ._metrics import RequestMetrics
from ._proc import ProcessStats, describe_exit, kill_group, parent_death_signal, signal_name
from ._sandboxing import ProcessSandbox, SandboxFactory

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_INITIAL",
    "BACKOFF_JITTER",
    "BACKOFF_MAX",
    "CRASH_BUDGET",
    "CRASH_REPORT_TIMEOUT",
    "CRASH_WINDOW",
    "EXIT_WAIT",
    "IDLE_TIMEOUT",
    "PING_INTERVAL",
    "READY_MARGIN",
    "STOP_DRAIN_TIMEOUT",
    "STOP_MARGIN",
    "IntegrationFailed",
    "Policy",
    "State",
    "StateHandler",
    "Supervisor",
    "Transition",
    "default_log_dir",
    "logs",
]

PING_INTERVAL: Final = 10.0
"""Seconds between pings; a ping unanswered for as long is a hang (found within two intervals)."""
IDLE_TIMEOUT: Final = 300.0
"""Seconds without a request after which the processes are stopped (started again on demand)."""
BACKOFF_INITIAL: Final = 0.5
"""Seconds before the first restart after a crash."""
BACKOFF_FACTOR: Final = 2.0
"""Each further crash within the window multiplies the delay by this."""
BACKOFF_MAX: Final = 30.0
"""The longest delay before a restart."""
BACKOFF_JITTER: Final = 0.2
"""Each delay is spread by ± this fraction, so that integrations crashing together restart apart."""
CRASH_BUDGET: Final = 3
"""Crashes within ``CRASH_WINDOW`` that mark the integration failed."""
CRASH_WINDOW: Final = 300.0
"""Seconds over which crashes are counted."""
STOP_DRAIN_TIMEOUT: Final = 5.0
"""Seconds ``stop()`` lets requests in flight finish before it stops the processes."""
CRASH_REPORT_TIMEOUT: Final = 0.5
"""Seconds a request failed by a crash waits for the exit status and last stderr lines."""
EXIT_WAIT: Final = 1.0
"""Seconds a process whose connection ended has to exit by itself before it is killed."""
READY_MARGIN: Final = 1.0
"""Seconds added to the handshake timeout (and any backoff) that a request waits for a process."""
STOP_MARGIN: Final = 2.0
"""Seconds added to launch's stop steps before a stopping process task is cancelled (SIGKILL)."""
_TRANSITIONS_KEPT: Final = 20  # state changes shown by status()

logger = logging.getLogger(__name__)


class State(enum.StrEnum):
    """The state of an integration (and of each process slot of its pool)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"


StateHandler = Callable[[State, str | None], None]
"""Called with the new state of the integration and why (e.g. to record ``failed`` in the library)."""


class IntegrationFailed(ProcessCrashed):
    """The integration crashed too often: it stays failed until ``reset()`` (enable) is called."""


@dataclass(frozen=True)
class Policy:
    """How the supervisor runs an integration; every default is a named constant of this module."""

    pool_size: int = 1
    ping_interval: float = PING_INTERVAL
    idle_timeout: float | None = IDLE_TIMEOUT
    backoff_initial: float = BACKOFF_INITIAL
    backoff_factor: float = BACKOFF_FACTOR
    backoff_max: float = BACKOFF_MAX
    backoff_jitter: float = BACKOFF_JITTER
    crash_budget: int = CRASH_BUDGET
    crash_window: float = CRASH_WINDOW
    stop_drain_timeout: float = STOP_DRAIN_TIMEOUT
    die_with_parent: bool = True

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.crash_budget < 1:
            raise ValueError("crash_budget must be at least 1")
        if min(self.ping_interval, self.backoff_initial, self.backoff_max, self.crash_window) <= 0:
            raise ValueError("ping_interval, backoff_initial, backoff_max and crash_window must be positive")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (or None: never idle)")
        if self.backoff_factor < 1 or not 0 <= self.backoff_jitter < 1:
            raise ValueError("backoff_factor must be at least 1 and backoff_jitter in [0, 1)")

    def backoff_delay(self, crashes: int) -> float:
        """The delay before restarting after the ``crashes``-th crash in the window (jittered)."""
        base = self.backoff_initial * self.backoff_factor ** max(0, crashes - 1)
        spread = random.uniform(1 - self.backoff_jitter, 1 + self.backoff_jitter)
        return min(self.backoff_max, base * spread)


@dataclass(frozen=True)
class Transition:
    """One change of the integration's state: when (Unix time), to what, and why."""

    at: float
    state: State
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "state": self.state.value, "reason": self.reason}


_Kind = Literal["crashed", "hung", "protocol", "start", "stopped", "idle"]


@dataclass(frozen=True)
class _Ending:
    """How a process ended (or failed to start): what requests in flight and ``status()`` are told."""

    kind: _Kind
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    at: float | None = None  # loop time when it was noticed (None: a failed start, noticed now)

    @property
    def is_crash(self) -> bool:
        return self.kind not in ("stopped", "idle")


class _Run:
    """One process of the pool, from its handshake to its end."""

    def __init__(self, peer: Peer, box: ProcessSandbox | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.peer = peer
        self.box = box
        self.pid = peer.pid
        self.started = loop.time()
        self.in_flight = 0
        self.routable = True
        self.last_heard = -1.0  # loop time of the last answer or progress of a request routed here
        self.ended_at: float | None = None  # loop time when its end was noticed
        self.ending: asyncio.Future[_Ending] = loop.create_future()
        self.stats = ProcessStats(peer.pid)

    def end(self, ending: _Ending) -> None:
        self.routable = False
        if not self.ending.done():
            self.ending.set_result(ending)


class _Slot:
    """One place of the pool: the task that runs its successive processes, and its state."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.state = State.STOPPED
        self.run: _Run | None = None
        self.task: asyncio.Task[None] | None = None
        self.retry_at: float | None = None


def default_log_dir() -> Path:
    """``<data dir>/logs``: where the integrations' log files go unless told otherwise."""
    return resolve_data_dir() / "logs"


def logs(integration_id: str, lines: int = LOG_TAIL_LINES, *, log_dir: str | Path | None = None) -> list[str]:
    """The last ``lines`` lines of the integration's log file, oldest first (``integration logs ID``)."""
    return read_log_tail(default_log_dir() if log_dir is None else log_dir, integration_id, lines)


class Supervisor:
    """Runs the integration ``argv`` as ``options`` say, under ``policy`` (see the module docstring).

    ``log_dir`` defaults to ``default_log_dir()``; ``on_state`` is called on every change of
    the integration's state. ``options.on_log`` and ``options.on_output``, if given, still
    receive what the supervisor also writes to the log file. ``sandbox``, if given, confines
    each process (see ``_sandboxing``): its launcher replaces the parent-death ``preexec_fn``,
    each request is bounded by the maximum execution time, ``status()`` shows what is enforced.
    """

    def __init__(
        self,
        argv: Sequence[str],
        options: LaunchOptions,
        *,
        policy: Policy | None = None,
        log_dir: str | Path | None = None,
        on_state: StateHandler | None = None,
        sandbox: SandboxFactory | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv is empty")
        self.integration_id = options.integration_id
        self.policy = policy or Policy()
        self.log_file = log_path(default_log_dir() if log_dir is None else log_dir, self.integration_id)
        self._argv = list(argv)
        self._options = options
        self._on_state = on_state
        self._sandbox = sandbox
        self._name = f"integration {self.integration_id!r}"
        self._slots = [_Slot(index) for index in range(self.policy.pool_size)]
        self._log: IntegrationLog | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._halt = asyncio.Event()  # set: the processes of this generation stop
        self._state = State.STOPPED
        self._transitions: deque[Transition] = deque(maxlen=_TRANSITIONS_KEPT)
        self._crashes: deque[float] = deque()
        self._failure: str | None = None
        self._last_ending: _Ending | None = None
        self._start_error: IntegrationError | None = None
        self._start_failures = 0
        self._stopping = False
        self._stop_lock = asyncio.Lock()
        self._closed = False
        self._in_flight = 0
        self._last_activity = 0.0
        self._starts = 0
        self._restarts = 0
        self._metrics = RequestMetrics()
        # The sandbox's launcher sets the parent-death signal itself (and checks the parent).
        self._parent_death_signal = sandbox is not None or (
            self.policy.die_with_parent and parent_death_signal() is not None
        )

    # -- context ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise UsageError("a Supervisor can only be entered once")
        self._log = IntegrationLog(self.log_file.parent, self.integration_id)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._last_activity = asyncio.get_running_loop().time()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._closed = True
        stopped = False
        try:
            if exc_type is None:
                await self.stop()
                stopped = True
        finally:
            self._halt.set()
            if not stopped:  # left by an error or a cancellation: no politeness, launch kills them
                for slot in self._slots:
                    if slot.task is not None:
                        slot.task.cancel()
            await self._tg.__aexit__(None, None, None)  # our tasks never fail: don't wrap the body's error
            self._update("the supervisor closed")
            if self._log is not None:
                self._log.close()

    # -- public API -------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def last_error(self) -> str | None:
        """The message of the last crash, hang, protocol error or failed start."""
        return None if self._last_ending is None else self._last_ending.message

    @property
    def failure(self) -> str | None:
        """Why the integration is ``FAILED`` (``None`` unless it is)."""
        return self._failure

    @property
    def transitions(self) -> list[Transition]:
        """The last state changes, oldest first."""
        return list(self._transitions)

    @property
    def sandboxes(self) -> list[ProcessSandbox]:
        """The sandboxes of the processes that run now (none when unsandboxed)."""
        return [slot.run.box for slot in self._slots if slot.run is not None and slot.run.box is not None]

    @property
    def pids(self) -> list[int]:
        """The pids of the processes that run now (one per running slot of the pool)."""
        return [slot.run.pid for slot in self._slots if slot.run is not None]

    async def wait_for_state(self, *states: State) -> State:
        """Wait until the integration is in one of ``states`` (bound it with ``asyncio.timeout``)."""
        while self._state not in states:
            await self._changed.wait()
        return self._state

    async def start(self) -> None:
        """Start every process of the pool now and wait until all run (or one fails to start).

        Bounded by the handshake timeout (plus any pending backoff): ``RequestTimeout`` after it.
        """
        self._check_usable()
        failures = self._start_failures
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        deadline = loop.time() + self._ready_timeout()
        while not all(slot.state is State.RUNNING for slot in self._slots):
            self._check_start_failures(failures)
            self._check_open_for_requests()
            self._ensure_started()
            await self._wait_change(deadline)

    async def request(
        self,
        method: str,
        params: Params = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- passed to the dispatcher, reset by progress
        max_timeout: float | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> Any:
        """Call ``method`` on the integration (started if needed) and return its result.

        ``timeout`` is the dispatcher's idle timeout (each ``$/progress`` resets it) and
        ``max_timeout`` its hard maximum; both default to the connection's. Raises the
        integration's error, ``ProcessCrashed`` if its process died with the request in flight
        (or failed to start), ``IntegrationFailed`` while it is failed, ``RequestTimeout``, or
        ``ConnectionClosed`` if the supervisor stops first.
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._in_flight += 1
        self._last_activity = started
        try:
            run = await self._acquire()
            result = await self._call(run, method, params, (timeout, max_timeout), on_progress)
        except asyncio.CancelledError:
            self._metrics.record_cancelled()
            raise
        except Exception:
            self._metrics.record(loop.time() - started, ok=False)
            raise
        else:
            self._metrics.record(loop.time() - started, ok=True)
            return result
        finally:
            self._in_flight -= 1
            self._last_activity = loop.time()
            if self._in_flight == 0 and self._stopping:
                self._update()  # stop() waits for the drain

    async def stop(self) -> None:
        """Stop every process gracefully (see the module docstring); ``STOPPED`` afterwards.

        Requests in flight get ``stop_drain_timeout`` to finish; new ones are refused meanwhile.
        The next request after ``stop()`` starts the integration again.
        """
        if self._tg is None:
            return
        async with self._stop_lock:  # a second stop() waits for the first (itself bounded)
            loop = asyncio.get_running_loop()
            self._stopping = True
            self._update("stop requested")
            try:
                deadline = loop.time() + self.policy.stop_drain_timeout
                with contextlib.suppress(RequestTimeout):
                    while self._in_flight:
                        await self._wait_change(deadline)
                self._halt.set()
                await self._wait_for_slots(self._stop_timeout())
            finally:
                self._stopping = False
                self._update("stopped" if self._failure is None else self._failure)

    def reset(self) -> None:
        """Forget the crashes and the failure (the user enabled it again): ``STOPPED``, lazily started."""
        self._failure = None
        self._crashes.clear()
        self._write(logging.INFO, "reset: the crash history is cleared")
        self._update("reset")

    def status(self) -> dict[str, Any]:
        """Health of the integration, JSON-ready (``integration status --json``)."""
        now = asyncio.get_running_loop().time()
        processes = [self._slot_status(slot, now) for slot in self._slots]
        running = [p for p in processes if p["pid"] is not None]
        uptimes = [p["uptime_s"] for p in running]
        return {
            "integration_id": self.integration_id,
            "state": self._state.value,
            "reason": self._failure,
            "pid": running[0]["pid"] if running else None,
            "pids": [p["pid"] for p in running],
            "pool_size": self.policy.pool_size,
            "uptime_s": max(uptimes) if uptimes else None,
            "starts": self._starts,
            "restarts": self._restarts,
            "crashes_in_window": len(self._recent_crashes(now)),
            "last_error": self.last_error,
            "in_flight": self._in_flight,
            **self._metrics.snapshot(),
            "cpu_percent": _total(p["cpu_percent"] for p in running),
            "rss_bytes": _total(p["rss_bytes"] for p in running),
            "processes": processes,
            "parent_death_signal": self._parent_death_signal,
            "sandbox": next((p["sandbox"] for p in running if p["sandbox"] is not None), None),
            "log_file": str(self.log_file),
            "transitions": [transition.to_json() for transition in self._transitions],
        }

    # -- routing ----------------------------------------------------------------------------

    async def _acquire(self) -> _Run:
        """The least-loaded running process; starts the pool and waits for it if needed."""
        failures = self._start_failures
        deadline: float | None = None
        while True:
            if self._stopping or self._closed:
                raise ConnectionClosed(f"{self._name} is stopping")
            run = self._least_loaded()
            if run is not None:
                self._ensure_started()  # slots stopped meanwhile (idle) come back: cheap when none
                return run
            self._check_start_failures(failures)  # before "failed": the start that failed says more
            self._check_open_for_requests()
            self._ensure_started()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self._ready_timeout()
            await self._wait_change(deadline)

    def _least_loaded(self) -> _Run | None:
        best: _Run | None = None
        for slot in self._slots:
            run = slot.run
            if run is None or not run.routable or slot.state is not State.RUNNING:
                continue
            if best is None or run.in_flight < best.in_flight:
                best = run
        return best

    async def _call(
        self,
        run: _Run,
        method: str,
        params: Params,
        timeouts: tuple[float | None, float | None],
        on_progress: ProgressHandler | None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        idle_timeout, max_timeout = timeouts

        def progressed(report: dict[str, Any]) -> None:
            run.last_heard = loop.time()  # a process reporting progress is not hung
            if on_progress is not None:
                on_progress(report)

        run.in_flight += 1
        try:
            async with run.box.execution_limit() if run.box is not None else contextlib.nullcontext():
                result = await run.peer.connection.request(
                    method, params, idle_timeout=idle_timeout, max_timeout=max_timeout, on_progress=progressed
                )
        except ConnectionClosed as exc:  # ProtocolError too: the process is dying or being killed
            raise await self._closed_error(run, method, exc) from exc
        except RequestTimeout:
            raise
        except ProcessCrashed:
            if run.box is not None and run.box.killed_reason:  # the sandbox killed it: route no more
                run.routable = False
            else:  # the integration's own -32002 answer: an answer, it is alive
                run.last_heard = loop.time()
            raise
        except IntegrationError:
            run.last_heard = loop.time()  # an error answer is an answer
            raise
        finally:
            run.in_flight -= 1
        run.last_heard = loop.time()
        return result

    async def _closed_error(self, run: _Run, method: str, exc: ConnectionClosed) -> IntegrationError:
        """``ProcessCrashed`` with the exit status and last stderr lines (or ``ConnectionClosed``)."""
        try:
            async with asyncio.timeout(CRASH_REPORT_TIMEOUT):
                ending = await asyncio.shield(run.ending)
        except TimeoutError:
            message = f"{self._name} (pid {run.pid}) closed the connection: {exc.message}"
            ending = _Ending("crashed", message, self._ending_data(run, "crashed"))
        if not ending.is_crash:
            return ConnectionClosed(f"{self._name} was stopped before answering {method!r}", data=ending.data)
        return ProcessCrashed(ending.message, data={**ending.data, "method": method})

    def _check_usable(self) -> None:
        if self._tg is None:
            raise UsageError("enter the supervisor first: `async with Supervisor(...) as sup:`")
        if self._closed:
            raise ConnectionClosed(f"the supervisor of {self._name} is closed")

    def _check_open_for_requests(self) -> None:
        if self._failure is not None:
            reason = self._failure
            raise IntegrationFailed(f"{self._name} has failed: {reason}", data={"reason": reason})
        if self._stopping or self._closed:
            raise ConnectionClosed(f"{self._name} is stopping")

    def _check_start_failures(self, start_failures: int) -> None:
        """A request waiting for a start that failed gets that start's error."""
        if self._start_failures != start_failures and self._start_error is not None:
            error = self._start_error
            raise type(error)(error.message, data=error.data, code=error.code)

    def _ready_timeout(self) -> float:
        now = asyncio.get_running_loop().time()
        backoff = max((slot.retry_at - now for slot in self._slots if slot.retry_at is not None), default=0.0)
        return self._options.handshake_timeout + max(0.0, backoff) + READY_MARGIN

    async def _wait_change(self, deadline: float) -> None:
        """Wait for the next state change; ``RequestTimeout`` at ``deadline``."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._changed.wait()
        except TimeoutError:
            message = f"{self._name} did not become ready in time (state: {self._state.value})"
            if self.last_error:
                message = f"{message}; the last error: {self.last_error}"
            raise RequestTimeout(message, data={"integration_id": self.integration_id}) from None

    # -- process slots ----------------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Start a task for every slot that has none (lazy start; after idle or stop)."""
        if self._failure is not None or self._stopping or self._closed or self._tg is None:
            return
        if self._halt.is_set():
            self._halt = asyncio.Event()  # a new generation: old tasks keep their own (set) event
        for slot in self._slots:
            if slot.task is None:
                slot.task = self._tg.create_task(self._slot_main(slot, self._halt))

    async def _slot_main(self, slot: _Slot, halt: asyncio.Event) -> None:
        """Run processes in ``slot`` until stopped, idle or failed; restart after crashes."""
        try:
            while not halt.is_set():
                ending = await self._run_once(slot, halt)
                crashed_at = asyncio.get_running_loop().time()
                if not ending.is_crash or self._record_crash(ending):
                    break
                if not await self._backoff(slot, halt, ending.at or crashed_at):
                    break
                self._restarts += 1
        except Exception:  # a bug of ours: log it, never take the TaskGroup (and the core) down
            logger.exception("%s: the supervisor of slot %d failed", self._name, slot.index)
        finally:
            slot.state, slot.run, slot.task, slot.retry_at = State.STOPPED, None, None, None
            self._update()

    async def _run_once(self, slot: _Slot, halt: asyncio.Event) -> _Ending:
        """Launch one process, serve until it ends, stop it; how it ended."""
        slot.state = State.STARTING
        self._starts += 1
        self._update("starting")
        self._write(logging.INFO, f"starting: {' '.join(self._argv)}", slot)
        run: _Run | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                box = (
                    None
                    if self._sandbox is None
                    else await stack.enter_async_context(self._sandbox(self._argv))
                )
                peer = await self._start_process(stack, slot, box)
                run = slot.run = _Run(peer, box)
                slot.state = State.RUNNING
                self._write(logging.INFO, f"started: pid {peer.pid}", slot)
                self._update("running")
                ending = await self._serve(slot, run, halt)
                run.end(ending)
            if not ending.is_crash:
                status = describe_exit(run.peer.process.returncode)
                self._write(logging.INFO, f"pid {run.pid} stopped ({ending.kind}): it {status}", slot)
            return ending
        except (IntegrationError, OSError) as exc:
            if run is not None:
                raise
            if isinstance(exc, OSError):
                exc = ProcessCrashed(f"cannot start {self._name}: {exc}")
            return self._start_failed(exc)
        finally:
            if run is not None:  # cancelled (the supervisor closed), or a bug: no request waits forever
                run.end(_Ending("stopped", f"{self._name} (pid {run.pid}) stopped: the supervisor closed"))
            slot.run = None

    async def _start_process(
        self, stack: contextlib.AsyncExitStack, slot: _Slot, box: ProcessSandbox | None
    ) -> Peer:
        """Launch a process (in its sandbox, whose report then confirms what is enforced)."""
        try:
            peer = await stack.enter_async_context(self._launch(slot, box))
        except ProcessCrashed as exc:
            raise exc if box is None else await box.explain(exc) from None
        if box is not None:
            plan = await box.attach(peer.pid)
            enforced = ", ".join(f"{name}: {how}" for name, how in plan.by_permission().items())
            self._write(logging.INFO, f"sandbox: {enforced}", slot)
        return peer

    def _launch(
        self, slot: _Slot, box: ProcessSandbox | None
    ) -> contextlib.AbstractAsyncContextManager[Peer]:
        o = self._options
        preexec_fn = parent_death_signal() if self.policy.die_with_parent else None
        return launch(
            self._argv if box is None else box.command(self._argv),
            integration_id=o.integration_id,
            transport=o.transport,
            env=o.env,
            cwd=o.cwd,
            runtime_dir=o.runtime_dir,
            config=o.config,
            permissions=o.permissions,
            features=o.features,
            protocol_versions=o.protocol_versions,
            core_info=o.core_info,
            handlers=o.handlers,
            notification_handlers=o.notification_handlers,
            on_log=self._log_handler(slot),
            handshake_timeout=o.handshake_timeout,
            shutdown_timeout=o.shutdown_timeout,
            on_output=self._output_handler(slot),
            preexec_fn=preexec_fn if box is None else None,  # the launcher sets it, and more
            pass_fds=() if box is None else box.pass_fds,
            on_spawn=None if box is None else box.spawned,
            spawner=o.spawner,
        )

    def _start_failed(self, exc: IntegrationError) -> _Ending:
        self._start_error = exc
        self._start_failures += 1
        ending = _Ending("start", f"{self._name} failed to start: {exc.message}", _json_data(exc.data))
        if isinstance(exc, ConfigurationError | ProtocolVersionMismatch):  # retrying cannot help
            self._fail(f"its start was refused: {exc.message}", ending)
        self._update("start failed")  # wake the requests waiting for this start
        return ending

    async def _backoff(self, slot: _Slot, halt: asyncio.Event, crashed_at: float) -> bool:
        """Wait the backoff delay (counted from the crash); ``False`` if told to stop meanwhile."""
        loop = asyncio.get_running_loop()
        delay = self.policy.backoff_delay(len(self._recent_crashes(loop.time())))
        slot.state, slot.retry_at = State.BACKOFF, crashed_at + delay
        self._write(logging.WARNING, f"restarting in {delay:.2f} s", slot)
        self._update(f"restarting in {delay:.2f} s after: {self.last_error}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(slot.retry_at):
                await halt.wait()
        slot.retry_at = None
        return not halt.is_set()

    # -- watching one process ---------------------------------------------------------------

    async def _serve(self, slot: _Slot, run: _Run, halt: asyncio.Event) -> _Ending:
        """Watch ``run`` until it crashes, hangs, breaks the protocol, idles or is told to stop."""
        loop = asyncio.get_running_loop()
        cause: asyncio.Future[tuple[_Kind, str]] = loop.create_future()

        def settle(kind: _Kind, detail: str = "") -> None:
            if cause.done():
                return
            run.routable = False  # from now on no request is routed to it
            run.ended_at = loop.time()
            slot.state = State.STOPPING if kind in ("stopped", "idle") else State.BACKOFF  # a crash: restart
            cause.set_result((kind, detail))
            self._update(kind)

        async with asyncio.TaskGroup() as tg:
            watchers = [
                tg.create_task(self._watch_connection(run, settle)),
                tg.create_task(self._watch_exit(run, settle)),
                tg.create_task(self._watch_pings(run, settle)),
                tg.create_task(self._watch_idle_and_halt(halt, settle)),
            ]
            try:
                kind, detail = await cause
            finally:
                for watcher in watchers:
                    watcher.cancel()
        return await self._conclude(run, kind, detail)

    async def _watch_connection(self, run: _Run, settle: Callable[[_Kind, str], None]) -> None:
        connection = run.peer.connection
        await connection.wait_closed()
        reason = connection.close_reason
        if isinstance(reason, ProtocolError):
            settle("protocol", reason.message)
        else:
            settle("crashed", "closed the connection")

    async def _watch_exit(self, run: _Run, settle: Callable[[_Kind, str], None]) -> None:
        await run.peer.process.wait()
        settle("crashed", "exited")

    async def _watch_pings(self, run: _Run, settle: Callable[[_Kind, str], None]) -> None:
        """A ping unanswered within the interval, with no answer nor progress meanwhile, is a hang.

        (A saturated integration stops reading, so our ping waits in its socket behind requests:
        answers and progress to those requests prove it alive.)
        """
        interval = self.policy.ping_interval
        loop = asyncio.get_running_loop()
        while True:
            sent = loop.time()
            try:
                await run.peer.connection.ping(interval)
            except RequestTimeout:
                if run.last_heard < sent:  # busy answering requests (pings wait behind) is not hung
                    settle("hung", f"did not answer a ping within {interval:g} s")
                    return
            except ConnectionClosed:
                return  # _watch_connection reports it
            except IntegrationError:
                pass  # an error answer is an answer: alive
            await asyncio.sleep(max(0.0, sent + interval - loop.time()))

    async def _watch_idle_and_halt(self, halt: asyncio.Event, settle: Callable[[_Kind, str], None]) -> None:
        idle_timeout = self.policy.idle_timeout
        loop = asyncio.get_running_loop()
        while not halt.is_set():
            wait: float | None = None
            if idle_timeout is not None:
                wait = idle_timeout if self._in_flight else self._last_activity + idle_timeout - loop.time()
                if wait <= 0:
                    settle("idle", f"no request for {idle_timeout:g} s")
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await halt.wait()
        settle("stopped", "stop requested")

    async def _conclude(self, run: _Run, kind: _Kind, detail: str) -> _Ending:
        """Make sure a crashed, hung or misbehaving process is gone; describe how it ended."""
        if kind in ("stopped", "idle"):
            return _Ending(kind, f"{self._name} (pid {run.pid}) was stopped: {detail}")
        peer = run.peer
        lingered = kind == "crashed" and not await _exited_within(peer, EXIT_WAIT)
        if kind != "crashed" or lingered:
            kill_group(peer.pid, signal.SIGKILL)
            await _exited_within(peer, KILL_TIMEOUT)
        peer.connection.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OUTPUT_DRAIN_TIMEOUT):
                await peer.output_closed()  # its last stderr lines
        message = self._crash_message(peer, kind, detail, lingered)
        if run.box is not None and run.box.killed_reason:
            message = f"{message}; the sandbox killed it: {run.box.killed_reason}"
        ending = _Ending(
            kind, _with_tail(message, peer.stderr_tail()), self._ending_data(run, kind), at=run.ended_at
        )
        run.end(ending)  # the requests in flight get it now
        return ending

    def _crash_message(self, peer: Peer, kind: _Kind, detail: str, lingered: bool) -> str:
        who, status = f"{self._name} (pid {peer.pid})", describe_exit(peer.process.returncode)
        if lingered:
            return f"{who} closed its connection but did not exit: killed ({status})"
        if kind == "hung":
            return f"{who} {detail}: hung, its process group killed ({status})"
        if kind == "protocol":
            return f"{who} broke the protocol ({detail}): disconnected and killed"
        return f"{who} {status}"

    def _ending_data(self, run: _Run, kind: _Kind) -> dict[str, Any]:
        peer = run.peer
        returncode = peer.process.returncode
        return {
            "integration_id": self.integration_id,
            "pid": peer.pid,
            "reason": kind,
            "returncode": returncode,
            "signal": signal_name(-returncode) if returncode is not None and returncode < 0 else None,
            "stderr": peer.stderr_tail(),
            "sandbox_killed": None if run.box is None else run.box.killed_reason,
        }

    # -- crashes and state ------------------------------------------------------------------

    def _record_crash(self, ending: _Ending) -> bool:
        """Count a crash; ``True`` if it spent the budget (the integration is now failed)."""
        now = asyncio.get_running_loop().time()
        self._last_ending = ending
        self._crashes.append(now)
        recent = self._recent_crashes(now)
        self._write(logging.ERROR, ending.message)
        if self._failure is not None:
            return True
        if len(recent) >= self.policy.crash_budget:
            window = self.policy.crash_window
            reason = f"it crashed {len(recent)} times within {window:g} s; the last time: {ending.message}"
            self._fail(reason, ending)
            return True
        return False

    def _fail(self, reason: str, ending: _Ending) -> None:
        self._last_ending = ending
        self._failure = reason
        self._halt.set()  # the other processes of the pool stop too
        for slot in self._slots:
            if slot.run is not None:
                slot.run.routable = False
        self._write(logging.ERROR, f"failed: {reason}")
        self._update(reason)

    def _recent_crashes(self, now: float) -> deque[float]:
        while self._crashes and self._crashes[0] < now - self.policy.crash_window:
            self._crashes.popleft()
        return self._crashes

    def _compute_state(self) -> State:
        if self._failure is not None:
            return State.FAILED
        if self._stopping:
            return State.STOPPING
        states = {slot.state for slot in self._slots}
        for state in (State.RUNNING, State.STARTING, State.BACKOFF, State.STOPPING):
            if state in states:
                return state
        return State.STOPPED

    def _update(self, reason: str | None = None) -> None:
        """Recompute the state; record and announce a change; wake everything that waits."""
        state = self._compute_state()
        if state is not self._state:
            self._state = state
            self._transitions.append(Transition(time.time(), state, reason))
            if self._on_state is not None:
                try:
                    self._on_state(state, reason)
                except Exception:
                    logger.exception("%s: the state handler failed", self._name)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait_for_slots(self, seconds: float) -> None:
        """Wait for the slot tasks to end; past ``seconds``, cancel them (launch then kills)."""
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=KILL_TIMEOUT + STOP_MARGIN)

    def _stop_timeout(self) -> float:
        steps = self._options.shutdown_timeout + EXIT_GRACE_PERIOD + TERMINATE_GRACE_PERIOD + KILL_TIMEOUT
        return steps + OUTPUT_DRAIN_TIMEOUT + STOP_MARGIN

    # -- logs and status --------------------------------------------------------------------

    def _write(self, level: int, message: str, slot: _Slot | None = None) -> None:
        logger.log(level, "%s: %s", self._name, message)
        if self._log is not None:
            self._log.write(level, self._source("supervisor", slot), message)

    def _source(self, source: str, slot: _Slot | None) -> str:
        return source if slot is None or self.policy.pool_size == 1 else f"{slot.index}:{source}"

    def _log_handler(self, slot: _Slot) -> Callable[[dict[str, Any]], None]:
        forward = self._options.on_log
        source = self._source("log", slot)

        def on_log(params: dict[str, Any]) -> None:
            if self._log is not None:
                self._log.write_peer_log(params, source)
            if forward is not None:
                forward(params)

        return on_log

    def _output_handler(self, slot: _Slot) -> Callable[[Literal["stdout", "stderr"], str], None]:
        forward = self._options.on_output

        def on_output(stream: Literal["stdout", "stderr"], line: str) -> None:
            if self._log is not None:
                level = logging.WARNING if stream == "stderr" else logging.INFO
                self._log.write(level, self._source(stream, slot), line)
            if forward is not None:
                forward(stream, line)

        return on_output

    def _slot_status(self, slot: _Slot, now: float) -> dict[str, Any]:
        run = slot.run
        stats: dict[str, Any] = {"cpu_percent": None, "rss_bytes": None}
        if run is not None:
            stats = run.stats.sample()
        return {
            "slot": slot.index,
            "state": slot.state.value,
            "pid": None if run is None else run.pid,
            "uptime_s": None if run is None else round(now - run.started, 3),
            "in_flight": 0 if run is None else run.in_flight,
            "retry_in_s": None if slot.retry_at is None else round(max(0.0, slot.retry_at - now), 3),
            "sandbox": None if run is None or run.box is None else run.box.status(),
            **stats,
        }


async def _exited_within(peer: Peer, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await peer.process.wait()
    return peer.process.returncode is not None


def _with_tail(message: str, tail: list[str]) -> str:
    if not tail:
        return f"{message}; it wrote nothing to stderr"
    lines = "\n".join(f"  | {line}" for line in tail)
    return f"{message}; the last lines of its stderr:\n{lines}"


def _json_data(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {"detail": data}


def _total(values: Any) -> float | int | None:
    present = [value for value in values if value is not None]
    return sum(present) if present else None
