"""The exceptions of the integration manager: manifests, discovery, packages and settings.

They derive from :class:`~spacedrive.core.errors.SpacedriveError`, so the CLI shows
``str(error)`` on one line and treats anything else as a bug. (The protocol layer's
``spacedrive.ipc.IntegrationError`` tree is separate: those errors cross the wire, these never
do.) ::

    SpacedriveError
    └── IntegrationsError
        ├── IntegrationNotFound           no integration (or no installed one) has that id
        ├── ManifestError                 manifest.json & co. invalid; .problems lists them all
        ├── InvalidIntegrationConfig      a config does not match the config schema; .problems
        └── PackageError                  install, update, remove, rollback or pack failed
            └── PackageRefused            the package is unsafe or damaged; names the member
                └── SignatureError        SIGNATURE missing (when required) or not trusted

``ManifestError`` and ``InvalidIntegrationConfig`` carry every problem found, not only the
first: a :class:`Problem` names the file, the field (a JSON path such as
``permissions.core_apis[2]`` or ``$.endpoint``) and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spacedrive.core.errors import SpacedriveError

__all__ = [
    "IntegrationNotFound",
    "IntegrationsError",
    "InvalidIntegrationConfig",
    "ManifestError",
    "PackageError",
    "PackageRefused",
    "Problem",
    "SignatureError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file: ``<file>: <field>: <message>``."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.file else f"{self.field}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "field": self.field, "message": self.message}


class IntegrationsError(SpacedriveError):
    """An integration cannot be found, validated, installed or configured."""


class IntegrationNotFound(IntegrationsError):
    """No integration has the requested id."""


class _ProblemsError(IntegrationsError):
    """An error made of several :class:`Problem` s; ``str()`` lists them all, one per line."""

    def __init__(self, summary: str, problems: Iterable[Problem]) -> None:
        self.summary = summary
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = [summary, *(f"  {p}" for p in self.problems)]
        super().__init__("\n".join(lines))


class ManifestError(_ProblemsError):
    """The manifest (``manifest.json``, ``config-schema.json``, ``permissions.json``) is invalid."""


class InvalidIntegrationConfig(_ProblemsError):
    """A configuration does not match the integration's config schema."""


class PackageError(IntegrationsError):
    """A package cannot be installed, updated, removed, rolled back or built."""


class PackageRefused(PackageError):
    """The package is unsafe or damaged; nothing of it was installed."""


class SignatureError(PackageRefused):
    """The package's SIGNATURE is missing (and required) or matches no trusted key."""
