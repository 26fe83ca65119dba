r"""``SdPath``: the address of a file anywhere Spacedrive can reach.

Three kinds of address, three classes under one base:

* :class:`PhysicalSdPath`: a file on a device, by the device's UUID and an absolute POSIX path;
* :class:`CloudSdPath`: a file in a cloud service, by service name, an identifier within the
  service (an S3 bucket, a Google Drive drive or folder id, a WebDAV or SFTP host) and a path
  below that identifier;
* :class:`ContentSdPath`: a file by its content, whatever its location, by ``cas_id`` (16
  lowercase hex digits of the sampled BLAKE3 content identity).

Build them with :meth:`SdPath.physical`, :meth:`SdPath.cloud`, :meth:`SdPath.content`, or
:meth:`SdPath.parse`; turn them into URIs with ``str(p)`` or ``p.to_uri()``. Instances are
immutable, hashable, and equal when their addresses are equal.

URI grammar
===========

::

    physical = "sd://" device-id path
    content  = "sd://content/" cas-id
    cloud    = service "://" identifier path
    device-id  = 8HEXDIG "-" 4HEXDIG "-" 4HEXDIG "-" 4HEXDIG "-" 12HEXDIG
    cas-id     = 16( DIGIT / "a"-"f" )
    service    = lower *( lower / DIGIT / "+" / "." / "-" )   ; a registered cloud service
    identifier = 1*( pchar except "/" )                       ; percent-decoded, then opaque
    path       = *( "/" segment )                             ; empty means the root "/"

Examples: ``sd://0b6c.../home/me/My%20Files/r%C3%A9sum%C3%A9.pdf``,
``sd://content/0123456789abcdef``, ``s3://bucket/key/with/slashes``,
``gdrive://0AHd3.../Reports/2024``, ``sftp://me@host:22/srv/data``.

Encoding. A path is turned into bytes (UTF-8; characters ``\udc80``-``\udcff``, the way
Python holds the undecodable bytes of a POSIX file name, become those bytes again, as
``os.fsencode`` does), then every byte outside RFC 3986 ``pchar`` (letters, digits,
``-._~!$&'()*+,;=:@``) and ``/`` is written ``%XX`` with uppercase hex. So the URI of any
address is printable ASCII: spaces, ``#``, ``?``, ``%``, non-ASCII text and non-UTF-8 bytes all
round-trip through ``SdPath.parse(str(p)) == p``. Identifiers are encoded the same way, ``/``
included.

Parsing is a little more lenient than printing: it accepts raw spaces and raw non-ASCII
characters (as typed by a person), any case for the scheme, the ``content`` keyword and the
hex of a device id. It refuses, each with a message saying so: an empty string, no scheme, a
missing ``//``, an unknown scheme, a raw ``?`` or ``#`` (SdPath URIs have no query or fragment;
write ``%3F``, ``%23``), raw control characters, malformed ``%`` escapes, a missing or
malformed device id, a malformed cas_id, a cloud URI without identifier, ``..`` segments and
NUL bytes (also when percent-encoded).

Normalization. Paths are normalized on construction, as :class:`pathlib.PurePosixPath` does:
repeated slashes, ``.`` segments and a trailing slash are dropped. ``..`` is refused rather
than resolved, since resolving it correctly needs the file system (symbolic links). Paths
whose segments are empty, ``.`` or ``..`` (possible as S3 keys) are therefore not
addressable; a provider maps them. ``str(p)`` is the canonical URI: equal addresses have
equal URIs.

Cloud services. A scheme other than ``sd`` must be a registered cloud service: the built-in
:data:`BUILTIN_CLOUD_SERVICES`, plus those registered with :func:`register_cloud_service` (the
integration manager registers the ``supported_protocols`` of location providers).
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Self, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

from spacedrive.core.errors import InvalidSdPath

__all__ = [
    "BUILTIN_CLOUD_SERVICES",
    "CloudSdPath",
    "ContentSdPath",
    "PhysicalSdPath",
    "SdPath",
    "cloud_services",
    "is_cas_id",
    "register_cloud_service",
]

SD_SCHEME = "sd"
CONTENT_AUTHORITY = "content"
CAS_ID_LENGTH = 16

BUILTIN_CLOUD_SERVICES: frozenset[str] = frozenset(
    {"s3", "gdrive", "webdav", "webdavs", "sftp", "dropbox", "onedrive"}
)
# Schemes that name something else than a cloud service and so may not be registered as one.
_RESERVED_SCHEMES = frozenset({SD_SCHEME, CONTENT_AUTHORITY, "file", "http", "https", "data"})
_cloud_services: set[str] = set(BUILTIN_CLOUD_SERVICES)

_SERVICE_RE = re.compile(r"[a-z][a-z0-9+.-]*")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CAS_ID_RE = re.compile(r"[0-9a-f]{16}")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# RFC 3986 pchar minus the unreserved characters, which quote() never encodes.
_PCHAR_SAFE = "!$&'()*+,;=:@"
_MAX_URI_IN_MESSAGE = 200

_P = TypeVar("_P", bound="SdPath")


def register_cloud_service(name: str) -> None:
    """Allow ``name`` as a cloud service (URI scheme); registering a name twice is harmless."""
    _check_service_syntax(name)
    if name in _RESERVED_SCHEMES:
        raise InvalidSdPath(f"{name!r} is reserved and cannot name a cloud service")
    _cloud_services.add(name)


def cloud_services() -> frozenset[str]:
    """The cloud services (URI schemes) :meth:`SdPath.parse` and :meth:`SdPath.cloud` accept."""
    return frozenset(_cloud_services)


def is_cas_id(value: str) -> bool:
    """Whether ``value`` is a well-formed cas_id: 16 lowercase hex digits."""
    return _CAS_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class SdPath:
    """The address of a file: physical, cloud or content. See the module documentation."""

    kind: ClassVar[Literal["physical", "cloud", "content"]]

    def __post_init__(self) -> None:
        if type(self) is SdPath:
            raise TypeError("SdPath is abstract: use SdPath.physical, SdPath.cloud, SdPath.content or parse")

    # -- constructors ---------------------------------------------------------------------

    @staticmethod
    def physical(device_id: uuid.UUID | str, path: str | bytes | os.PathLike[str]) -> PhysicalSdPath:
        """The file at absolute POSIX ``path`` on device ``device_id``.

        ``path`` may be ``bytes`` (decoded as ``os.fsdecode`` does on POSIX: UTF-8 with
        surrogateescape) or a str holding surrogate-escaped bytes.
        """
        return PhysicalSdPath(_coerce_device_id(device_id), _coerce_path(path))

    @staticmethod
    def cloud(service: str, identifier: str, path: str = "/") -> CloudSdPath:
        """The file at ``path`` below ``identifier`` in cloud ``service``.

        ``path`` is relative to the identifier's root; a leading ``/`` is optional.
        """
        if not isinstance(path, str):
            raise InvalidSdPath(f"a cloud path must be a str, not {type(path).__name__}")
        return CloudSdPath(service, identifier, path if path.startswith("/") else "/" + path)

    @staticmethod
    def content(cas_id: str) -> ContentSdPath:
        """Any file whose content identity is ``cas_id``."""
        return ContentSdPath(cas_id)

    @staticmethod
    def parse(uri: str) -> SdPath:
        """Parse an SdPath URI (see the module documentation); raise :class:`InvalidSdPath`."""
        return _parse(uri)

    # -- common interface -------------------------------------------------------------------

    def to_uri(self) -> str:
        """The canonical URI of this address (printable ASCII)."""
        raise NotImplementedError

    def is_local(self, device_id: uuid.UUID | str) -> bool:
        """Whether this addresses a file on device ``device_id`` (only physical paths can)."""
        return False

    def __str__(self) -> str:
        return self.to_uri()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_uri()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class _HierarchicalSdPath(SdPath):
    """Shared path operations of physical and cloud addresses. ``path`` is set by subclasses."""

    @property
    def _path(self) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The last path segment; ``""`` for the root."""
        return self._path.rsplit("/", 1)[1]

    @property
    def parent(self) -> Self:
        """The containing folder; the root is its own parent (as in :mod:`pathlib`)."""
        head = self._path.rsplit("/", 1)[0]
        return self._with_path(head or "/")

    @property
    def parts(self) -> tuple[str, ...]:
        """The path segments, root excluded: ``()`` for the root."""
        return tuple(self._path.split("/")[1:]) if self._path != "/" else ()

    def join(self, name: str) -> Self:
        """This path with ``name`` appended; ``name`` may hold several ``/``-separated segments.

        ``name`` must be relative and must not contain ``..`` segments or NUL bytes.
        """
        if not isinstance(name, str):
            raise InvalidSdPath(f"join() takes a str, not {type(name).__name__}")
        if not name:
            raise InvalidSdPath("cannot join an empty name")
        if name.startswith("/"):
            raise InvalidSdPath(f"cannot join absolute path {name!r}: give a name relative to {self}")
        base = self._path.rstrip("/")
        return self._with_path(f"{base}/{name}")

    def _with_path(self, path: str) -> Self:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, repr=False)
