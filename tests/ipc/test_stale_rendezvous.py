"""Socket folders a killed core left in the runtime dir are swept; live and new ones are kept."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from spacedrive.ipc._launch import STALE_AFTER, remove_stale_rendezvous


def _folder(runtime: Path, name: str, *, age: float, socket_file: bool = False) -> Path:
    folder = runtime / name
    folder.mkdir()
    if socket_file:
        (folder / "s").touch()  # left behind: nothing listens on it
    then = time.time() - age
    os.utime(folder, (then, then))
    return folder


def test_only_old_folders_nobody_listens_in_are_removed(tmp_path: Path) -> None:
    dead = _folder(tmp_path, "i-dead", age=STALE_AFTER * 2, socket_file=True)
    empty = _folder(tmp_path, "i-empty", age=STALE_AFTER * 2)
    young = _folder(tmp_path, "i-young", age=0)  # a launch between mkdtemp and bind
    other = _folder(tmp_path, "daemon-stuff", age=STALE_AFTER * 2)
    live = tmp_path / "i-live"
    live.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(live / "s"))
        listener.listen()
        then = time.time() - STALE_AFTER * 2
        os.utime(live, (then, then))
        removed = remove_stale_rendezvous(tmp_path)
    assert sorted(removed) == ["i-dead", "i-empty"]
    assert not dead.exists() and not empty.exists()
    assert young.exists() and other.exists() and live.exists()


def test_a_missing_runtime_dir_is_nothing_to_sweep(tmp_path: Path) -> None:
    assert remove_stale_rendezvous(tmp_path / "nope") == []
