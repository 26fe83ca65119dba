"""The handshake of docs/protocol.md §4, typed: ``initialize`` params and result, capabilities, features.

Sans-IO: models, validation and negotiation, no connection. The core sends
``InitializeParams``; the integration answers ``InitializeResult`` (or ``ProtocolVersionMismatch``)
and the core confirms with the ``initialized`` notification::

    params = InitializeParams(protocol_versions=VersionRange(1, 1), core=PeerInfo("spacedrive", "0.1.0"),
                              integration_id="webdav")
    wire = to_wire(params)                          # a dict for Connection.request
    params = parse_initialize_params(wire)          # the peer's side: InvalidParams naming the field
    version = negotiate_version(params.protocol_versions, VersionRange(1, 1))

Every model tolerates unknown fields (a newer peer may add some) and encodes with the
``snake_case`` keys of the wire. A capability is a tagged union on ``type``: its class name.
Validation of what a peer sent raises ``InvalidParams`` whose message and ``data["field"]``
name the offending field (``protocol_versions.min``, ``capabilities[0].type``, ...).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec
from msgspec import Struct, field

from ._env import TransportKind
from ._errors import InvalidParams, ProtocolVersionMismatch
from ._streams import DEFAULT_INITIAL_WINDOW

__all__ = [
    "AUTH_METHODS",
    "PROCESSING_MODES",
    "PROTOCOL_VERSION_MAX",
    "PROTOCOL_VERSION_MIN",
    "AuthMethod",
    "Capability",
    "ContentProcessor",
    "Features",
    "FileSystemAccess",
    "FileTypeHandler",
    "InitializeParams",
    "InitializeResult",
    "LocationProvider",
    "PeerInfo",
    "Permissions",
    "ProcessingMode",
    "SearchProvider",
    "StreamsFeature",
    "ThumbnailGenerator",
    "VersionRange",
    "check_accepted_features",
    "negotiate_features",
    "negotiate_version",
    "parse_initialize_params",
    "parse_initialize_result",
    "supported_features",
    "to_wire",
    "validate_capability",
]

PROTOCOL_VERSION_MIN: Final = 1
"""The lowest protocol version this implementation speaks."""
PROTOCOL_VERSION_MAX: Final = 1
"""The highest protocol version this implementation speaks (``SPACEDRIVE_PROTOCOL``)."""

AuthMethod: TypeAlias = Literal["OAuth2", "ApiKey", "Basic", "None", "Custom"]
ProcessingMode: TypeAlias = Literal["metadata", "thumbnail", "validate"]
AUTH_METHODS: Final[tuple[AuthMethod, ...]] = ("OAuth2", "ApiKey", "Basic", "None", "Custom")
PROCESSING_MODES: Final[tuple[ProcessingMode, ...]] = ("metadata", "thumbnail", "validate")


class _Model(Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Base of the handshake models: immutable, keyword construction, unknown fields ignored."""


class VersionRange(Struct, frozen=True, forbid_unknown_fields=False):
    """An inclusive range of protocol versions, ``{"min": 1, "max": 1}``."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1 or self.max < self.min:
            raise ValueError(f"a version range needs 1 <= min <= max, not {self.min}..{self.max}")

    def __str__(self) -> str:
        return f"{self.min}..{self.max}"


class PeerInfo(Struct, frozen=True, forbid_unknown_fields=False):
    """Who is at the other end: ``{"name", "version"}``."""

    name: str
    version: str


class FileSystemAccess(_Model, frozen=True):
    """Paths the integration may read and write (granted by the manifest)."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)


class Permissions(_Model, frozen=True):
    """What the core granted the integration (its manifest's ``permissions``, as approved)."""

    network_access: list[str] = field(default_factory=list)
    file_system_access: FileSystemAccess = field(default_factory=FileSystemAccess)
    core_apis: list[str] = field(default_factory=list)
    requires_credentials: bool = False
    max_memory_mb: int | None = None
    max_cpu_percent: int | None = None


class StreamsFeature(_Model, frozen=True):
    """Binary stream frames: the bytes a producer may send before the consumer grants more."""

    initial_window: int

    def __post_init__(self) -> None:
        if self.initial_window < 1:
            raise ValueError(f"initial_window must be positive, not {self.initial_window}")


class Features(_Model, frozen=True):
    """Optional protocol features; in a result, the subset both sides use.

    ``streams`` absent (``null``) means no stream frames; ``compression`` lists codecs (``"zstd"``)
    in the offerer's order of preference; ``fd_passing`` is file-descriptor passing on Unix sockets.
    """

    streams: StreamsFeature | None = None
    compression: list[str] = field(default_factory=list)
    fd_passing: bool = False


# -- capabilities (docs/protocol.md §4, "Capabilities") ---------------------------------------


class _CapabilityBase(_Model, frozen=True, tag_field="type", tag=True):
    """A capability: the ``type`` tag is the class name."""


class LocationProvider(_CapabilityBase, frozen=True):
    supported_protocols: list[str]
    auth_methods: list[AuthMethod]


class FileTypeHandler(_CapabilityBase, frozen=True):
    extensions: list[str]
    mime_types: list[str]
    processing_modes: list[ProcessingMode]


class ContentProcessor(_CapabilityBase, frozen=True):
    input_types: list[str]
    output_formats: list[str]


