"""A handler checked against its method's spec when it is declared, and bound to params when called.

As with pluggy's hook implementations, a handler may take a subset of its method's params, so
a new optional param in a later protocol version never breaks it::

    @app.method("storage.list")
    async def list_folder(ctx, path, cursor=None):   # no `limit`: it is never passed
        ...

Declaration rules (each violation is a ``DeclarationError`` naming integration and method):
an ``async def``; first parameter the context; every other parameter one of the method's
params (or ``**kwargs``, which receives them all); a param the protocol marks optional must
have a default. Call rule: the params must be a JSON object holding every required param
(otherwise ``InvalidParams`` naming it); params the handler does not take are dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from spacedrive.ipc._errors import InvalidParams
from spacedrive.ipc._jsonrpc import Params
from spacedrive.ipc._methods import RESERVED_METHODS, MethodSpec, method_spec

from ._errors import DeclarationError

__all__ = ["Handler", "HandlerFunc", "make_handler"]

HandlerFunc: TypeAlias = Callable[..., Awaitable[Any]]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True, slots=True)
class Handler:
    """A declared handler, with what it accepts."""

    spec: MethodSpec
    func: HandlerFunc
    accepts: frozenset[str]
    takes_all: bool

    @property
    def method(self) -> str:
        return self.spec.name

    def bind(self, params: Params) -> dict[str, Any]:
        """The keyword arguments for ``func`` (after the context); ``InvalidParams`` if wrong."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams(f"the params of {self.method} must be an object", data={"field": ""})
        for name in self.spec.required:
            if name not in params:
                raise InvalidParams(f"{self.method}: missing param `{name}`", data={"field": name})
        if self.takes_all:
            return params
        return {name: value for name, value in params.items() if name in self.accepts}


def make_handler(integration_id: str, method: str, func: HandlerFunc) -> Handler:
    """Check ``func`` as the handler of ``method``; ``DeclarationError`` naming both if wrong."""

    def fail(message: str) -> DeclarationError:
        return DeclarationError(integration_id, message, method=method)

    spec = _spec_of(method, fail)
    if not inspect.iscoroutinefunction(func):
        raise fail(f"the handler {_name(func)} must be an `async def` function")
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].kind not in _POSITIONAL:
        raise fail(f"the handler {_name(func)} must take the context as its first parameter")
    accepts: set[str] = set()
    takes_all = False
    for param in params[1:]:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_all = True
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise fail(f"the handler {_name(func)} cannot take *{param.name}: params are passed by name")
        else:
            _check_param(spec, param, fail, _name(func))
            accepts.add(param.name)
    return Handler(spec, func, frozenset(accepts), takes_all)


def _spec_of(method: str, fail: Callable[[str], DeclarationError]) -> MethodSpec:
    if method in RESERVED_METHODS or method.startswith("$/"):
        raise fail("this method belongs to the protocol itself; the SDK answers it")
    spec = method_spec(method)
    if spec is None:
        raise fail("no capability has this method (see docs/protocol.md, section 5)")
    return spec


def _check_param(
    spec: MethodSpec, param: inspect.Parameter, fail: Callable[[str], DeclarationError], func: str
) -> None:
    if param.name not in spec.params:
        known = ", ".join(spec.params) or "none"
        raise fail(f"the handler {func} takes `{param.name}`, which is not a param of it (params: {known})")
    if param.name in spec.optional and param.default is inspect.Parameter.empty:
        raise fail(f"the handler {func} must give `{param.name}` a default: the param is optional")


def _name(func: object) -> str:
    return getattr(func, "__qualname__", None) or repr(func)