class PhysicalSdPath(_HierarchicalSdPath):
    """A file on a device: the device's UUID and an absolute, normalized POSIX path."""

    kind: ClassVar[Literal["physical"]] = "physical"
    device_id: uuid.UUID
    path: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_id", _coerce_device_id(self.device_id))
        object.__setattr__(self, "path", _normalize_path(self.path, absolute=True))

    @property
    def _path(self) -> str:
        return self.path

    def _with_path(self, path: str) -> Self:
        return dataclasses.replace(self, path=path)

    def to_uri(self) -> str:
        return f"{SD_SCHEME}://{self.device_id}{_encode(self.path, _PCHAR_SAFE + '/')}"

    def is_local(self, device_id: uuid.UUID | str) -> bool:
        return self.device_id == _coerce_device_id(device_id)

    def local_path(self) -> Path:
        """The path as a :class:`pathlib.Path` of this machine (check :meth:`is_local` first)."""
        return Path(self.path)

    def path_bytes(self) -> bytes:
        """The path as the bytes the file system holds (what ``os.fsencode`` gives on POSIX)."""
        return _to_bytes(self.path)


@dataclass(frozen=True, slots=True, repr=False)
class CloudSdPath(_HierarchicalSdPath):
    """A file in a cloud service: service name, identifier within it, normalized path below."""

    kind: ClassVar[Literal["cloud"]] = "cloud"
    service: str
    identifier: str
    path: str = "/"

    def __post_init__(self) -> None:
        _check_service(self.service)
        if not isinstance(self.identifier, str):
            raise InvalidSdPath(f"a cloud identifier must be a str, not {type(self.identifier).__name__}")
        if not self.identifier:
            raise InvalidSdPath(
                f"{self.service} address has no identifier (the bucket, drive, folder id or host)"
            )
        if "\0" in self.identifier:
            raise InvalidSdPath(f"cloud identifier {self.identifier!r} contains a NUL byte")
        object.__setattr__(self, "identifier", _canonical_text(self.identifier, "cloud identifier"))
        object.__setattr__(self, "path", _normalize_path(self.path, absolute=True))

    @property
    def _path(self) -> str:
        return self.path

    def _with_path(self, path: str) -> Self:
        return dataclasses.replace(self, path=path)

    def to_uri(self) -> str:
        identifier = _encode(self.identifier, _PCHAR_SAFE)
        return f"{self.service}://{identifier}{_encode(self.path, _PCHAR_SAFE + '/')}"


