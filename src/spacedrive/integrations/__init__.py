"""The integration manager: manifests, discovery, packages, and per-library settings.

Modules, one concern each:

* ``manifest``: the ``manifest.json`` model and its validation (all problems, each naming
  the file, the field and what was expected);
* ``registry``: discovery with zero configuration (installed, entry points, bundled), with
  duplicates and invalid integrations reported, never fatal;
* ``packages``: install, update, remove, rollback and pack, with safe extraction, checksums,
  optional ed25519 signatures and atomic version switches;
* ``config``: enable, disable and configure per library, configs checked with ``jsonschema``;
* ``errors``: the exception tree (rooted at ``SpacedriveError``);
* ``supervisor``: the processes of one integration (lazy start, crashes, backoff, hangs,
  pool, idle stop, logs);
* ``manager``: the router (``IntegrationManager.handle_request``), the core APIs served to
  integrations (gated by their ``core_apis``), and health (``status``, ``metrics_text``).
"""

from __future__ import annotations

from spacedrive._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from spacedrive.integrations._core_api import CORE_API_PERMISSIONS
    from spacedrive.integrations._health import metrics_text, status_row
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
    from spacedrive.integrations.manager import (
        IntegrationManager,
        IntegrationRequest,
        IntegrationResponse,
        integration_argv,
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
    from spacedrive.integrations.supervisor import IntegrationFailed, Policy, State, Supervisor, logs

__all__ = [
    "CAPABILITY_TYPES",
    "CORE_APIS",
    "CORE_API_PERMISSIONS",
    "ENTRY_POINT_GROUP",
    "Capability",
    "ContentProcessor",
    "DiscoveryProblem",
    "FileSystemAccess",
    "FileTypeHandler",
    "InstallResult",
    "InstalledVersion",
    "Integration",
    "IntegrationFailed",
    "IntegrationManager",
    "IntegrationNotFound",
    "IntegrationRequest",
    "IntegrationResponse",
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
    "Policy",
    "Problem",
    "ProtocolRange",
    "Registry",
    "SearchProvider",
    "SignatureError",
    "State",
    "Supervisor",
    "ThumbnailGenerator",
    "all_settings",
    "config_problems",
    "disable",
    "effective_config",
    "enable",
    "forget",
    "get_settings",
    "integration_argv",
    "load_manifest",
    "logs",
    "manifest_schema",
    "mark_failed",
    "metrics_text",
    "pack",
    "parse_manifest",
    "read_config_file",
    "status_row",
    "validate_config",
]

# The names are loaded on first use: importing one module of this package (the CLI's
# ``integration list`` needs the registry) must not import them all (the manager pulls in
# asyncio, the IPC stack and the sandbox: half a second).
_HOMES = {
    "_core_api": ("CORE_API_PERMISSIONS",),
    "_health": ("metrics_text", "status_row"),
    "config": (
        "IntegrationSettings",
        "all_settings",
        "config_problems",
        "disable",
        "effective_config",
        "enable",
        "forget",
        "get_settings",
        "mark_failed",
        "read_config_file",
        "validate_config",
    ),
    "errors": (
        "IntegrationNotFound",
        "IntegrationsError",
        "InvalidIntegrationConfig",
        "ManifestError",
        "PackageError",
        "PackageRefused",
        "Problem",
        "SignatureError",
    ),
    "manager": ("IntegrationManager", "IntegrationRequest", "IntegrationResponse", "integration_argv"),
    "manifest": (
        "CAPABILITY_TYPES",
        "CORE_APIS",
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
        "load_manifest",
        "manifest_schema",
        "parse_manifest",
    ),
    "packages": ("InstalledVersion", "InstallResult", "PackageLimits", "PackageManager", "pack"),
    "registry": ("ENTRY_POINT_GROUP", "DiscoveryProblem", "Integration", "Registry"),
    "supervisor": ("IntegrationFailed", "Policy", "State", "Supervisor", "logs"),
}
__getattr__ = lazy_attributes(__name__, _HOMES, globals())
