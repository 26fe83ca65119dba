"""The sandbox's exceptions.

::

    SandboxError                    anything the sandbox refuses or fails at
    ├── ProtectionUnavailable       a protection the manifest requires cannot be provided here
    ├── LaunchRefused               the launcher refused to run the integration (its report says why)
    ├── ExecutionTimeExceeded       a request or job ran past its maximum time: its processes were killed
    └── CgroupError                 a cgroup could not be created, configured or removed

Messages are written for users: each names the integration, the protection and why.
"""

from __future__ import annotations

__all__ = ["CgroupError", "ExecutionTimeExceeded", "LaunchRefused", "ProtectionUnavailable", "SandboxError"]


class SandboxError(Exception):
    """Base of the sandbox's errors."""


class ProtectionUnavailable(SandboxError):
    """A protection the manifest requires is not available: the integration must not start."""

    def __init__(self, integration_id: str, protection: str, reason: str) -> None:
        self.integration_id = integration_id
        self.protection = protection
        self.reason = reason
        super().__init__(
            f"integration {integration_id!r} requires the {protection!r} protection, which this "
            f"machine cannot provide: {reason}"
        )


class LaunchRefused(SandboxError):
    """The launcher did not run the integration (a required protection, or a failed step)."""

    def __init__(self, integration_id: str, reason: str, report: object = None) -> None:
        self.integration_id = integration_id
        self.reason = reason
        self.report = report
        super().__init__(f"the sandbox refused to start integration {integration_id!r}: {reason}")


class CgroupError(SandboxError):
    """A cgroup operation failed."""


class ExecutionTimeExceeded(SandboxError):
    """A request or job ran past its maximum execution time; the integration's processes were killed."""

    def __init__(self, integration_id: str, seconds: float) -> None:
        self.integration_id = integration_id
        self.seconds = seconds
        super().__init__(
            f"integration {integration_id!r} ran past its maximum execution time of {seconds:g} s: "
            "its processes were killed"
        )