@dataclass(frozen=True, slots=True, repr=False)
class ContentSdPath(SdPath):
    """Any file with a given content identity (``cas_id``: 16 lowercase hex digits)."""

    kind: ClassVar[Literal["content"]] = "content"
    cas_id: str

    def __post_init__(self) -> None:
        _check_cas_id(self.cas_id)

    def to_uri(self) -> str:
        return f"{SD_SCHEME}://{CONTENT_AUTHORITY}/{self.cas_id}"


# -- validation helpers ---------------------------------------------------------------------


def _check_service_syntax(service: object) -> None:
    if not isinstance(service, str):
        raise InvalidSdPath(f"a cloud service name must be a str, not {type(service).__name__}")
    if not _SERVICE_RE.fullmatch(service):
        raise InvalidSdPath(
            f"invalid cloud service name {service!r}: use a lowercase letter, then lowercase "
            "letters, digits, '+', '.' or '-'"
        )


def _check_service(service: str) -> None:
    _check_service_syntax(service)
    if service == SD_SCHEME:
        raise InvalidSdPath("'sd' is not a cloud service: use SdPath.physical or SdPath.content")
    if service not in _cloud_services:
        raise InvalidSdPath(
            f"unknown cloud service {service!r} (known: {', '.join(sorted(_cloud_services))})"
        )


