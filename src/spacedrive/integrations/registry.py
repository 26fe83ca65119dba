"""Discovery: which integrations exist, found with zero configuration.

Three sources, looked at in this order; when two give the same id, **the first wins**
(installed over entry point over bundled), and the other is reported as a duplicate:

1. ``installed``: ``<data dir>/integrations/<id>/current`` (see :mod:`.packages`), the
   integrations the user installed, so that an installed update overrides what Python brings;
2. ``entry_point``: Python entry points of the group ``spacedrive.integrations``. The entry
   point's name is the integration id; its value resolves to a folder (a ``str`` or
   ``os.PathLike``) holding ``manifest.json``, or to a callable returning one;
3. ``bundled``: ``spacedrive/integrations/bundled/<id>/`` inside this Python package.

Every manifest is validated as it is found (as pluggy checks a plugin when it registers). An
invalid integration, or a duplicate, is recorded in :attr:`Registry.problems` with its source,
its origin and the reason; it is never fatal to the others. A valid integration is still used
when another source's one of the same id is invalid.

A **block list** (the ``blocked`` argument, plus ``SPACEDRIVE_DISABLED_INTEGRATIONS``: ids
separated by commas or spaces) hides integrations by id, as pluggy's blocked plugins: a
blocked entry point is not even imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Final, Literal

from spacedrive.integrations.errors import IntegrationNotFound, ManifestError
from spacedrive.integrations.manifest import Manifest, load_manifest
from spacedrive.integrations.packages import PackageManager

__all__ = [
    "BUNDLED_DIR",
    "DISABLED_ENV",
    "ENTRY_POINT_GROUP",
    "DiscoveryProblem",
    "Integration",
    "Registry",
    "Source",
    "blocked_from_env",
]

Source = Literal["installed", "entry_point", "bundled"]
ENTRY_POINT_GROUP: Final = "spacedrive.integrations"
DISABLED_ENV: Final = "SPACEDRIVE_DISABLED_INTEGRATIONS"
BUNDLED_DIR: Final = Path(__file__).parent / "bundled"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Integration:
    """A valid integration: its manifest, the folder it runs from, and where it was found."""

    manifest: Manifest
    root: Path
    source: Source
    origin: str  # the folder, or the entry point "name = value (distribution)"

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True, slots=True)
class DiscoveryProblem:
    """An integration that was found but is not used: invalid, or a duplicate id."""

    id: str  # the id it claims (or its folder's or entry point's name)
    source: Source
    origin: str
    kind: Literal["invalid", "duplicate"]
    reason: str

    def __str__(self) -> str:
        return f"{self.id} ({self.source}, {self.origin}): {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "source": self.source,
            "origin": self.origin,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class _Candidate:
    id: str
    source: Source
    origin: str
    load: Callable[[], tuple[Manifest, Path]]


@dataclass
class Registry:
    """The integrations found, the problems met, and the ids blocked."""

    integrations: dict[str, Integration] = field(default_factory=dict)
    problems: list[DiscoveryProblem] = field(default_factory=list)
    blocked: list[tuple[str, Source, str]] = field(default_factory=list)

    @classmethod
    def discover(
        cls,
        data_dir: Path,
        *,
        blocked: Iterable[str] | None = None,
        entry_points: bool = True,
        bundled_dir: Path | None = BUNDLED_DIR,
    ) -> Registry:
        """Find every integration of ``data_dir``, the installed Python packages and the bundle."""
        block = set(blocked or ()) | blocked_from_env()
        registry = cls()
        candidates = [*_installed(data_dir, registry)]
        if entry_points:
            candidates += _entry_points()
        if bundled_dir is not None:
            candidates += _bundled(bundled_dir)
        for candidate in candidates:
            registry._consider(candidate, block)
        return registry

    def get(self, integration_id: str) -> Integration:
        """The integration ``integration_id``; raises :class:`IntegrationNotFound`."""
        found = self.integrations.get(integration_id)
        if found is not None:
            return found
        reasons = [str(p) for p in self.problems if p.id == integration_id and p.kind == "invalid"]
        if reasons:
            raise IntegrationNotFound(f"integration {integration_id!r} is invalid: {'; '.join(reasons)}")
        if any(b[0] == integration_id for b in self.blocked):
            raise IntegrationNotFound(f"integration {integration_id!r} is blocked (${DISABLED_ENV})")
        known = ", ".join(sorted(self.integrations)) or "none"
        raise IntegrationNotFound(f"no integration {integration_id!r} (integrations: {known})")

    def __iter__(self) -> Iterator[Integration]:
        return iter(sorted(self.integrations.values(), key=lambda i: i.id))

    def __len__(self) -> int:
        return len(self.integrations)

    def __contains__(self, integration_id: object) -> bool:
        return integration_id in self.integrations

    def _consider(self, candidate: _Candidate, block: set[str]) -> None:
        if candidate.id in block:
            self.blocked.append((candidate.id, candidate.source, candidate.origin))
            return
        try:
            manifest, root = candidate.load()
        except ManifestError as exc:
            self._problem(candidate, "invalid", "; ".join(str(p) for p in exc.problems) or str(exc))
            return
        except (ValueError, TypeError, OSError) as exc:
            self._problem(candidate, "invalid", str(exc))
            return
        except Exception as exc:  # an entry point's own code may raise anything
            self._problem(candidate, "invalid", f"cannot be loaded: {type(exc).__name__}: {exc}")
            return
        if manifest.id != candidate.id:
            reason = f"its manifest says id {manifest.id!r}, but it was found as {candidate.id!r}"
            self._problem(candidate, "invalid", reason)
            return
        winner = self.integrations.get(manifest.id)
        if winner is not None:
            reason = f"duplicate id: the {winner.source} one ({winner.origin}) is used instead"
            self._problem(candidate, "duplicate", reason)
            return
        self.integrations[manifest.id] = Integration(manifest, root, candidate.source, candidate.origin)

    def _problem(self, candidate: _Candidate, kind: Literal["invalid", "duplicate"], reason: str) -> None:
        self.problems.append(DiscoveryProblem(candidate.id, candidate.source, candidate.origin, kind, reason))


def blocked_from_env() -> set[str]:
    """The ids listed in ``$SPACEDRIVE_DISABLED_INTEGRATIONS`` (commas or spaces between)."""
    return {part for part in re.split(r"[\s,]+", os.environ.get(DISABLED_ENV, "")) if part}


def _installed(data_dir: Path, registry: Registry) -> list[_Candidate]:
    found, broken = PackageManager(data_dir).installed()
    for integration_id, folder, reason in broken:
        candidate = _Candidate(integration_id, "installed", str(folder), _unreachable)
        registry._problem(candidate, "invalid", reason)
    return [
        _Candidate(v.id, "installed", str(v.path), partial(_load_installed, v.path, v.version)) for v in found
    ]


def _load_installed(path: Path, version: str) -> tuple[Manifest, Path]:
    manifest = load_manifest(path)
    if manifest.version != version:
        raise ValueError(f"its manifest says version {manifest.version}, but it is installed as {version}")
    return manifest, path


def _unreachable() -> tuple[Manifest, Path]:  # pragma: no cover - broken candidates are never loaded
    raise AssertionError("broken installations are reported, not loaded")


def _entry_points() -> list[_Candidate]:
    found: list[_Candidate] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
        origin = f"entry point {ep.name} = {ep.value}{dist}"
        found.append(_Candidate(ep.name, "entry_point", origin, partial(_load_entry_point, ep)))
    return found


def _load_entry_point(ep: metadata.EntryPoint) -> tuple[Manifest, Path]:
    if not _ID.match(ep.name):
        raise ValueError(f"the entry point's name {ep.name!r} is not an integration id (a lowercase slug)")
    target = ep.load()
    if callable(target):
        target = target()
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"expected a folder path or a callable returning one, got {type(target).__name__}")
    root = Path(target)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    return _load_folder(root)


def _load_folder(root: Path) -> tuple[Manifest, Path]:
    return load_manifest(root), root


def _bundled(folder: Path) -> list[_Candidate]:
    if not folder.is_dir():
        return []
    return [
        _Candidate(d.name, "bundled", str(d), partial(_load_folder, d))
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith((".", "_"))
    ]
