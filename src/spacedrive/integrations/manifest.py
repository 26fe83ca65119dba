"""The integration manifest: ``manifest.json`` (and ``config-schema.json``, ``permissions.json``).

A manifest is validated once, when the integration is registered (installed, discovered,
packed), never deep inside the manager: first against ``manifest.schema.json`` (kept beside
this module), then by code for what a schema cannot say. Every problem is collected, not only
the first, and each names the file, the field (a JSON path such as ``permissions.core_apis[2]``)
and what was expected; :class:`~spacedrive.integrations.errors.ManifestError` carries them.

Fields (see ``manifest.schema.json`` for the exact rules):

* ``id`` (a slug ``^[a-z0-9][a-z0-9_-]{0,63}$``), ``name``, ``version`` (semver 2.0),
  ``description``, ``author``, ``homepage`` (an http(s) URL, optional);
* ``capabilities``: at least one of the five kinds of ``docs/protocol.md`` §4, each
  ``{"type": "LocationProvider", "supported_protocols": [...], "auth_methods": [...]}``;
* how to run it, exactly one of: ``executable_path`` (relative to the package) or
  ``command``, an argv list: its first element is an interpreter looked up in ``PATH``
  (``python3``, ``node``) or a path inside the package; every argument that is a path (it
  contains ``/``, or names a file of the package) must stay inside the package, and at least
  one element must name a file of the package: ``["python3", "-c", "..."]`` is refused;
* ``config_schema``: a JSON Schema for the integration's config, itself checked against its
  metaschema (draft 2020-12 unless ``$schema`` names another); default ``{"type": "object"}``;
* ``permissions``: ``network_access`` (lowercase domains, ``*.`` wildcards, optional
  ``:port``), ``file_system_access`` ``{"read": [...], "write": [...]}`` (absolute paths or
  ``~/``-relative ones, expanded at launch in the user's home; no ``..``), ``max_memory_mb``,
  ``max_cpu_percent`` (1-100), ``max_file_descriptors``, ``max_execution_time_s``,
  ``requires_credentials``, ``core_apis`` (from :data:`CORE_APIS`) and ``require`` (the
  protections the integration insists on, such as ``filesystem`` or ``network``: stored here,
  enforced by the sandbox). Limits left out mean "the core's defaults"; all default to nothing
  granted;
* ``protocol``: ``{"min": 1, "max": 1}`` (the default), the protocol versions spoken;
* ``activation_events`` (``onStartup``, ``onSearch``, ``onLocation:<protocol>`` (which a
  LocationProvider capability must list), ``onFileType:.<ext>``, ``onMimeType:<type>``),
  ``pool_size`` (1-64, default 1) and ``idle_timeout_s`` (``null``: the core's default).

Unknown fields are errors (a typo must not silently drop a permission), except ``x-``
prefixed extensions, which are ignored.

**Precedence.** When the package holds ``permissions.json`` or ``config-schema.json``, that
file *replaces* the manifest's ``permissions`` or ``config_schema`` field as a whole (no
merging); errors in it name that file, with paths relative to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import msgspec

from spacedrive.integrations._schema import SchemaViolation, json_path, metaschema_violations, violations
from spacedrive.integrations.errors import ManifestError, Problem

__all__ = [
    "CAPABILITY_TYPES",
    "CONFIG_SCHEMA_FILE",
    "CORE_APIS",
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "PERMISSIONS_FILE",
    "Capability",
    "ContentProcessor",
    "FileSystemAccess",
    "FileTypeHandler",
    "LocationProvider",
    "Manifest",
    "Permissions",
    "ProtocolRange",
    "SearchProvider",
    "ThumbnailGenerator",
    "decode_json",
    "load_manifest",
    "manifest_schema",
    "parse_manifest",
]

MANIFEST_FILE: Final = "manifest.json"
CONFIG_SCHEMA_FILE: Final = "config-schema.json"
PERMISSIONS_FILE: Final = "permissions.json"
#: Largest manifest (or config-schema.json, permissions.json) read, in bytes.
MAX_MANIFEST_BYTES: Final = 1024 * 1024

CORE_APIS: Final = (
    "ReadLocations",
    "WriteLocations",
    "ReadFiles",
    "WriteFiles",
    "CreateJobs",
    "AccessEvents",
    "ManageCredentials",
)
CAPABILITY_TYPES: Final = (
    "LocationProvider",
    "FileTypeHandler",
    "ContentProcessor",
    "SearchProvider",
    "ThumbnailGenerator",
)

_INTERPRETER = re.compile(r"^[A-Za-z0-9._+-]+$")
_TOP = "(top level)"


# --- the model -------------------------------------------------------------------------------


class LocationProvider(msgspec.Struct, frozen=True, tag="LocationProvider", tag_field="type"):
    supported_protocols: tuple[str, ...]
    auth_methods: tuple[Literal["OAuth2", "ApiKey", "Basic", "None", "Custom"], ...]


class FileTypeHandler(msgspec.Struct, frozen=True, tag="FileTypeHandler", tag_field="type"):
    extensions: tuple[str, ...]
    mime_types: tuple[str, ...]
    processing_modes: tuple[Literal["metadata", "thumbnail", "validate"], ...]


class ContentProcessor(msgspec.Struct, frozen=True, tag="ContentProcessor", tag_field="type"):
    input_types: tuple[str, ...]
    output_formats: tuple[str, ...]


class SearchProvider(msgspec.Struct, frozen=True, tag="SearchProvider", tag_field="type"):
    query_languages: tuple[str, ...]
    result_types: tuple[str, ...]


class ThumbnailGenerator(msgspec.Struct, frozen=True, tag="ThumbnailGenerator", tag_field="type"):
    supported_formats: tuple[str, ...]
    output_formats: tuple[str, ...]


Capability = LocationProvider | FileTypeHandler | ContentProcessor | SearchProvider | ThumbnailGenerator


class FileSystemAccess(msgspec.Struct, frozen=True):
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


class Permissions(msgspec.Struct, frozen=True):
    """What the integration may do. ``None`` limits mean the core's defaults."""

    network_access: tuple[str, ...] = ()
    file_system_access: FileSystemAccess = FileSystemAccess()
    max_memory_mb: int | None = None
    max_cpu_percent: int | None = None
    max_file_descriptors: int | None = None
    max_execution_time_s: float | None = None
    requires_credentials: bool = False
    core_apis: tuple[str, ...] = ()
    require: tuple[str, ...] = ()