def _check_cas_id(cas_id: object) -> None:
    if not isinstance(cas_id, str):
        raise InvalidSdPath(f"a cas_id must be a str, not {type(cas_id).__name__}")
    if len(cas_id) != CAS_ID_LENGTH:
        raise InvalidSdPath(
            f"cas_id {cas_id!r} has {len(cas_id)} characters; a cas_id is {CAS_ID_LENGTH} hex digits"
        )
    if not _CAS_ID_RE.fullmatch(cas_id):
        if _CAS_ID_RE.fullmatch(cas_id.lower()):
            raise InvalidSdPath(f"cas_id {cas_id!r} has uppercase letters; a cas_id is lowercase hex")
        raise InvalidSdPath(f"cas_id {cas_id!r} is not hexadecimal (0-9, a-f)")


def _coerce_device_id(device_id: object) -> uuid.UUID:
    if isinstance(device_id, uuid.UUID):
        return device_id
    if isinstance(device_id, str):
        if not device_id:
            raise InvalidSdPath("missing device id")
        if _UUID_RE.fullmatch(device_id):
            return uuid.UUID(device_id)
        raise InvalidSdPath(f"device id {device_id!r} is not a UUID (8-4-4-4-12 hex digits)")
    raise InvalidSdPath(f"a device id must be a uuid.UUID or str, not {type(device_id).__name__}")


def _coerce_path(path: object) -> str:
    if isinstance(path, bytes):
        return path.decode("utf-8", "surrogateescape")
    if isinstance(path, str):
        return path
    if isinstance(path, os.PathLike):
        value = os.fspath(path)
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, str):
            return value.replace(os.sep, "/") if os.sep != "/" else value
    raise InvalidSdPath(f"a path must be a str, bytes or path-like object, not {type(path).__name__}")


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _canonical_text(text: str, what: str) -> str:
    """``text`` as the str that its bytes decode to, so equal bytes give equal strs."""
    try:
        raw = _to_bytes(text)
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise InvalidSdPath(
            f"{what} {text!r} contains the lone surrogate U+{ord(bad):04X}, which is neither a "
            "character nor an escaped byte"
        ) from None
    return raw.decode("utf-8", "surrogateescape")


def _normalize_path(path: object, *, absolute: bool) -> str:
    if not isinstance(path, str):
        raise InvalidSdPath(f"a path must be a str, not {type(path).__name__}")
    if not path:
        raise InvalidSdPath("empty path: an SdPath path is absolute (use '/' for the root)")
    if "\0" in path:
        raise InvalidSdPath(f"path {path!r} contains a NUL byte")
    if absolute and not path.startswith("/"):
        raise InvalidSdPath(f"relative path {path!r}: an SdPath path must be absolute (start with '/')")
    path = _canonical_text(path, "path")
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidSdPath(f"path {path!r} contains a '..' segment; SdPath paths cannot go up")
    return "/" + "/".join(segments)


def _encode(text: str, safe: str) -> str:
    return quote_from_bytes(_to_bytes(text), safe=safe)


# -- parsing --------------------------------------------------------------------------------


