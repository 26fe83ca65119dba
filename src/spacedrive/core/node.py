"""The core of one device, opened on one library: what a CLI command or the daemon hosts."""

from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path

from spacedrive.core.db import transaction
from spacedrive.core.devices import DeviceManager
from spacedrive.core.events import EventBus
from spacedrive.core.filetypes import FileTypeRegistry
from spacedrive.core.indexer import IndexerJob
from spacedrive.core.jobs import DEFAULT_MAX_CONCURRENT_JOBS, JobSystem
from spacedrive.core.library import Library, LibraryManager
from spacedrive.core.locations import LocationManager

__all__ = ["Core"]


class Core:
    """Data dir, device, library, event bus, file types and locations, wired together."""

    def __init__(self, data_dir: Path, library: str | None = None) -> None:
        self.data_dir = data_dir
        self.devices = DeviceManager(data_dir)
        self.libraries = LibraryManager(data_dir)
        self.library: Library = self.libraries.open(library)
        self.bus = EventBus()
        self._register_this_device()
        self.locations = LocationManager(self.library, self.device_id)

    @property
    def device_id(self) -> str:
        return str(self.devices.device_id)

    @cached_property
    def registry(self) -> FileTypeRegistry:
        return FileTypeRegistry.builtin()

    def job_system(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT_JOBS) -> JobSystem:
        return JobSystem(
            self.library,
            self.bus,
            [IndexerJob],
            max_concurrent=max_concurrent,
            services={"registry": self.registry},
        )

    def close(self) -> None:
        self.library.close()

    def __enter__(self) -> Core:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _register_this_device(self) -> None:
        info = self.devices.info()
        with transaction(self.library.db):
            self.library.db.execute(
                "INSERT INTO devices (id, name, kind, os, created_at) VALUES (?, ?, 'physical', ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, os = excluded.os",
                (str(info.id), info.name, info.os, time.time()),
            )
