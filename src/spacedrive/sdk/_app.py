"""``Integration``: what an integration declares (capabilities, handlers, hooks), checked before it runs."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, TypeVar

from spacedrive.ipc._env import LaunchEnvironment
from spacedrive.ipc._errors import ConfigurationError, InvalidParams
from spacedrive.ipc._handshake import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    Capability,
    VersionRange,
    validate_capability,
)
from spacedrive.ipc._methods import capability_of_method, required_methods

from ._context import Session
from ._errors import DeclarationError
from ._handlers import Handler, HandlerFunc, make_handler
from ._runner import (
    EXIT_TIMEOUT,
    MAX_SHUTDOWN_GRACE_PERIOD,
    SHUTDOWN_GRACE_PERIOD,
    Runner,
    connect,
    exit_within,
)

__all__ = ["Integration", "SessionHook"]

SessionHook = Callable[[Session], Awaitable[None]]
_F = TypeVar("_F", bound=HandlerFunc)
_H = TypeVar("_H", bound=SessionHook)


class Integration:
    """An integration: its identity, capabilities and handlers.

    ::

        app = Integration("hello", name="Hello", version="1.0.0")
        app.capability(FileTypeHandler(extensions=["txt"], mime_types=["text/plain"],
                                       processing_modes=["metadata"]))

        @app.method("filetype.extract_metadata")
        async def extract(ctx: Context, path: str) -> dict[str, Any]:
            return {"metadata": {"lines": 3}}

        app.run()

    ``method`` checks a handler against its method at once; ``check`` (called by ``run``
    before it connects) checks handlers against the declared capabilities: a handler for a
    method no declared capability has, or a required method without a handler, is a
    ``DeclarationError`` naming the integration and the method.

    ``shutdown_grace_period`` is how long requests still running when the core asks for
    ``shutdown`` may go on before they are cancelled (at most ``MAX_SHUTDOWN_GRACE_PERIOD``:
    the core waits 5 s for the answer to ``shutdown``).
    """

    def __init__(
        self,
        id: str,
        *,
        name: str | None = None,
        version: str = "0.0.0",
        protocol_versions: VersionRange | None = None,
        shutdown_grace_period: float = SHUTDOWN_GRACE_PERIOD,
    ) -> None:
        if not id:
            raise ValueError("an integration needs an id")
        if not 0 <= shutdown_grace_period <= MAX_SHUTDOWN_GRACE_PERIOD:
            raise ValueError(
                f"shutdown_grace_period must be between 0 and {MAX_SHUTDOWN_GRACE_PERIOD} s, "
                f"not {shutdown_grace_period}"
            )
        self.shutdown_grace_period = shutdown_grace_period
        self.id = id
        self.name = name or id
        self.version = version
        self.protocol_versions = protocol_versions or VersionRange(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX)
        self._capabilities: list[Capability] = []
        self._handlers: dict[str, Handler] = {}
        self.initialize_hooks: list[SessionHook] = []
        self.shutdown_hooks: list[SessionHook] = []

    @property
    def capabilities(self) -> list[Capability]:
        return list(self._capabilities)

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return dict(self._handlers)

    def capability(self, capability: Capability) -> Capability:
        """Declare ``capability`` (validated field by field); returns it."""
        try:
            capability = validate_capability(capability)
        except InvalidParams as exc:
            raise DeclarationError(self.id, exc.message) from None
        kind = type(capability).__name__
        if any(type(declared) is type(capability) for declared in self._capabilities):
            raise DeclarationError(self.id, f"the {kind} capability is declared twice")
        self._capabilities.append(capability)
        return capability

    def method(self, name: str) -> Callable[[_F], _F]:
        """Decorator: ``func`` answers the capability method ``name`` (``"storage.list"``)."""

        def register(func: _F) -> _F:
            self.add_handler(name, func)
            return func

        return register

    def add_handler(self, name: str, func: HandlerFunc) -> None:
        """Register ``func`` (e.g. a bound method) for ``name``; checked against the method at once."""
        if name in self._handlers:
            raise DeclarationError(self.id, "two handlers for this method", method=name)
        self._handlers[name] = make_handler(self.id, name, func)

    def on_initialize(self, hook: _H) -> _H:
        """Decorator: ``async def hook(session)`` runs before ``initialize`` is answered.

        Raise ``ConfigurationError`` from it to refuse an invalid configuration. It must not
        call the core (``session.core``) except with ``ping``: the core accepts calls only once
        it sent ``initialized`` (``UsageError``). It counts against the core's 10 s handshake.
        """
        self.initialize_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: _H) -> _H:
        """Decorator: ``async def hook(session)`` runs when the core asks for ``shutdown``.

        It runs once, after every request received before ``shutdown`` was answered (it
        finished, or was cancelled and answered ``RequestCancelled``) and before ``shutdown``
        itself is answered. An exception is logged; the other hooks still run.
        """
        self.shutdown_hooks.append(hook)
        return hook

    def check(self) -> None:
        """``DeclarationError`` unless every handler and every required method match the capabilities."""
        if not self._capabilities:
            raise DeclarationError(self.id, "no capability is declared: call app.capability(...)")
        declared = {type(capability).__name__ for capability in self._capabilities}
        for method in self._handlers:
            owner = capability_of_method(method)
            if owner not in declared:
                raise DeclarationError(
                    self.id,
                    f"a handler is declared, but the method belongs to {owner}, which is not "
                    f"declared (declared: {', '.join(sorted(declared))})",
                    method=method,
                )
        for capability in self._capabilities:
            for method in required_methods(capability):
                if method not in self._handlers:
                    kind = type(capability).__name__
                    raise DeclarationError(self.id, f"{kind} requires a handler for it", method=method)

    async def serve(self, environ: Mapping[str, str] | None = None) -> int:
        """Check, connect as ``environ`` (default: ``os.environ``) says, serve; the exit status."""
        self.check()
        env = LaunchEnvironment.from_environ(os.environ if environ is None else environ)
        return await self._serve(env)

    async def _serve(self, env: LaunchEnvironment) -> int:
        runner = Runner(self, transport=env.address.kind)
        await connect(runner.connection, env)
        return await runner.serve()

    async def _main(self, env: LaunchEnvironment) -> int:
        """``run``'s session: a failed connection is status 1, and the process ends promptly."""
        exit_soon = exit_within(EXIT_TIMEOUT, self.id)

        def session_ended(status: int) -> None:
            if status != 0:  # a line for the core's log: $/log may be gone with the connection
                print(f"{self.id}: {runner.end_reason}: exit status {status}", file=sys.stderr, flush=True)
            exit_soon(status)

        runner = Runner(self, transport=env.address.kind, on_session_end=session_ended)
        try:
            await connect(runner.connection, env)
        except OSError as exc:
            print(f"{self.id}: cannot connect to the core at {env.address}: {exc}", file=sys.stderr)
            return 1
        return await runner.serve()

    def run(self, *, log_level: int | str | None = logging.INFO) -> NoReturn:
        """Run the integration until the core says ``exit`` or the connection ends; then exit.

        Checks the declarations first (``DeclarationError`` before any connection). The exit
        status (docs/protocol.md §4.5) is 0 once ``shutdown`` was answered (then ``exit``, or
        the end of the connection); 1 after ``exit`` or the end of the connection without
        ``shutdown``, after a protocol error, or if the connection failed; 2 if the launch
        environment is missing (the program was not started by the core). The process exits at
        most ``EXIT_TIMEOUT`` s after the session ended, even if a handler ignores cancellation.
        ``log_level`` sets the root logger's level (records go to the core as ``$/log``).
        """
        self.check()
        try:
            env = LaunchEnvironment.from_environ(os.environ)
        except ConfigurationError as exc:
            print(f"{self.id}: {exc.message}", file=sys.stderr)
            sys.exit(2)
        if log_level is not None:
            logging.getLogger().setLevel(log_level)
        sys.exit(asyncio.run(self._main(env)))

    def __repr__(self) -> str:
        kinds = [type(capability).__name__ for capability in self._capabilities]
        return f"Integration({self.id!r}, capabilities={kinds}, methods={sorted(self._handlers)})"
