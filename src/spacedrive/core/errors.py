"""The exceptions of the Spacedrive core.

Every error the core raises on purpose derives from :class:`SpacedriveError`, so the CLI and
the daemon can catch that one class, show ``str(error)`` (equally ``error.user_message``) to
the user, and treat anything else as a bug. Messages are written for the user: they say what
is wrong, with which file or value, and, where there is one, what to do about it.

::

    Exception
    └── SpacedriveError
        ├── ConfigError
        │   └── DataDirError
        ├── LibraryError
        │   ├── LibraryNotFound
        │   ├── LibraryVersionError       database written by a newer Spacedrive
        │   └── ForeignDatabaseError      file is not a Spacedrive library database
        ├── DeviceError
        │   └── MasterKeyError
        ├── InvalidSdPath                 also a ValueError
        ├── LocationError
        │   ├── LocationNotFound
        │   └── InvalidLocationPath
        └── JobError
            ├── JobNotFound
            └── UnknownJobType

The integration layer (IPC, processes, permissions) has its own tree, rooted at
``IntegrationError``; it does not derive from these classes.

Subclasses take a single message argument. They define no ``__init__`` of their own, so an
exception that also derives from a built-in one (``InvalidSdPath`` is a ``ValueError``)
behaves as both.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataDirError",
    "DeviceError",
    "ForeignDatabaseError",
    "InvalidLocationPath",
    "InvalidSdPath",
    "JobError",
    "JobNotFound",
    "LibraryError",
    "LibraryNotFound",
    "LibraryVersionError",
    "LocationError",
    "LocationNotFound",
    "MasterKeyError",
    "SpacedriveError",
    "UnknownJobType",
]


class SpacedriveError(Exception):
    """Base class of the errors the core raises on purpose; the message is meant for the user."""

    @property
    def user_message(self) -> str:
        """The message to show the user: the first argument, or the class docstring's summary."""
        if self.args:
            return str(self.args[0])
        doc = type(self).__doc__ or type(self).__name__
        return doc.strip().splitlines()[0]

    def __str__(self) -> str:
        return self.user_message


class ConfigError(SpacedriveError):
    """The configuration (options, environment variables, config files) is invalid."""


class DataDirError(ConfigError):
    """The data dir (or the runtime dir beside it) cannot be used: not a folder, not writable, unsafe."""


class LibraryError(SpacedriveError):
    """A library cannot be created, opened, read or migrated."""


class LibraryNotFound(LibraryError):
    """No library has the requested name or id."""


class LibraryVersionError(LibraryError):
    """The library database was written by a newer Spacedrive than this one."""


class ForeignDatabaseError(LibraryError):
    """The file is not a Spacedrive library database (another program's, or not SQLite at all)."""


class DeviceError(SpacedriveError):
    """The device identity (``device.json``) is missing, unreadable or inconsistent."""


class MasterKeyError(DeviceError):
    """The device master key cannot be read, stored or trusted (keyring or ``master.key``)."""


class InvalidSdPath(ValueError, SpacedriveError):
    """A malformed SdPath URI, or arguments that do not make a valid SdPath."""


class LocationError(SpacedriveError):
    """A location cannot be added, read, indexed or removed."""


class LocationNotFound(LocationError):
    """No location has the requested id, name or path."""


class InvalidLocationPath(LocationError):
    """The path of a location does not exist, is not a folder, or overlaps another location."""


class JobError(SpacedriveError):
    """A job cannot be created, run, resumed or cancelled."""


class JobNotFound(JobError):
    """No job has the requested id."""


class UnknownJobType(JobError):
    """A job record names a job type this program does not know (a newer version wrote it?)."""