class SearchProvider(_CapabilityBase, frozen=True):
    query_languages: list[str]
    result_types: list[str]


class ThumbnailGenerator(_CapabilityBase, frozen=True):
    supported_formats: list[str]
    output_formats: list[str]


Capability: TypeAlias = (
    LocationProvider | FileTypeHandler | ContentProcessor | SearchProvider | ThumbnailGenerator
)
"""One of the five capability kinds (a tagged union on ``type``)."""


# -- initialize --------------------------------------------------------------------------------


class InitializeParams(_Model, frozen=True):
    """The params of ``initialize`` (core → integration)."""

    protocol_versions: VersionRange
    core: PeerInfo
    integration_id: str
    permissions: Permissions = field(default_factory=Permissions)
    config: dict[str, Any] = field(default_factory=dict)
    features: Features = field(default_factory=Features)


class InitializeResult(_Model, frozen=True):
    """The result of ``initialize`` (integration → core)."""

    protocol_version: int
    info: PeerInfo
    capabilities: list[Capability]
    features: Features = field(default_factory=Features)


_T = TypeVar("_T")
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def to_wire(model: Struct) -> dict[str, Any]:
    """``model`` as the JSON-ready dict that goes on the wire."""
    wire = msgspec.to_builtins(model)
    assert isinstance(wire, dict)
    return wire


def parse_initialize_params(params: object) -> InitializeParams:
    """The core's ``initialize`` params, validated; ``InvalidParams`` naming the bad field."""
    return _parse(params, InitializeParams, "initialize params")


def parse_initialize_result(result: object) -> InitializeResult:
    """The integration's ``initialize`` result, validated; ``InvalidParams`` naming the bad field."""
    return _parse(result, InitializeResult, "initialize result")


def validate_capability(capability: object) -> Capability:
    """``capability`` checked field by field (e.g. an unknown auth method); ``InvalidParams`` if wrong."""
    wire = msgspec.to_builtins(capability) if isinstance(capability, Struct) else capability
    return _parse(wire, Capability, "capability")  # type: ignore[arg-type]


def _parse(obj: object, kind: type[_T], what: str) -> _T:
    try:
        return msgspec.convert(obj, kind, strict=True)
    except msgspec.ValidationError as exc:
        reason = str(exc)
        name = _field_name(reason)
        where = f" (field `{name}`)" if name else ""
        data = {"field": name, "reason": reason}
        raise InvalidParams(f"invalid {what}{where}: {reason}", data=data) from None


def _field_name(reason: str) -> str:
    """The dotted field a msgspec validation message points at (``""`` for the whole object)."""
    at = _PATH.search(reason)
    path = at.group("path") if at else ""
    missing = _MISSING.search(reason)
    if missing:
        path = f"{path}.{missing.group('name')}"
    return path.lstrip(".")


# -- negotiation -------------------------------------------------------------------------------


def negotiate_version(core: VersionRange, integration: VersionRange) -> int:
    """The highest version in both ranges; ``ProtocolVersionMismatch`` naming both if none."""
    low, high = max(core.min, integration.min), min(core.max, integration.max)
    if low > high:
        raise ProtocolVersionMismatch(
            f"no protocol version in common: the core speaks versions {core}, "
            f"the integration speaks versions {integration}",
            data={"core": to_wire(core), "integration": to_wire(integration)},
        )
    return high


def negotiate_features(offered: Features, supported: Features) -> Features:
    """The features both sides use: what ``offered`` proposes and ``supported`` can do.

    The stream window is the smaller of the two; compression keeps the offerer's order.
    """
    streams = None
    if offered.streams is not None and supported.streams is not None:
        window = min(offered.streams.initial_window, supported.streams.initial_window)
        streams = StreamsFeature(initial_window=window)
    compression = [codec for codec in offered.compression if codec in supported.compression]
    return Features(
        streams=streams, compression=compression, fd_passing=offered.fd_passing and supported.fd_passing
    )


def supported_features(transport: TransportKind) -> Features:
    """Every feature this library implements on ``transport``: streams, zstd, and fd passing on Unix sockets.

    The core offers it and the SDK accepts from it (``negotiate_features``), so both sides use
    all of it unless a peer in another language implements less.
    """
    return Features(
        streams=StreamsFeature(initial_window=DEFAULT_INITIAL_WINDOW),
        compression=["zstd"],
        fd_passing=transport == "unix",
    )


def check_accepted_features(offered: Features, accepted: Features) -> None:
    """``InvalidParams`` naming the field if the peer accepted a feature that was not offered."""
    if accepted.streams is not None:
        if offered.streams is None:
            _refuse("features.streams", "streams were not offered")
        elif accepted.streams.initial_window > offered.streams.initial_window:
            _refuse("features.streams.initial_window", "larger than the window offered")
    extra = [codec for codec in accepted.compression if codec not in offered.compression]
    if extra:
        _refuse("features.compression", f"{extra} were not offered")
    if accepted.fd_passing and not offered.fd_passing:
        _refuse("features.fd_passing", "fd passing was not offered")


def _refuse(name: str, reason: str) -> None:
    message = f"invalid initialize result (field `{name}`): {reason}"
    raise InvalidParams(message, data={"field": name, "reason": reason})
