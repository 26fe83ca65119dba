"""The integration manager: manifests, discovery, packages, and per-library settings.

Modules, one concern each:

* ``manifest``: the ``manifest.json`` model and its validation (all problems, each naming
  the file, the field and what was expected);
* ``registry``: discovery with zero configuration (installed, entry points, bundled), with
  duplicates and invalid integrations reported, never fatal;
* ``packages``: install, update, remove, rollback and pack, with safe extraction, checksums,
  optional ed25519 signatures and atomic version switches;
* ``config``: enable, disable and configure per library, configs checked with ``jsonschema``;
* ``errors``: the exception tree (rooted at ``SpacedriveError``).

The supervisor, router and health monitoring live elsewhere and build on these.
"""

from spacedrive.integrations.config import (
    IntegrationSettings,
    all_settings,
    config_problems,
    disable,
    effective_config,
    enable,
    forget,
    get_settings,
    mark_failed,
    read_config_file,
    validate_config,
)
from spacedrive.integrations.errors import (
    IntegrationNotFound,
    IntegrationsError,
    InvalidIntegrationConfig,
    ManifestError,
    PackageError,
    PackageRefused,
    Problem,
    SignatureError,
)
from spacedrive.integrations.manifest import (
    CAPABILITY_TYPES,
    CORE_APIS,
    Capability,
    ContentProcessor,
    FileSystemAccess,
    FileTypeHandler,
    LocationProvider,
    Manifest,
    Permissions,
    ProtocolRange,
    SearchProvider,
    ThumbnailGenerator,
    load_manifest,
    manifest_schema,
    parse_manifest,
)
from spacedrive.integrations.packages import (
    InstalledVersion,
    InstallResult,
    PackageLimits,
    PackageManager,
    pack,
)
from spacedrive.integrations.registry import (
    ENTRY_POINT_GROUP,
    DiscoveryProblem,
    Integration,
    Registry,
)

__all__ = [
    "CAPABILITY_TYPES",
    "CORE_APIS",
    "ENTRY_POINT_GROUP",
    "Capability",
    "ContentProcessor",
    "DiscoveryProblem",
    "FileSystemAccess",
    "FileTypeHandler",
    "InstallResult",
    "InstalledVersion",
    "Integration",
    "IntegrationNotFound",
    "IntegrationSettings",
    "IntegrationsError",
    "InvalidIntegrationConfig",
    "LocationProvider",
    "Manifest",
    "ManifestError",
    "PackageError",
    "PackageLimits",
    "PackageManager",
    "PackageRefused",
    "Permissions",
    "Problem",
    "ProtocolRange",
    "Registry",
    "SearchProvider",
    "SignatureError",
    "ThumbnailGenerator",
    "all_settings",
    "config_problems",
    "disable",
    "effective_config",
    "enable",
    "forget",
    "get_settings",
    "load_manifest",
    "manifest_schema",
    "mark_failed",
    "pack",
    "parse_manifest",
    "read_config_file",
    "validate_config",
]
