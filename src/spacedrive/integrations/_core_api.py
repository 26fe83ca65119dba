"""The core APIs an integration may call (docs/protocol.md §6), each behind its permission.

The manager gives every integration's connection the handlers of :meth:`CoreApi.handlers`.
Each handler first checks that the integration's manifest grants the method's permission
(``permissions.core_apis``), and answers ``PermissionDenied`` (-32006, ``data: {"permission",
"method"}``) when it does not, before it looks at the params:

====================================  ==================  =============================================
method and params                     permission          result
====================================  ==================  =============================================
``core.locations.list {}``            ReadLocations       ``[Location]``
``core.locations.add {path, name?}``  WriteLocations      ``Location`` (and a ``LocationAdded`` event)
``core.files.stat {path}``            ReadFiles           ``{path, kind, size, modified_ns, mode}``
``core.files.read {path, offset?,     ReadFiles           ``{size, stream}``: the bytes on a stream (§8)
length?}``
``core.files.write {path, stream}``   WriteFiles          ``{size}``, written atomically; a small UTF-8
                                                          ``text`` may replace ``stream``
``core.jobs.create {name, params?}``  CreateJobs          ``{job_id, name, status}``
``core.events.subscribe {types?}``    AccessEvents        ``null``; then ``core.event`` notifications
``core.credentials.get                ManageCredentials   its own ``Credential`` (protocol §6.2);
{credential_id?}``                                        ``.store``, ``.list``, ``.delete`` likewise
====================================  ==================  =============================================

Files are confined to the library's locations on this device (see ``_files``). A job is created
from a known job type (``JOB_FACTORIES``): dispatched to the manager's ``JobSystem`` when it
has one, else stored as a queued job that the next job runner (the daemon's) claims and runs.
``core.events.subscribe`` forwards the bus's events of the given types (all when none is given)
to the connection that asked, as ``core.event`` notifications ``{"type", "data"}``, until that
connection ends; subscribing again replaces the types. ``core.credentials.*`` are served by
``spacedrive.credentials.CredentialApi``: an integration sees only its own credentials, and a
credential (or ``integration_id``) of another integration is answered ``PermissionDenied``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from spacedrive.core._threads import run_blocking
from spacedrive.core.db import transaction
from spacedrive.core.errors import InvalidLocationPath, LocationError, LocationNotFound, SpacedriveError
from spacedrive.core.events import (
    EntriesChanged,
    Event,
    JobProgress,
    JobStatusChanged,
    LocationAdded,
    LocationRemoved,
    Subscription,
)
from spacedrive.core.indexer import IndexerJob
from spacedrive.core.jobs import Job, JobSystem
from spacedrive.core.library import Library
from spacedrive.core.node import Core
from spacedrive.credentials import CredentialApi, CredentialManager
from spacedrive.ipc._context import RequestContext
from spacedrive.ipc._dispatcher import Connection, RequestHandler
from spacedrive.ipc._errors import (
    IntegrationError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    NotFound,
    PermissionDenied,
)
from spacedrive.ipc._jsonrpc import Params

from ._files import AtomicFile, confine, encode_text, open_for_read, stat_file

__all__ = [
    "CORE_API_PERMISSIONS",
    "EVENT_NOTIFICATION",
    "EVENT_TYPES",
    "JOB_FACTORIES",
    "ApiUsage",
    "CoreApi",
    "JobFactory",
    "queue_job",
]

CORE_API_PERMISSIONS: Final[Mapping[str, str]] = {
    "core.locations.list": "ReadLocations",
    "core.locations.add": "WriteLocations",
    "core.files.stat": "ReadFiles",
    "core.files.read": "ReadFiles",
    "core.files.write": "WriteFiles",
    "core.jobs.create": "CreateJobs",
    "core.events.subscribe": "AccessEvents",
    "core.credentials.get": "ManageCredentials",
    "core.credentials.store": "ManageCredentials",
    "core.credentials.list": "ManageCredentials",
    "core.credentials.delete": "ManageCredentials",
}
"""Every core API method and the ``core_apis`` permission it needs."""
EVENT_NOTIFICATION: Final = "core.event"
EVENT_TYPES: Final[Mapping[str, type[Event]]] = {
    cls.__name__: cls
    for cls in (LocationAdded, LocationRemoved, EntriesChanged, JobStatusChanged, JobProgress)
}
"""The bus events an integration may subscribe to, by the ``type`` they carry."""

JobFactory = Callable[[Core, dict[str, Any]], Job]
"""Builds a job of one type from the ``params`` of ``core.jobs.create`` (raises ``InvalidParams``)."""
_Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[Any]]


def _indexer_job(core: Core, params: dict[str, Any]) -> Job:
    location_id = params.get("location_id")
    if not isinstance(location_id, int | str) or isinstance(location_id, bool):
        raise InvalidParams(
            "params.location_id must be a location id",
            data={"field": "params.location_id", "reason": "missing"},
        )
    try:
        location = core.locations.get(location_id)
    except LocationNotFound as exc:
        raise NotFound(str(exc), data={"location_id": location_id}) from None
    return IndexerJob.for_location(location)


JOB_FACTORIES: Final[Mapping[str, JobFactory]] = {"indexer": _indexer_job}
"""The job types ``core.jobs.create`` accepts by default, by name."""


@dataclass
class ApiUsage:
    """What one integration asked of the core: calls answered, and calls refused for a permission."""

    calls: int = 0
    denied: int = 0

    def to_json(self) -> dict[str, int]:
        return {"calls": self.calls, "denied": self.denied}


def queue_job(library: Library, job: Job) -> str:
    """Store ``job`` as queued with no runner: the next ``JobSystem`` to start claims and runs it."""
    job_id = str(uuid.uuid4())
    now = time.time()
    with transaction(library.db):
        library.db.execute(
            "INSERT INTO jobs (id, name, state_version, state, status, runner, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'queued', NULL, ?, ?)",
            (job_id, job.name, job.version, orjson.dumps(job.state), now, now),
        )
    return job_id


class CoreApi:
    """The core APIs of one manager; ``spawn`` runs a background task owned by the manager."""

    def __init__(
        self,
        core: Core,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        *,
        jobs: JobSystem | None = None,
        job_factories: Mapping[str, JobFactory] = JOB_FACTORIES,
        credentials: CredentialManager | None = None,
    ) -> None:
        self._core = core
        self._credentials = CredentialApi(credentials or CredentialManager.for_core(core))
        self._spawn = spawn
        self._jobs = jobs
        self._job_factories = dict(job_factories)
        self._subscriptions: dict[Connection, tuple[asyncio.Task[None], Subscription]] = {}
        self.usage: dict[str, ApiUsage] = {}
        self._apis: dict[str, _Handler] = {
            "core.locations.list": self._locations_list,
            "core.locations.add": self._locations_add,
            "core.files.stat": self._files_stat,
            "core.files.read": self._files_read,
            "core.files.write": self._files_write,
            "core.jobs.create": self._jobs_create,
            "core.events.subscribe": self._events_subscribe,
        }

    def handlers(self, integration_id: str, granted: Iterable[str]) -> dict[str, RequestHandler]:
        """The handlers of every core API for ``integration_id``, gated by its ``granted`` permissions."""
        allowed = frozenset(granted)
        usage = self.usage.setdefault(integration_id, ApiUsage())
        return {
            method: self._gate(integration_id, method, permission, allowed, usage)
            for method, permission in CORE_API_PERMISSIONS.items()
        }

    @property
    def subscriptions(self) -> int:
        """Connections that receive events now."""
        return len(self._subscriptions)

    def _gate(
        self, integration_id: str, method: str, permission: str, allowed: frozenset[str], usage: ApiUsage
    ) -> RequestHandler:
        api = self._credentials.handler(integration_id, method) or self._apis.get(method, _not_available)

        async def handle(ctx: RequestContext, params: Params) -> Any:
            if permission not in allowed:
                usage.denied += 1
                raise PermissionDenied(
                    f"integration {integration_id!r} may not call {method}: its manifest does not grant "
                    f"the {permission} permission (permissions.core_apis)",
                    data={"permission": permission, "method": method},
                )
            usage.calls += 1
            try:
                return await api(ctx, _object(params))
            except SpacedriveError as exc:  # a core error the API did not translate
                raise IntegrationError(str(exc)) from None

        return handle

    # -- locations --------------------------------------------------------------------------

    async def _locations_list(self, ctx: RequestContext, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [location.to_json() for location in self._core.locations.list()]

    async def _locations_add(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        path = _absolute_path(params)
        name = params.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidParams("name must be a string", data={"field": "name", "reason": "not a string"})
        try:
            location = self._core.locations.add(path, name=name or None)
        except InvalidLocationPath as exc:
            raise InvalidParams(str(exc), data={"field": "path", "path": path, "reason": str(exc)}) from None
        except LocationError as exc:
            raise IntegrationError(str(exc), data={"path": path}) from None
        self._core.bus.publish(LocationAdded(location.id, location.path))
        return location.to_json()

    # -- files ------------------------------------------------------------------------------

    def _roots(self) -> list[Path]:
        """The folders of the library's locations on this device."""
        device = self._core.device_id
        return [location.root for location in self._core.locations.list() if location.device_id == device]

    async def _files_stat(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        roots = self._roots()
        real = confine(params.get("path"), roots)
        return await run_blocking(stat_file, real, params["path"], roots)

    async def _files_read(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        offset, length = (_count(params, name) for name in ("offset", "length"))
        _check_streams(ctx, "core.files.read")
        roots = self._roots()
        real = confine(params.get("path"), roots)
        fd, size = await run_blocking(open_for_read, real, params["path"], roots)
        start = min(offset or 0, size)
        count = size - start if length is None else min(length, size - start)
        writer = ctx.stream_from(_file_chunks(fd, start, count))
        return {"size": count, "stream": writer.id}

    async def _files_write(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if "stream" in params:
            _check_streams(ctx, "core.files.write")
            source: AsyncIterable[bytes | bytearray | memoryview] = ctx.accept_stream(params["stream"])
        elif isinstance(params.get("text"), str):
            source = _one(params["text"])
        else:
            raise InvalidParams(
                "core.files.write needs the bytes: a `stream` (or, for a small UTF-8 text, `text`)",
                data={"field": "stream", "reason": "missing"},
            )
        roots = self._roots()
        real = confine(params.get("path"), roots)
        target = await run_blocking(AtomicFile.create, real, params["path"], roots)
        try:
            await _write_all(source, target)
            await run_blocking(target.commit)
        except BaseException:
            await run_blocking(target.abort)
            raise
        return {"size": target.size}

    # -- jobs -------------------------------------------------------------------------------

    async def _jobs_create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        factory = self._job_factories.get(name) if isinstance(name, str) else None
        if factory is None:
            known = ", ".join(sorted(self._job_factories)) or "none"
            raise InvalidParams(
                f"no job type {name!r} (job types: {known})",
                data={"field": "name", "reason": "unknown job type"},
            )
        job_params = params.get("params", {})
        if not isinstance(job_params, dict):
            raise InvalidParams(
                "params must be an object", data={"field": "params", "reason": "not an object"}
            )
        job = factory(self._core, job_params)
        job_id = self._jobs.dispatch(job) if self._jobs is not None else queue_job(self._core.library, job)
        return {"job_id": job_id, "name": job.name, "status": "queued"}

    # -- events -----------------------------------------------------------------------------

    async def _events_subscribe(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        types = params.get("types", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise InvalidParams(
                "types must be a list of strings", data={"field": "types", "reason": "invalid"}
            )
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            known = ", ".join(EVENT_TYPES)
            raise InvalidParams(
                f"unknown event type {unknown[0]!r} (event types: {known})",
                data={"field": "types", "reason": "unknown event type"},
            )
        connection = ctx.connection
        self._unsubscribe(connection)
        subscription = self._core.bus.subscribe(*(EVENT_TYPES[t] for t in types))
        task = self._spawn(self._forward(connection, subscription))
        self._subscriptions[connection] = (task, subscription)

    def close(self) -> None:
        """End every subscription (the manager is closing)."""
        for connection in list(self._subscriptions):
            self._unsubscribe(connection)

    def _unsubscribe(self, connection: Connection) -> None:
        found = self._subscriptions.pop(connection, None)
        if found is not None:
            task, subscription = found
            subscription.close()  # here: a task cancelled before it ran never runs its finally
            task.cancel()

    async def _forward(self, connection: Connection, subscription: Subscription) -> None:
        """Send the subscription's events to ``connection`` until it closes (or we are cancelled)."""
        try:
            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(_pump(connection, subscription))
                await connection.wait_closed()
                pump.cancel()
        finally:
            subscription.close()
            found = self._subscriptions.get(connection)
            if found is not None and found[1] is subscription:
                del self._subscriptions[connection]


async def _pump(connection: Connection, subscription: Subscription) -> None:
    while True:
        event = await subscription.get()
        wire = event.to_json()
        connection.notify(EVENT_NOTIFICATION, {"type": wire.pop("type"), "data": wire})


WRITE_BATCH: Final = 1024 * 1024
"""Bytes of a stream gathered before one write in a worker thread (fewer thread hops)."""
READ_CHUNK: Final = 256 * 1024


def _check_streams(ctx: RequestContext, method: str) -> None:
    if not ctx.connection.streams_enabled:
        raise InvalidRequest(
            f"{method} moves its bytes on a stream: the integration must accept `streams` in initialize",
            data={"reason": "streams not negotiated", "method": method},
        )


def _count(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidParams(f"{name} must be an integer >= 0", data={"field": name, "reason": "invalid"})
    return value


async def _file_chunks(fd: int, start: int, count: int) -> AsyncIterator[bytes]:
    """``count`` bytes of ``fd`` from ``start``, read in a worker thread; closes ``fd`` at the end."""
    try:
        position, end = start, start + count
        while position < end:
            data = await run_blocking(os.pread, fd, min(READ_CHUNK, end - position), position)
            if not data:  # the file shrank meanwhile: the stream ends early, the consumer sees it
                return
            position += len(data)
            yield data
    finally:
        os.close(fd)


async def _one(text: str) -> AsyncIterator[bytes]:
    yield encode_text(text)


async def _write_all(source: AsyncIterable[bytes | bytearray | memoryview], target: AtomicFile) -> None:
    pending = bytearray()
    async for chunk in source:
        pending += chunk
        if len(pending) >= WRITE_BATCH:
            await run_blocking(target.write, bytes(pending))
            pending.clear()
    if pending:
        await run_blocking(target.write, bytes(pending))


async def _not_available(ctx: RequestContext, params: dict[str, Any]) -> Any:
    raise MethodNotFound(
        f"{ctx.method} is not implemented by this core",
        data={"method": ctx.method, "reason": "not implemented"},
    )


def _object(params: Params) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object", data={"reason": "params is not an object"})
    return params


def _absolute_path(params: dict[str, Any]) -> str:
    path = params.get("path")
    if not isinstance(path, str) or not path or "\0" in path or not Path(path).is_absolute():
        raise InvalidParams(
            f"path must be an absolute local path, not {path!r}",
            data={"field": "path", "reason": "not an absolute path"},
        )
    return path