class ProtocolRange(msgspec.Struct, frozen=True):
    min: int = 1
    max: int = 1


def _default_config_schema() -> dict[str, Any]:
    return {"type": "object"}


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """A validated manifest (with ``permissions.json`` and ``config-schema.json`` applied)."""

    id: str
    name: str
    version: str
    description: str
    author: str
    capabilities: tuple[Capability, ...]
    executable_path: str | None = None
    command: tuple[str, ...] | None = None
    config_schema: dict[str, Any] = msgspec.field(default_factory=_default_config_schema)
    permissions: Permissions = Permissions()
    homepage: str | None = None
    protocol: ProtocolRange = ProtocolRange()
    activation_events: tuple[str, ...] = ()
    pool_size: int = 1
    idle_timeout_s: float | None = None

    @property
    def capability_types(self) -> tuple[str, ...]:
        return tuple(type(c).__name__ for c in self.capabilities)

    def to_json(self) -> dict[str, Any]:
        """The manifest as plain JSON values (capabilities with their ``type``)."""
        value = msgspec.to_builtins(self)
        assert isinstance(value, dict)
        return value


# --- parsing ---------------------------------------------------------------------------------


@cache
def manifest_schema() -> Mapping[str, Any]:
    """The JSON Schema of ``manifest.json`` (``manifest.schema.json``, shipped with this package)."""
    text = resources.files(__package__).joinpath("manifest.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    assert isinstance(schema, dict)
    return schema


def parse_manifest(
    document: Any,
    *,
    permissions: Any = None,
    config_schema: Any = None,
    file: str = MANIFEST_FILE,
) -> Manifest:
    """Validate a decoded ``manifest.json`` (and the decoded side files, when given).

    Checks everything but the package's files (see :func:`load_manifest`). Raises
    :class:`ManifestError` listing every problem.
    """
    merged, origins = _merge(document, permissions, config_schema, file)
    problems = _document_problems(merged, origins)
    if problems:
        raise ManifestError(_summary(document, file, problems), problems)
    return msgspec.convert(merged, Manifest)


def load_manifest(package_dir: Path, *, where: str | None = None) -> Manifest:
    """Read, validate and return the manifest of the package folder ``package_dir``.

    Besides :func:`parse_manifest`'s checks, the executable (or the command's files) must be
    regular files inside the package. Raises :class:`ManifestError` listing every problem;
    its summary names ``where`` (default: the manifest's path).
    """
    root = Path(package_dir)
    where = where or str(root / MANIFEST_FILE)
    problems: list[Problem] = []
    document = _read_json(root, MANIFEST_FILE, problems, required=True)
    permissions = _read_json(root, PERMISSIONS_FILE, problems)
    config_schema = _read_json(root, CONFIG_SCHEMA_FILE, problems)
    if problems:
        raise ManifestError(f"invalid manifest ({where}): it cannot be read", problems)
    merged, origins = _merge(document, permissions, config_schema, MANIFEST_FILE)
    problems = _document_problems(merged, origins)
    if isinstance(merged, dict):
        problems += _package_file_problems(root, merged)
    if problems:
        raise ManifestError(_summary(document, where, problems), problems)
    return msgspec.convert(merged, Manifest)


def _summary(document: Any, where: str, problems: list[Problem]) -> str:
    ident = document.get("id") if isinstance(document, dict) else None
    name = f"integration {ident!r}" if isinstance(ident, str) else "the integration"
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return f"invalid manifest of {name} ({where}): {count}"


def _merge(document: Any, permissions: Any, config_schema: Any, file: str) -> tuple[Any, dict[str, str]]:
    origins: dict[str, str] = {"": file}
    if not isinstance(document, dict):
        return document, origins
    merged = dict(document)
    if permissions is not None:
        merged["permissions"] = permissions
        origins["permissions"] = PERMISSIONS_FILE
    if config_schema is not None:
        merged["config_schema"] = config_schema
        origins["config_schema"] = CONFIG_SCHEMA_FILE
    return merged, origins


# --- reading files ---------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r} in an object; each key may appear once")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or Infinity. Raises ``ValueError``."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _read_json(root: Path, name: str, problems: list[Problem], *, required: bool = False) -> Any:
    path = root / name
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(Problem(name, _TOP, "expected a regular file (not a link or a folder)"))
            return None
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        if required:
            problems.append(Problem(name, _TOP, "missing; every package needs a manifest.json at its root"))
        return None
    except OSError as exc:
        problems.append(Problem(name, _TOP, f"cannot be read: {exc.strerror or exc}"))
        return None
    if len(data) > MAX_MANIFEST_BYTES:
        problems.append(Problem(name, _TOP, f"expected at most {MAX_MANIFEST_BYTES} bytes"))
        return None
    try:
        return decode_json(data)
    except UnicodeDecodeError as exc:
        problems.append(Problem(name, _TOP, f"expected UTF-8 JSON: {exc.reason} at byte {exc.start}"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        problems.append(Problem(name, _TOP, f"expected valid JSON: {exc.msg} at {where}"))
    except ValueError as exc:
        problems.append(Problem(name, _TOP, f"expected valid JSON: {exc}"))
    return None


# --- checks ----------------------------------------------------------------------------------


def _document_problems(merged: Any, origins: dict[str, str]) -> list[Problem]:
    found: list[tuple[tuple[str | int, ...], str]] = []
    for violation in violations(manifest_schema(), merged):
        found += _render(violation)
    if isinstance(merged, dict):
        found += _code_problems(merged)
    problems = [_locate(path, message, origins) for path, message in found]
    return list(dict.fromkeys(problems))  # keep order, drop duplicates


def _locate(path: tuple[str | int, ...], message: str, origins: dict[str, str]) -> Problem:
    if path and isinstance(path[0], str) and path[0] in origins:
        return Problem(origins[path[0]], json_path(path[1:], root="") or _TOP, message)
    return Problem(origins[""], json_path(path, root="") or _TOP, message)


def _render(v: SchemaViolation) -> list[tuple[tuple[str | int, ...], str]]:
    if v.keyword == "required" and isinstance(v.instance, dict):
        missing = [n for n in v.schema.get("required", ()) if n not in v.instance]
        name = next((n for n in missing if v.message.startswith(repr(n))), missing[0] if missing else "?")
        expected = _resolve(v.schema.get("properties", {}).get(name, {})).get("x-expected")
        return [((*v.path, name), f"missing; expected {expected}" if expected else "missing (required)")]
    if v.keyword == "additionalProperties" and isinstance(v.instance, dict):
        known = sorted(k for k in v.schema.get("properties", {}) if k not in ("$schema", "type"))
        patterns = [re.compile(p) for p in v.schema.get("patternProperties", {})]
        extras = [k for k in v.instance if k not in v.schema.get("properties", {})]
        extras = [k for k in extras if not any(p.search(k) for p in patterns)]
        expected = f"unknown field; expected one of {', '.join(known)} (or an x- extension)"
        return [((*v.path, k), expected) for k in extras]
    expected = v.schema.get("x-expected")
    if expected:
        return [(v.path, f"expected {expected}, got {_show(v.instance)}")]
    return [(v.path, v.message)]


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = manifest_schema()["$defs"].get(ref.removeprefix("#/$defs/"), {})
        return target if isinstance(target, Mapping) else {}
    return schema


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


Found = list[tuple[tuple[str | int, ...], str]]


def _code_problems(doc: dict[str, Any]) -> Found:
    found: Found = []
    found += _run_problems(doc)
    found += _protocol_problems(doc.get("protocol"))
    perms = doc.get("permissions")
    if isinstance(perms, dict):
        found += _permission_problems(perms)
    schema = doc.get("config_schema")
    if isinstance(schema, dict):
        found += [(("config_schema", *v.path), _metaschema_message(v)) for v in metaschema_violations(schema)]
    found += _activation_problems(doc)
    return found


def _metaschema_message(v: SchemaViolation) -> str:
    return f"not a valid JSON Schema: {v.message}"


def _run_problems(doc: dict[str, Any]) -> Found:
    has_exe, has_cmd = "executable_path" in doc, "command" in doc
    if has_exe and has_cmd:
        return [(("command",), "give either executable_path or command, not both")]
    if not has_exe and not has_cmd:
        return [
            (
                ("executable_path",),
                "missing; expected executable_path (a file inside the package) or command "
                '(an argv list such as ["python3", "main.py"])',
            )
        ]
    exe = doc.get("executable_path")
    if isinstance(exe, str):
        problem = _relative_path_problem(exe)
        return [(("executable_path",), problem)] if problem else []
    command = doc.get("command")
    if isinstance(command, list) and all(isinstance(a, str) for a in command) and command:
        return _command_problems(command)
    return []


def _relative_path_problem(value: str) -> str | None:
    """Why ``value`` is not a safe path relative to a package (``None`` when it is)."""
    if "\0" in value:
        return "expected a path without NUL characters"
    if "\\" in value:
        return f"expected '/' as the path separator, got {value!r}"
    if value.startswith(("/", "~")):
        return f"expected a path relative to the package, got {value!r}, which is outside it"
    if ".." in PurePosixPath(value).parts:
        return f"expected a path inside the package, got {value!r}, which leaves it with '..'"
    if not PurePosixPath(value).parts or PurePosixPath(value).parts == (".",):
        return f"expected the path of a file inside the package, got {value!r}"
    return None


def _command_path_arguments(command: list[str] | tuple[str, ...]) -> list[tuple[int, str]]:
    """The elements of ``command`` that are paths: ``(index, path)``.

    ``argv[0]`` is a path when it contains ``/`` (else it is an interpreter from ``PATH``);
    an argument is a path when it contains ``/`` or ``\\``, starts with ``~``, or is ``.`` or
    ``..``; for ``--option=value``, the value is looked at.
    """
    found: list[tuple[int, str]] = []
    for index, arg in enumerate(command):
        value = arg
        if index > 0 and arg.startswith("-"):
            if "=" not in arg:
                continue
            value = arg.split("=", 1)[1]
        if index == 0 and "/" not in value:
            continue
        if "/" in value or "\\" in value or value.startswith("~") or value in (".", ".."):
            found.append((index, value))
    return found


def _command_problems(command: list[str]) -> Found:
    found: Found = []
    if "/" not in command[0] and not _INTERPRETER.match(command[0]):
        found.append(
            (
                ("command", 0),
                "expected an interpreter name looked up in PATH (e.g. python3, node) or a path "
                f"inside the package, got {command[0]!r}",
            )
        )
    for index, value in _command_path_arguments(command):
        problem = _relative_path_problem(value)
        if problem:
            found.append((("command", index), problem))
    return found


def _protocol_problems(protocol: Any) -> Found:
    if isinstance(protocol, dict):
        low, high = protocol.get("min"), protocol.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            return [(("protocol",), f"expected min <= max, got min {low} and max {high}")]
    return []


def _permission_problems(perms: dict[str, Any]) -> Found:
    found: Found = []
    domains = perms.get("network_access")
    for index, domain in enumerate(domains if isinstance(domains, list) else []):
        if isinstance(domain, str) and ":" in domain:
            port = domain.rsplit(":", 1)[1]
            if port.isdigit() and not 1 <= int(port) <= 65535:
                message = f"expected a port from 1 to 65535, got {port}"
                found.append((("permissions", "network_access", index), message))
    fs = perms.get("file_system_access")
    for mode in ("read", "write"):
        paths = fs.get(mode) if isinstance(fs, dict) else None
        for index, path in enumerate(paths if isinstance(paths, list) else []):
            if isinstance(path, str) and (".." in PurePosixPath(path).parts or "\0" in path):
                found.append(
                    (
                        ("permissions", "file_system_access", mode, index),
                        f"expected a normalised path (no '..' nor NUL), got {path!r}",
                    )
                )
    return found


def _activation_problems(doc: dict[str, Any]) -> Found:
    events, caps = doc.get("activation_events"), doc.get("capabilities")
    if not isinstance(events, list) or not isinstance(caps, list):
        return []
    protocols = {
        p
        for c in caps
        if isinstance(c, dict) and c.get("type") == "LocationProvider"
        for p in (c.get("supported_protocols") or [])
        if isinstance(p, str)
    }
    return [
        (
            ("activation_events", index),
            f"expected a protocol of a LocationProvider capability ({', '.join(sorted(protocols)) or 'none'})"
            f", got {event!r}",
        )
        for index, event in enumerate(events)
        if isinstance(event, str) and event.startswith("onLocation:") and event[11:] not in protocols
    ]


def _package_file_problems(root: Path, doc: dict[str, Any]) -> list[Problem]:
    found: Found = []
    exe = doc.get("executable_path")
    if isinstance(exe, str) and _relative_path_problem(exe) is None:
        problem = _inside_problem(root, exe, want_file=True)
        if problem:
            found.append((("executable_path",), problem))
    command = doc.get("command")
    if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        found += _command_file_problems(root, command)
    return [Problem(MANIFEST_FILE, json_path(path, root=""), message) for path, message in found]


def _command_file_problems(root: Path, command: list[str]) -> Found:
    found: Found = []
    runs_package_file = False
    for index, value in _command_path_arguments(command):
        if _relative_path_problem(value) is not None:
            continue  # already reported
        problem = _inside_problem(root, value, want_file=index == 0)
        if problem:
            found.append((("command", index), problem))
        else:
            runs_package_file = True
    bare = [a for i, a in enumerate(command) if i > 0 and not a.startswith("-") and "/" not in a]
    bare = [a for a in bare if _relative_path_problem(a) is None]
    if any(_inside_problem(root, a, want_file=False) is None for a in bare):
        runs_package_file = True
    if not runs_package_file and not found:
        found.append(
            (
                ("command",),
                "expected the command to run a file of the package (an executable or a script such "
                f"as main.py beside manifest.json), got {command!r}",
            )
        )
    return found


def _inside_problem(root: Path, rel: str, *, want_file: bool) -> str | None:
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        return f"expected a path inside the package, got {rel!r}, which resolves outside it"
    if not target.exists():
        return f"expected a file of the package, got {rel!r}, which does not exist"
    if want_file and not target.is_file():
        return f"expected a regular file, got {rel!r}, which is not a file"
    return None
