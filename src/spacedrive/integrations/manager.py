"""The integration manager: routes requests to integrations, serves them the core APIs, reports health.

::

    async with IntegrationManager(core) as manager:
        response = await manager.handle_request(
            IntegrationRequest("1", "python-hello", "filetype.extract_metadata", {"path": "/notes.md"})
        )
        response.success, response.data, response.error     # never raises for integration failures
        manager.status()                                      # one row per integration

One :class:`~spacedrive.integrations.supervisor.Supervisor` per integration, created on its
first request (lazy start) or when the manager starts, for manifests whose
``activation_events`` hold ``onStartup``. Each supervisor lives in a task of the manager's
``TaskGroup``; leaving the block stops every integration gracefully, all at once.

**Which integrations run.** The registry (installed, entry points, bundled) gives the manifest
and the package folder; the library's settings must say *enabled* (else ``ConfigurationError``
-32007 naming ``spacedrive integration enable ID``) and not *failed* (``IntegrationFailed``
-32002 with the reason, until it is enabled again); the stored config must still match the
manifest's schema. The process gets ``effective_config`` (schema defaults filled in) and the
manifest's permissions as granted; it runs in its package folder. ``command`` runs as given
(its first element looked up in ``PATH``, or a path inside the package); ``executable_path``
runs the file. A Python integration (``python``/``python3`` as interpreter, or a ``.py``
executable) runs on the core's own interpreter, where the Python SDK is.

**Starting fast.** On Linux the manager starts integrations through a zygote
(``spacedrive.ipc._zygote``): a Python process with the SDK imported that forks one child per
start, so a Python integration shakes hands in about 11 ms instead of about 85 (a plain
interpreter start and ``import spacedrive.sdk``); other commands are exec'd from there. It is
started with the first integration (the daemon starts it at once: :meth:`warm_up`), and a
zygote that cannot serve falls back to a plain spawn, with a warning.
``SPACEDRIVE_NO_ZYGOTE=1`` (or ``zygote=False``) spawns every process directly.

**Routing.** :meth:`IntegrationManager.handle_request` takes the seed design's
``IntegrationRequest`` (``id``, ``integration_id``, ``method``, ``params``, ``timeout_ms``) and
answers an ``IntegrationResponse`` (``request_id``, ``success``, ``data``, ``error``), where
``error`` is the wire error object (``code``, ``message``, ``data``) of docs/protocol.md §7:
the integration's own error, a crash (-32002), a timeout (-32008), an unknown or disabled
integration. It raises only for misuse (``UsageError``: the manager is not entered) and
cancellation. ``timeout_ms`` bounds the request at the integration (no progress extends it);
without it, the dispatcher's defaults apply (30 s idle, 300 s in all).

:meth:`IntegrationManager.handle_batch` answers a list of requests, in order, and sends them
to the integrations all at once. ``Connection`` has no API to send several requests as one
JSON-RPC batch array (it *answers* batches), so each request is its own frame, written
back to back; one batch array per integration is for when the dispatcher grows that API.

**Core APIs.** The requests an integration sends to the core (``core.*``) are served by
``_core_api.CoreApi``: each is gated by the manifest's ``permissions.core_apis``
(``PermissionDenied`` -32006 otherwise). ``spacedrive.integrations._core_api`` lists them.

**Health.** :meth:`IntegrationManager.status` gives one row per integration (see
``_health.status_row``); :meth:`IntegrationManager.metrics_text` the same in the Prometheus
text format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import re
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from spacedrive.core.jobs import JobSystem
from spacedrive.core.node import Core
from spacedrive.core.paths import runtime_dir
from spacedrive.credentials import CredentialManager, call_with_credential
from spacedrive.integrations._core_api import JOB_FACTORIES, CoreApi, JobFactory
from spacedrive.integrations._health import (
    NOT_ENABLED,
    NOT_STARTED,
    metrics_text,
    settings_state,
    status_row,
)
from spacedrive.integrations._sandboxing import (
    SandboxHost,
    location_roots,
    sandbox_environment,
    switched_off,
)
from spacedrive.integrations.config import (
    IntegrationSettings,
    effective_config,
    get_settings,
    mark_failed,
    validate_config,
)
from spacedrive.integrations.errors import IntegrationNotFound, IntegrationsError, InvalidIntegrationConfig
from spacedrive.integrations.registry import Integration, Registry
from spacedrive.integrations.supervisor import IntegrationFailed, Policy, State, StateHandler, Supervisor
from spacedrive.ipc._dispatcher import ProgressHandler
from spacedrive.ipc._errors import (
    ConfigurationError,
    IntegrationError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    NotFound,
    ProtocolVersionMismatch,
    UsageError,
    error_to_wire,
)
from spacedrive.ipc._handshake import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    FileSystemAccess,
    Permissions,
)
from spacedrive.ipc._jsonrpc import ErrorObject
from spacedrive.ipc._launch import LaunchOptions, remove_stale_rendezvous
from spacedrive.ipc._methods import RESERVED_METHODS
from spacedrive.ipc._zygote import Zygote

__all__ = [
    "ON_STARTUP",
    "IntegrationManager",
    "IntegrationRequest",
    "IntegrationResponse",
    "integration_argv",
]

ON_STARTUP: Final = "onStartup"
NO_ZYGOTE_ENV: Final = "SPACEDRIVE_NO_ZYGOTE"
"""Set to ``1`` to spawn every integration process directly (no zygote)."""
"""The activation event that starts an integration with the manager rather than on demand."""
_PYTHON: Final = re.compile(r"^python(3(\.\d+)?)?$")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntegrationRequest:
    """A request for an integration (the seed design's ``IntegrationRequest``)."""

    id: str
    integration_id: str
    method: str
    params: Any = None
    timeout_ms: int | None = None

    @classmethod
    def from_json(cls, value: Any) -> IntegrationRequest:
        """Build one from decoded JSON; ``InvalidRequest`` names the field that is wrong."""
        if not isinstance(value, Mapping):
            raise InvalidRequest("a request must be a JSON object", data={"reason": "not an object"})
        for name in ("id", "integration_id", "method"):
            if not isinstance(value.get(name), str):
                raise InvalidRequest(
                    f"{name} must be a string", data={"field": name, "reason": "not a string"}
                )
        return cls(
            value["id"],
            value["integration_id"],
            value["method"],
            value.get("params"),
            value.get("timeout_ms"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "integration_id": self.integration_id,
            "method": self.method,
            "params": self.params,
            "timeout_ms": self.timeout_ms,
        }


@dataclass(frozen=True, slots=True)
class IntegrationResponse:
    """The answer to an :class:`IntegrationRequest`: its ``data``, or the wire ``error`` object."""

    request_id: str
    success: bool
    data: Any = None
    error: ErrorObject | None = None

    @classmethod
    def ok(cls, request_id: str, data: Any) -> IntegrationResponse:
        return cls(request_id, True, data, None)

    @classmethod
    def failed(cls, request_id: str, exc: BaseException) -> IntegrationResponse:
        """The response for ``exc`` (an ``IntegrationError``; anything else is ``InternalError``)."""
        wire = error_to_wire(exc)
        return cls(request_id, False, None, ErrorObject(wire["code"], wire["message"], wire.get("data")))

    def to_json(self) -> dict[str, Any]:
        error = None
        if self.error is not None:
            error = {"code": self.error.code, "message": self.error.message}
            if self.error.data is not None:
                error["data"] = self.error.data
        return {"request_id": self.request_id, "success": self.success, "data": self.data, "error": error}


def integration_argv(integration: Integration, python: str = sys.executable) -> list[str]:
    """The argv that runs ``integration`` from its package folder (see the module docstring)."""
    manifest, root = integration.manifest, integration.root
    if manifest.command:
        argv = list(manifest.command)
        if "/" in argv[0]:
            argv[0] = str(root / argv[0])
        elif _PYTHON.match(argv[0]):
            argv[0] = python
        return argv
    assert manifest.executable_path is not None  # the manifest has one or the other
    executable = root / manifest.executable_path
    return [python, str(executable)] if executable.suffix == ".py" else [str(executable)]


@dataclass
class _Hosted:
    """One supervised integration: its supervisor, and the task of the manager that hosts it."""

    integration: Integration
    supervisor: Supervisor
    stop: asyncio.Event
    task: asyncio.Task[None]


class IntegrationManager:
    """Routes requests to the integrations of ``core``'s library; an async context manager.

    ``log_dir`` defaults to ``<data dir>/logs``; ``policy`` is the supervisors' base policy (a
    manifest's ``pool_size`` and ``idle_timeout_s`` override it); ``jobs`` is the job system
    that runs the jobs integrations create (without one they are queued for the next runner);
    ``job_factories`` the job types integrations may create; ``registry`` the integrations
    (default: discovered in the data dir when the manager starts); ``credentials`` the
    credential manager that hands credentials over with requests and serves
    ``core.credentials.*`` (default: the library's, docs/protocol.md §6.2); ``sandbox`` whether
    the manifests' permissions bind the processes (default: yes, unless ``SPACEDRIVE_NO_SANDBOX=1``;
    docs/sandbox.md); ``zygote`` whether processes are forked from a zygote (default: on Linux,
    unless ``SPACEDRIVE_NO_ZYGOTE=1``).
    """

    def __init__(
        self,
        core: Core,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        policy: Policy | None = None,
        jobs: JobSystem | None = None,
        job_factories: Mapping[str, JobFactory] = JOB_FACTORIES,
        registry: Registry | None = None,
        handshake_timeout: float | None = None,
        credentials: CredentialManager | None = None,
        sandbox: bool | None = None,
        zygote: bool | None = None,
    ) -> None:
        self.core = core
        self.sandbox = SandboxHost(
            enabled=sandbox,
            temp_base=core.data_dir / "tmp",
            library_roots=functools.partial(location_roots, core),
        )
        self.credentials = credentials or CredentialManager.for_core(core)
        self.log_dir = Path(log_dir) if log_dir is not None else core.data_dir / "logs"
        self.policy = policy or Policy()
        self._registry = registry
        self._zygote = Zygote(fallback=True) if _use_zygote(zygote) else None
        self._handshake_timeout = handshake_timeout
        self._hosted: dict[str, _Hosted] = {}
        self._reloading: set[str] = set()  # restarted for new locations (sync_locations), not done yet
        self._lock = asyncio.Lock()
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._api = CoreApi(
            core, self._spawn, jobs=jobs, job_factories=job_factories, credentials=self.credentials
        )

    # -- context ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise UsageError("an IntegrationManager can only be entered once")
        if self._registry is None:
            self._registry = Registry.discover(self.core.data_dir)
        await self.sandbox.open()
        stale = await asyncio.to_thread(remove_stale_rendezvous, runtime_dir(self.core.data_dir))
        if stale:
            logger.info("removed %d socket folders of integrations a killed core started", len(stale))
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            for integration in self._registry:
                if ON_STARTUP in integration.manifest.activation_events:
                    await self._start_at_startup(integration.id)
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._closed = True
        for hosted in self._hosted.values():
            hosted.stop.set()  # all at once: each supervisor stops its processes gracefully
        if exc_type is not None:
            for hosted in self._hosted.values():
                hosted.task.cancel()  # left by an error or a cancellation: no politeness
        try:
            if self._hosted:
                await asyncio.wait([hosted.task for hosted in self._hosted.values()])
        finally:
            if self._zygote is not None:
                await self._zygote.aclose()  # after the supervisors: its children are theirs
            self._api.close()
            self._hosted.clear()
            await self._tg.__aexit__(None, None, None)  # our tasks never fail: don't wrap the body's error

    # -- the seed's API ---------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise UsageError("enter the manager first: `async with IntegrationManager(core) as manager:`")
        return self._registry

    def launcher_status(self) -> dict[str, Any]:
        """How processes start here: the zygote (pid, how many were started) and the sandbox's platform."""
        zygote = self._zygote
        platform = self.sandbox.platform
        return {
            "zygote": None if zygote is None else {"pid": zygote.pid, "starts": zygote.starts},
            "sandbox": {
                "enabled": self.sandbox.enabled,
                "off_reason": self.sandbox.off_reason,
                "platform": None if platform is None else platform.to_json(),
            },
        }

    async def warm_up(self) -> None:
        """Start the zygote now rather than with the first integration (the daemon does)."""
        self._check_open()
        if self._zygote is not None:
            await self._zygote.start()  # with fallback: never raises, warns

    def discover_integrations(self) -> list[str]:
        """Look for integrations again (installed since the manager started); their ids."""
        self._registry = Registry.discover(self.core.data_dir)
        return sorted(self._registry.integrations)

    def supervisor(self, integration_id: str) -> Supervisor | None:
        """The supervisor of ``integration_id`` once it was asked for (a request, a start), else ``None``."""
        hosted = self._hosted.get(integration_id)
        return None if hosted is None else hosted.supervisor

    async def start_integration(self, integration_id: str) -> None:
        """Start ``integration_id`` now and wait until its processes run (raises its error)."""
        supervisor = await self._supervisor(integration_id)
        await supervisor.start()

    async def stop_integration(self, integration_id: str) -> None:
        """Stop ``integration_id`` gracefully; a later request starts it again (if still enabled)."""
        hosted = self._hosted.pop(integration_id, None)
        if hosted is not None:
            hosted.stop.set()
            await asyncio.wait([hosted.task])

    async def reload_integration(self, integration_id: str) -> str:
        """Apply what changed on disk or in the library to ``integration_id``; say what was done.

        For the CLI's ``enable``, ``disable``, ``update``, ``remove`` and ``rollback`` while the
        daemon runs: the integrations are discovered again, a hosted one is stopped gracefully
        (its next request starts the current version with the current config and a fresh crash
        history: a failed one is thereby reset; a disabled or removed one stays stopped), and an
        ``onStartup`` one that may run is started again. Returns ``"stopped"``, ``"restarted"``,
        ``"started"`` or ``"unchanged"``.
        """
        self._check_open()
        self.discover_integrations()
        was_hosted = integration_id in self._hosted
        await self.stop_integration(integration_id)
        if integration_id in self.registry:
            integration = self.registry.get(integration_id)
            if ON_STARTUP in integration.manifest.activation_events:
                await self._start_at_startup(integration_id)  # skipped (and logged) if it may not run
        if integration_id in self._hosted:
            return "restarted" if was_hosted else "started"
        return "stopped" if was_hosted else "unchanged"

    def sync_locations(self) -> list[str]:
        """Restart the running file handlers whose sandbox has other location roots than the library now.

        A sandboxed FileTypeHandler or ContentProcessor reads the roots of the locations it
        got at its start (Landlock rules cannot be added to a running process), so a location
        added or removed since is applied by a graceful restart (``reload_integration``: the
        next request starts it again, an ``onStartup`` one at once), in the background: the
        caller (the daemon's housekeeping, at each poll) does not wait for requests in flight
        to drain. Returns the ids whose restart began.
        """
        self._check_open()
        if not self.sandbox.enabled:
            return []
        handlers = {  # running file handlers not being restarted (the others read the roots at start)
            integration_id: running
            for integration_id, hosted in self._hosted.items()
            if integration_id not in self._reloading
            and self.sandbox.reads_library(hosted.integration)
            and (running := hosted.supervisor.sandboxes)
        }
        if not handlers:
            return []  # nothing to compare: no query of the library at this poll
        roots = sorted(location_roots(self.core))
        restarting = []
        for integration_id, running in handlers.items():
            if any(sorted(box.library_read_paths) != roots for box in running):
                logger.info("the library's locations changed: restarting integration %r", integration_id)
                self._reloading.add(integration_id)
                self._spawn(self._reload_in_background(integration_id))
                restarting.append(integration_id)
        return restarting

    async def _reload_in_background(self, integration_id: str) -> None:
        try:
            await self.reload_integration(integration_id)
        except Exception:  # logged; the next poll tries again
            logger.exception("restarting integration %r for the new locations failed", integration_id)
        finally:
            self._reloading.discard(integration_id)

    async def handle_request(
        self, request: IntegrationRequest, *, on_progress: ProgressHandler | None = None
    ) -> IntegrationResponse:
        """Route ``request`` to its integration; every failure becomes an error response.

        ``on_progress`` receives the integration's ``$/progress`` reports for the request
        (``{"progress"?, "total"?, "message"?}``).
        """
        self._check_open()
        try:
            data = await self._route(request, on_progress)
        except IntegrationError as exc:
            return IntegrationResponse.failed(request.id, exc)
        except IntegrationsError as exc:
            return IntegrationResponse.failed(request.id, _as_wire_error(exc))
        except Exception:  # a bug: logged here, an InternalError without details there
            logger.exception("routing %s to %r failed", request.method, request.integration_id)
            return IntegrationResponse.failed(request.id, InternalError())
        return IntegrationResponse.ok(request.id, data)

    async def handle_batch(self, requests: Sequence[IntegrationRequest]) -> list[IntegrationResponse]:
        """Answer every request of ``requests``, in order; they are all sent at once (see above)."""
        self._check_open()
        return list(await asyncio.gather(*(self.handle_request(request) for request in requests)))

    # -- health -----------------------------------------------------------------------------

    def status(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        """One row per integration (or only ``integration_id``'s): see ``_health.status_row``."""
        registry = self.registry
        ids = (
            [integration_id]
            if integration_id is not None
            else sorted(set(registry.integrations) | set(self._hosted))
        )
        rows = []
        for one in ids:
            hosted = self._hosted.get(one)
            integration = hosted.integration if hosted is not None else registry.get(one)
            settings = get_settings(self.core.library.db, one)
            live = hosted.supervisor.status() if hosted is not None else None
            usage = self._api.usage.get(one)
            core_api = usage.to_json() if usage is not None else None
            note = NOT_STARTED if settings_state(settings) == "enabled" else NOT_ENABLED
            planned = None if live and live.get("sandbox") else self.sandbox.describe(integration)
            rows.append(
                status_row(
                    integration.manifest, settings, live, note=note, core_api=core_api, sandbox=planned
                )
            )
        return rows

    def metrics_text(self) -> str:
        """The status of every integration in the Prometheus text exposition format.

        Rendered by ``prometheus_client`` from ``_health.IntegrationCollector``, the same
        collector the daemon serves over HTTP.
        """
        return metrics_text(self.status())

    # -- routing ----------------------------------------------------------------------------

    async def _route(self, request: IntegrationRequest, on_progress: ProgressHandler | None = None) -> Any:
        method, params, timeout_ms = request.method, request.params, request.timeout_ms
        if not isinstance(method, str) or method in RESERVED_METHODS or method.startswith(("$/", "rpc.")):
            raise InvalidRequest(
                f"{method!r} is reserved by the protocol: it cannot be routed to an integration",
                data={"field": "method", "reason": "reserved method"},
            )
        if params is not None and not isinstance(params, dict | list):
            raise InvalidParams(
                "params must be an object", data={"field": "params", "reason": "not an object"}
            )
        timeout = None
        if timeout_ms is not None:
            if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
                raise InvalidRequest(
                    "timeout_ms must be a positive integer", data={"field": "timeout_ms", "reason": "invalid"}
                )
            timeout = timeout_ms / 1000
        supervisor = await self._supervisor(request.integration_id)

        async def send(body: Any) -> Any:
            return await supervisor.request(
                method, body, timeout=timeout, max_timeout=timeout, on_progress=on_progress
            )

        hosted = self._hosted.get(request.integration_id)
        integration = hosted.integration if hosted is not None else self.registry.get(request.integration_id)
        try:
            if integration.manifest.permissions.requires_credentials:  # docs/protocol.md §6.2
                return await call_with_credential(self.credentials, request.integration_id, params, send)
            return await send(params)
        except NotFound as exc:
            hint = await asyncio.to_thread(self.sandbox.outside_hint, integration, method, params)
            if hint is None:
                raise
            raise NotFound(f"{exc.message} ({hint})", data=exc.data) from None

    async def _supervisor(self, integration_id: str) -> Supervisor:
        """The supervisor of ``integration_id``, created (not started) on first use."""
        hosted = self._hosted.get(integration_id)
        if hosted is not None:
            return hosted.supervisor
        async with self._lock:
            self._check_open()
            hosted = self._hosted.get(integration_id)
            if hosted is None:
                hosted = await self._host(self._runnable(integration_id))
                self._hosted[integration_id] = hosted
            return hosted.supervisor

    def _runnable(self, integration_id: str) -> tuple[Integration, dict[str, Any]]:
        """The integration and its effective config, if it may run here; else why not."""
        registry = self.registry
        if integration_id not in registry:
            registry = Registry.discover(self.core.data_dir)  # installed since we started?
            self._registry = registry
        integration = registry.get(integration_id)  # IntegrationNotFound
        settings = get_settings(self.core.library.db, integration_id)
        _check_enabled(integration, settings, self.core.library.config.name)
        assert settings is not None
        manifest = integration.manifest
        try:
            config = validate_config(manifest, settings.config, file="stored config")
        except InvalidIntegrationConfig as exc:
            raise ConfigurationError(
                f"{exc}\nfix it: spacedrive integration enable {integration_id} --config FILE",
                data={"integration_id": integration_id, "problems": [p.to_json() for p in exc.problems]},
            ) from None
        _check_protocol(integration)
        return integration, effective_config(manifest, config)

    async def _host(self, runnable: tuple[Integration, dict[str, Any]]) -> _Hosted:
        integration, config = runnable
        supervisor = Supervisor(
            integration_argv(integration),
            self._launch_options(integration, config),
            policy=self._policy(integration),
            log_dir=self.log_dir,
            on_state=self._on_state(integration.id),
            sandbox=self.sandbox.factory(integration),
        )
        assert self._tg is not None
        entered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = self._tg.create_task(_run_supervisor(supervisor, entered, stop))
        await entered  # raises if the supervisor could not be entered (its task has ended)
        return _Hosted(integration, supervisor, stop, task)

    def _launch_options(self, integration: Integration, config: dict[str, Any]) -> LaunchOptions:
        perms = integration.manifest.permissions
        granted = Permissions(
            network_access=list(perms.network_access),
            file_system_access=FileSystemAccess(
                read=[os.path.expanduser(p) for p in perms.file_system_access.read],
                write=[os.path.expanduser(p) for p in perms.file_system_access.write],
            ),
            core_apis=list(perms.core_apis),
            requires_credentials=perms.requires_credentials,
            max_memory_mb=perms.max_memory_mb,
            max_cpu_percent=perms.max_cpu_percent,
        )
        options = LaunchOptions(
            integration.id,
            env=sandbox_environment(os.environ) if self.sandbox.enabled else None,
            cwd=integration.root,
            runtime_dir=runtime_dir(self.core.data_dir),
            config=config,
            permissions=granted,
            handlers=self._api.handlers(integration.id, perms.core_apis),
            spawner=None if self._zygote is None else self._zygote.create_subprocess_exec,
        )
        if self._handshake_timeout is not None:
            options = dataclasses.replace(options, handshake_timeout=self._handshake_timeout)
        return options

    def _policy(self, integration: Integration) -> Policy:
        manifest = integration.manifest
        idle = manifest.idle_timeout_s if manifest.idle_timeout_s is not None else self.policy.idle_timeout
        return dataclasses.replace(self.policy, pool_size=manifest.pool_size, idle_timeout=idle)

    def _on_state(self, integration_id: str) -> StateHandler:
        def on_state(state: State, reason: str | None) -> None:
            if state is State.FAILED:
                mark_failed(self.core.library.db, integration_id, reason or "it failed")

        return on_state

    async def _start_at_startup(self, integration_id: str) -> None:
        """Create the supervisor of an ``onStartup`` integration and start it in the background.

        One that may not run (not enabled, ...) is skipped; a start that fails is logged and
        shows in its status, as for any start. Neither stops the manager.
        """
        try:
            supervisor = await self._supervisor(integration_id)
        except (IntegrationError, IntegrationsError) as exc:
            logger.info("integration %r is not started with the manager: %s", integration_id, exc)
            return
        self._spawn(_start_in_background(supervisor))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        if self._tg is None or self._closed:
            coroutine.close()
            raise UsageError("the manager is closed")
        return self._tg.create_task(coroutine)

    def _check_open(self) -> None:
        if self._tg is None:
            raise UsageError("enter the manager first: `async with IntegrationManager(core) as manager:`")
        if self._closed:
            raise UsageError("the manager is closed")


async def _start_in_background(supervisor: Supervisor) -> None:
    try:
        await supervisor.start()
    except IntegrationError as exc:
        logger.warning("integration %r did not start with the manager: %s", supervisor.integration_id, exc)


async def _run_supervisor(supervisor: Supervisor, entered: asyncio.Future[None], stop: asyncio.Event) -> None:
    """Own ``supervisor`` in this task (its TaskGroup's parent) until ``stop`` is set."""
    try:
        async with supervisor:
            entered.set_result(None)
            await stop.wait()
    except Exception as exc:  # never take the manager's TaskGroup down
        if not entered.done():
            entered.set_exception(exc)
        else:
            logger.exception("the supervisor of %r failed", supervisor.integration_id)
    finally:
        if not entered.done():
            entered.cancel()


def _use_zygote(asked: bool | None) -> bool:
    if asked is not None:
        return asked
    return sys.platform.startswith("linux") and not switched_off(NO_ZYGOTE_ENV)


def _check_enabled(integration: Integration, settings: IntegrationSettings | None, library: str) -> None:
    integration_id = integration.id
    if settings is not None and settings.state == "failed":
        raise IntegrationFailed(
            f"integration {integration_id!r} has failed: {settings.failed_reason}; once fixed, enable it "
            f"again: spacedrive integration enable {integration_id}",
            data={"integration_id": integration_id, "reason": settings.failed_reason},
        )
    if settings is None or not settings.enabled:
        raise ConfigurationError(
            f"integration {integration_id!r} is not enabled in library {library!r}: "
            f"spacedrive integration enable {integration_id}",
            data={"integration_id": integration_id, "reason": "not enabled"},
        )


def _check_protocol(integration: Integration) -> None:
    versions = integration.manifest.protocol
    if versions.max < PROTOCOL_VERSION_MIN or versions.min > PROTOCOL_VERSION_MAX:
        raise ProtocolVersionMismatch(
            f"integration {integration.id!r} speaks protocol versions {versions.min}..{versions.max}; "
            f"this core speaks {PROTOCOL_VERSION_MIN}..{PROTOCOL_VERSION_MAX}",
            data={
                "core": {"min": PROTOCOL_VERSION_MIN, "max": PROTOCOL_VERSION_MAX},
                "integration": {"min": versions.min, "max": versions.max},
            },
        )


def _as_wire_error(exc: IntegrationsError) -> IntegrationError:
    """A manager-level error as the wire says it: an unknown integration is ``NotFound``."""
    if isinstance(exc, IntegrationNotFound):
        return NotFound(str(exc), data={"reason": "no such integration"})
    return ConfigurationError(str(exc))
