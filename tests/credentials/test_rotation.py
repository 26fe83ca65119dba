"""``rotate-key``: every credential of every library re-sealed, and a crash at any point loses nothing.

The crash tests run the rotation in a real process and SIGKILL it at each checkpoint of the
rotation (``CHECKPOINTS``: after the journal is written, after the key changed, after the
journal is sealed, in the middle of a library's transaction, between libraries, at the end);
then a fresh manager, as the next command would, reads every credential back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacedrive.core.devices import DeviceManager
from spacedrive.core.library import Library, LibraryManager
from spacedrive.credentials import (
    CHECKPOINTS,
    ApiKey,
    CredentialManager,
    IntegrationCredential,
    KeyRotationError,
    recover,
    rotate,
    rotation_pending,
)
from spacedrive.credentials._crypto import key_id
from spacedrive.credentials._rotation import JOURNAL_FILE
from tests.credentials._helpers import a_secret, every_file, files_holding

WAIT_S = 60.0
_KILL_AT = """
import os, signal, sys
from pathlib import Path
from spacedrive.core.devices import DeviceManager
from spacedrive.credentials import rotate

def checkpoint(name):
    if name == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

rotate(DeviceManager(Path(sys.argv[1])), checkpoint=checkpoint)
"""


def kill_rotation_at(data_dir: Path, point: str) -> int:
    """Run ``rotate`` in a new process that SIGKILLs itself at the checkpoint ``point``; its status."""
    died = subprocess.run(
        [sys.executable, "-c", _KILL_AT, str(data_dir), point], capture_output=True, text=True, timeout=WAIT_S
    )
    assert died.stderr == "" or "Traceback" not in died.stderr, died.stderr
    return died.returncode


@pytest.fixture
def libraries(data_dir: Path) -> Iterator[list[Library]]:
    manager = LibraryManager(data_dir)
    opened = [manager.open(), manager.create("work")]
    yield opened
    for library in opened:
        library.close()


async def fill(data_dir: Path, libraries: list[Library], per_library: int = 3) -> dict[tuple[str, str], str]:
    """Store ApiKey credentials in every library; ``{(library name, credential id): key}``."""
    devices = DeviceManager(data_dir)
    stored = {}
    for library in libraries:
        manager = CredentialManager(library, devices)
        for n in range(per_library):
            key = a_secret("key")
            integration_id = f"cloud-{n % 2}"
            credential = IntegrationCredential(integration_id=integration_id, credential_type=ApiKey(key=key))
            stored[(library.config.name, await manager.store_credential(integration_id, credential))] = key
    return stored


async def read_back(data_dir: Path, libraries: list[Library]) -> dict[tuple[str, str], str]:
    devices = DeviceManager(data_dir)
    found = {}
    for library in libraries:
        manager = CredentialManager(library, devices)
        for info in manager.list():
            secret = (await manager.get_credential(info.integration_id, info.id)).credential_type
            assert isinstance(secret, ApiKey)
            found[(library.config.name, info.id)] = secret.key
    return found


def key_ids(libraries: list[Library]) -> set[str]:
    return {row[0] for library in libraries for row in library.db.execute("SELECT key_id FROM credentials")}


async def test_rotation_reseals_every_credential_of_every_library_under_a_new_key(
    data_dir: Path, libraries: list[Library]
) -> None:
    stored = await fill(data_dir, libraries)
    devices = DeviceManager(data_dir)
    old = devices.master_key()
    result = rotate(devices)
    new = devices.master_key()
    assert new != old
    assert (result.old_key_id, result.new_key_id) == (key_id(old), key_id(new))
    assert (result.libraries, result.resealed, result.damaged, result.foreign) == (2, 6, [], 0)
    assert key_ids(libraries) == {key_id(new)}
    assert await read_back(data_dir, libraries) == stored
    assert not rotation_pending(data_dir)
    assert files_holding(data_dir, old.hex()) == []  # the old key is gone from the disk
    assert files_holding(data_dir, *stored.values()) == []


async def test_rotating_twice_works_and_an_empty_store_rotates_too(
    data_dir: Path, libraries: list[Library]
) -> None:
    assert rotate(DeviceManager(data_dir)).resealed == 0
    stored = await fill(data_dir, libraries, per_library=1)
    rotate(DeviceManager(data_dir))
    rotate(DeviceManager(data_dir))
    assert await read_back(data_dir, libraries) == stored


@pytest.mark.e2e
@pytest.mark.parametrize("point", CHECKPOINTS)
async def test_a_rotation_killed_at_any_point_loses_nothing(
    data_dir: Path, libraries: list[Library], point: str
) -> None:
    stored = await fill(data_dir, libraries)
    old = DeviceManager(data_dir).master_key()
    assert kill_rotation_at(data_dir, point) == -signal.SIGKILL
    rotated = point != "journal-written"
    assert (DeviceManager(data_dir).master_key() != old) is rotated
    assert rotation_pending(data_dir) is (point != "done")

    # The next credential operation (any manager, any process) finishes the rotation first.
    assert await read_back(data_dir, libraries) == stored
    assert not rotation_pending(data_dir)
    current = DeviceManager(data_dir).master_key()
    assert key_ids(libraries) == {key_id(current)}
    if rotated:
        assert files_holding(data_dir, old.hex()) == []
    assert [name for name in every_file(data_dir) if JOURNAL_FILE in name] == []
    rotate(DeviceManager(data_dir))  # and the store is in a state to rotate again
    assert await read_back(data_dir, libraries) == stored


@pytest.mark.e2e
async def test_recovery_is_itself_crash_safe(data_dir: Path, libraries: list[Library]) -> None:
    stored = await fill(data_dir, libraries)
    assert kill_rotation_at(data_dir, "journal-sealed") == -signal.SIGKILL

    def crash_in_the_second_library(name: str) -> None:
        if name == "library-resealed":
            raise KeyboardInterrupt  # stands for a crash after the first library's commit

    with pytest.raises(KeyboardInterrupt):
        recover(DeviceManager(data_dir), checkpoint=crash_in_the_second_library)
    assert rotation_pending(data_dir)
    result = recover(DeviceManager(data_dir))
    assert result is not None and result.resealed == 3  # the first library was done already
    assert await read_back(data_dir, libraries) == stored


async def test_a_library_that_cannot_be_opened_stops_the_rotation_before_the_key_changes(
    data_dir: Path, libraries: list[Library]
) -> None:
    await fill(data_dir, libraries, per_library=1)
    broken = LibraryManager(data_dir).create("broken")
    broken.close()
    broken.db_path.write_bytes(b"not a database at all" * 10)
    old = DeviceManager(data_dir).master_key()
    with pytest.raises(KeyRotationError, match=r"library 'broken' cannot be opened.* nothing was changed"):
        rotate(DeviceManager(data_dir))
    assert DeviceManager(data_dir).master_key() == old
    assert not rotation_pending(data_dir)


async def test_damaged_rows_and_rows_under_a_lost_key_are_left_and_counted(
    data_dir: Path, libraries: list[Library]
) -> None:
    await fill(data_dir, libraries, per_library=3)
    db = libraries[0].db
    first, second = (row[0] for row in db.execute("SELECT id FROM credentials ORDER BY id LIMIT 2"))
    db.execute("UPDATE credentials SET sealed = zeroblob(60) WHERE id = ?", (first,))
    db.execute("UPDATE credentials SET key_id = '0000000000000000' WHERE id = ?", (second,))
    result = rotate(DeviceManager(data_dir))
    assert (result.resealed, result.damaged, result.foreign) == (4, [first], 1)


def test_a_damaged_journal_is_not_guessed_at(data_dir: Path) -> None:
    (data_dir / JOURNAL_FILE).write_text("{not json")
    with pytest.raises(KeyRotationError, match=r"journal .* is damaged"):
        recover(DeviceManager(data_dir))
    assert rotation_pending(data_dir)  # kept: it may hold the previous key