def _parse(uri: str) -> SdPath:
    if not isinstance(uri, str):
        raise TypeError(f"SdPath.parse() takes a str, not {type(uri).__name__}")

    def fail(problem: str) -> InvalidSdPath:
        shown = uri if len(uri) <= _MAX_URI_IN_MESSAGE else uri[:_MAX_URI_IN_MESSAGE] + "..."
        return InvalidSdPath(f"invalid SdPath URI {shown!r}: {problem}")

    if not uri:
        raise InvalidSdPath("invalid SdPath URI: the URI is empty")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        head, colon, _ = uri.partition(":")
        if colon and _SERVICE_RE.fullmatch(head.lower()):
            raise fail(f"missing '//' after '{head}:' (expected '{head}://...')")
        if uri.startswith("/"):
            raise fail("this is a local path, not a URI; expected sd://<device-id>/<path>")
        raise fail("no scheme; expected sd://<device-id>/<path>, sd://content/<cas_id> or <service>://...")
    if not scheme:
        raise fail("the scheme before '://' is empty")
    if not _SERVICE_RE.fullmatch(scheme.lower()):
        raise fail(f"invalid scheme {scheme!r}")
    scheme = scheme.lower()
    if scheme != SD_SCHEME and scheme not in _cloud_services:
        known = ", ".join(sorted(_cloud_services))
        raise fail(f"unknown scheme {scheme!r}; expected 'sd' or a cloud service ({known})")
    for char, code in (("?", "%3F"), ("#", "%23")):
        index = rest.find(char)
        if index >= 0:
            raise fail(
                f"raw {char!r} at position {len(scheme) + 3 + index}: SdPath URIs have no query or "
                f"fragment; percent-encode it as {code}"
            )
    control = _CONTROL_RE.search(rest)
    if control:
        raise fail(
            f"raw control character U+{ord(control.group()):04X} at position "
            f"{len(scheme) + 3 + control.start()}; percent-encode it"
        )
    bad = _BAD_ESCAPE_RE.search(rest)
    if bad:
        snippet = rest[bad.start() : bad.start() + 3]
        raise fail(f"malformed percent-escape {snippet!r}: '%' must be followed by two hex digits")

    authority, slash, raw_path = rest.partition("/")
    raw_path = slash + raw_path
    if scheme == SD_SCHEME:
        if not authority:
            raise fail("missing device id after 'sd://' (expected sd://<device-id>/<path>)")
        if authority.lower() == CONTENT_AUTHORITY:
            cas_id = raw_path.removeprefix("/")
            if not cas_id:
                raise fail("missing cas_id after 'sd://content/'")
            if "/" in cas_id:
                raise fail("unexpected path after the cas_id; expected sd://content/<cas_id>")
            return _build(fail, ContentSdPath, _decode(cas_id, "cas_id", fail))
        if not _UUID_RE.fullmatch(authority):
            raise fail(f"device id {authority!r} is not a UUID (8-4-4-4-12 hex digits)")
        return _build(fail, PhysicalSdPath, uuid.UUID(authority), _decode(raw_path, "path", fail) or "/")
    identifier = _decode(authority, "identifier", fail)
    if not identifier:
        raise fail(f"missing identifier (bucket, drive, folder id or host) after '{scheme}://'")
    return _build(fail, CloudSdPath, scheme, identifier, _decode(raw_path, "path", fail) or "/")


_Fail = Callable[[str], InvalidSdPath]


def _build(fail: _Fail, cls: Callable[..., _P], *args: object) -> _P:
    """``cls(*args)``, with a construction error reported as a problem of the URI."""
    try:
        return cls(*args)
    except InvalidSdPath as exc:
        raise fail(str(exc)) from None


def _decode(text: str, what: str, fail: _Fail) -> str:
    try:
        raw = unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise fail(f"the {what} contains the lone surrogate U+{ord(bad):04X}") from None
    if b"\0" in raw:
        raise fail(f"the {what} contains a NUL byte (%00)")
    return raw.decode("utf-8", "surrogateescape")
