"""The capability methods of docs/protocol.md §5: names, params, and which ones are required.

Both sides use this table: the SDK checks an integration's handlers against it before it
connects, and binds incoming params to handler arguments; the core knows which methods a
capability answers. Params are named (a JSON object); a method's result is not modelled here.

Required methods: a ``LocationProvider`` answers ``storage.list``, ``storage.stat`` and
``storage.read``; a ``FileTypeHandler`` answers the method of each of its ``processing_modes``;
``ContentProcessor``, ``SearchProvider`` and ``ThumbnailGenerator`` answer ``content.process``,
``search.query`` and ``thumbnail.generate``. Every other method is optional: the core gets
``MethodNotFound`` for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._handshake import (
    Capability,
    ContentProcessor,
    FileTypeHandler,
    LocationProvider,
    SearchProvider,
    ThumbnailGenerator,
)

__all__ = [
    "CAPABILITY_METHODS",
    "RESERVED_METHODS",
    "MethodSpec",
    "capability_of_method",
    "method_spec",
    "required_methods",
]

RESERVED_METHODS: Final = frozenset({"initialize", "initialized", "shutdown", "exit", "ping"})
"""Methods of the protocol itself (with every ``$/...`` method): no capability may define them."""


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One capability method: its name and its params (``required`` ones must be present)."""

    name: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def params(self) -> tuple[str, ...]:
        return self.required + self.optional


def _specs(*specs: MethodSpec) -> dict[str, MethodSpec]:
    return {spec.name: spec for spec in specs}


CAPABILITY_METHODS: Final[Mapping[str, Mapping[str, MethodSpec]]] = {
    "LocationProvider": _specs(
        MethodSpec("location.list_locations", (), ("credential",)),
        MethodSpec("location.create_location", ("path",), ("credential",)),
        MethodSpec("storage.list", ("path",), ("cursor", "limit")),
        MethodSpec("storage.stat", ("path",)),
        MethodSpec("storage.read", ("path",), ("offset", "length")),
        MethodSpec("storage.write", ("path", "stream"), ("size", "overwrite")),
        MethodSpec("storage.delete", ("path",), ("recursive",)),
        MethodSpec("storage.mkdir", ("path",)),
        MethodSpec("storage.changes", (), ("cursor",)),
        MethodSpec("storage.quota"),
    ),
    "FileTypeHandler": _specs(
        MethodSpec("filetype.extract_metadata", ("path",)),
        MethodSpec("filetype.generate_thumbnail", ("path", "size")),
        MethodSpec("filetype.validate", ("path",)),
    ),
    "ContentProcessor": _specs(
        MethodSpec("content.process", ("path", "input_type", "output_format"), ("options",)),
    ),
    "SearchProvider": _specs(
        MethodSpec("search.query", ("query", "context")),
        MethodSpec("search.index", ("items",)),
        MethodSpec("search.suggest", ("partial",), ("limit",)),
    ),
    "ThumbnailGenerator": _specs(
        MethodSpec("thumbnail.generate", ("path", "size"), ("format",)),
    ),
}
"""Capability type → method name → spec."""

_MODE_METHODS: Final = {
    "metadata": "filetype.extract_metadata",
    "thumbnail": "filetype.generate_thumbnail",
    "validate": "filetype.validate",
}
_BY_METHOD: Final = {name: kind for kind, methods in CAPABILITY_METHODS.items() for name in methods}


def method_spec(method: str) -> MethodSpec | None:
    """The spec of a capability method, ``None`` if no capability has ``method``."""
    kind = _BY_METHOD.get(method)
    return None if kind is None else CAPABILITY_METHODS[kind][method]


def capability_of_method(method: str) -> str | None:
    """The capability type that has ``method`` (``"LocationProvider"``), or ``None``."""
    return _BY_METHOD.get(method)


def required_methods(capability: Capability) -> tuple[str, ...]:
    """The methods an integration declaring ``capability`` must answer."""
    if isinstance(capability, LocationProvider):
        return ("storage.list", "storage.stat", "storage.read")
    if isinstance(capability, FileTypeHandler):
        return tuple(dict.fromkeys(_MODE_METHODS[mode] for mode in capability.processing_modes))
    if isinstance(capability, ContentProcessor):
        return ("content.process",)
    if isinstance(capability, SearchProvider):
        return ("search.query",)
    assert isinstance(capability, ThumbnailGenerator)
    return ("thumbnail.generate",)
