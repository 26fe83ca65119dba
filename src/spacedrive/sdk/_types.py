"""Typed results of the capability methods (docs/protocol.md §5) that handlers may return.

Handlers may return plain dicts as well; these structs encode to exactly the same JSON.
"""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

__all__ = ["CloudLocation", "Entry"]


class Entry(Struct, kw_only=True, omit_defaults=True):
    """A file or folder of a location: ``path`` is POSIX, relative to the location root."""

    path: str
    name: str
    is_dir: bool
    size: int
    modified_ns: int
    etag: str | UnsetType = UNSET
    hash: str | UnsetType = UNSET


class CloudLocation(Struct, kw_only=True, omit_defaults=True):
    """A location a ``LocationProvider`` offers (``location.list_locations``)."""

    id: str
    name: str
    path: str
    total_space: int | UnsetType = UNSET
    used_space: int | UnsetType = UNSET
