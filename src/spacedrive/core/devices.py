"""This device's identity and master key, and the ids of virtual (cloud) devices.

Device id
    A UUID4 made once, on first use of a data dir, and stored in ``<data dir>/device.json``
    with the device name (the host name at that time), the operating system and where the
    master key lives. Libraries and other devices know the device by this id, so an unreadable
    or damaged ``device.json`` is an error (:class:`DeviceError`), never a reason to make up a
    new id.

Master key
    256 random bits that the credential manager derives its encryption keys from. Where it is
    kept (the *key storage*) is chosen when the key is made, and recorded in ``device.json``:

    * ``keyring``: the OS keyring (macOS Keychain, Windows Credential Locker, Secret Service
      on Linux), through :mod:`keyring`, under service ``spacedrive`` and user name
      ``device-master-key:<device id>``. Only a real, secure backend counts: not keyring's
      ``fail`` or ``null`` backends, nor the plaintext or password-prompting file backends of
      ``keyrings.alt`` and ``keyrings.cryptfile``.
    * ``file``: ``<data dir>/master.key``, 64 hex digits, mode 0600. A key file others can read
      or write is refused, with the ``chmod`` to run.

    Which one is used: the ``keyring_backend`` argument, else ``SPACEDRIVE_KEY_BACKEND``
    (``auto``, ``keyring`` or ``file``), else ``auto``: the keyring when a usable one exists,
    the file otherwise. Once a key exists, its recorded storage is used; asking explicitly for
    the other one is an error rather than a silent new key, and a recorded key that has gone
    missing is an error too (the credentials encrypted with it would be lost).

Virtual devices
    Cloud locations live on *virtual devices* whose id is derived, not stored:
    :func:`virtual_device_id` is ``uuid5`` over the integration id and the cloud location id,
    so every process on every machine computes the same id for the same pair.

Concurrent processes (the daemon, a CLI, tests) serialize the creation of ``device.json`` and
of the key, and key rotation, with an advisory lock on ``<data dir>/.device.lock`` (POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import secrets
import shlex
import socket
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec

from spacedrive.core._fs import fsync_dir, write_atomically
from spacedrive.core.errors import ConfigError, DeviceError, MasterKeyError

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = [
    "DEVICE_FILE",
    "KEYRING_SERVICE",
    "KEY_BACKEND_ENV",
    "KEY_FILE",
    "MASTER_KEY_BYTES",
    "VIRTUAL_DEVICE_NAMESPACE",
    "DeviceInfo",
    "DeviceManager",
    "KeyStorage",
    "find_usable_keyring",
    "virtual_device_id",
]

DEVICE_FILE = "device.json"
KEY_FILE = "master.key"
LOCK_FILE = ".device.lock"
DEVICE_FILE_VERSION = 1
MASTER_KEY_BYTES = 32
KEYRING_SERVICE = "spacedrive"
KEY_BACKEND_ENV = "SPACEDRIVE_KEY_BACKEND"

#: Namespace of virtual device ids: ``uuid5(NAMESPACE_URL, "https://spacedrive.com/ns/virtual-device")``.
#: Never change it: virtual device ids are stored in libraries.
VIRTUAL_DEVICE_NAMESPACE = uuid.UUID("36d5f451-85aa-53ad-be74-3c6e54a4c705")

KeyStorage: TypeAlias = Literal["keyring", "file"]
KeyBackendChoice: TypeAlias = Literal["auto", "keyring", "file"]
_CHOICES: tuple[KeyBackendChoice, ...] = ("auto", "keyring", "file")

# Backends that exist but do not keep a secret safely (or at all), by module prefix.
_UNSAFE_KEYRING_MODULES = (
    "keyring.backends.fail",
    "keyring.backends.null",
    "keyrings.alt",
    "keyrings.cryptfile",
)


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A device as libraries record it: this machine (physical) or a cloud location (virtual)."""

    id: uuid.UUID
    name: str
    os: str | None
    kind: Literal["physical", "virtual"]
    integration_id: str | None = None
    cloud_location_id: str | None = None


def virtual_device_id(integration_id: str, cloud_location_id: str) -> uuid.UUID:
    """The id of the virtual device of a cloud location: the same pair always gives the same id.

    ``uuid5(VIRTUAL_DEVICE_NAMESPACE, b"v1" + ns(integration_id) + ns(cloud_location_id))``
    where ``ns(s)`` is the netstring ``<UTF-8 byte length>:<UTF-8 bytes>,``; being
    length-prefixed, the encoding tells ``("a:b", "c")`` and ``("a", "b:c")`` apart.
    """
    name = (
        b"v1"
        + _netstring(integration_id, "integration id")
        + _netstring(cloud_location_id, "cloud location id")
    )
    digest = hashlib.sha1(VIRTUAL_DEVICE_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


def _netstring(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise DeviceError(f"a virtual device needs a non-empty {what}, got {value!r}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise DeviceError(f"the {what} {value!r} is not valid Unicode text") from None
    return str(len(raw)).encode("ascii") + b":" + raw + b","


def find_usable_keyring(candidate: KeyringBackend | None = None) -> KeyringBackend | None:
    """The keyring backend that can safely hold the master key, or ``None`` when there is none.

    ``candidate`` defaults to ``keyring.get_keyring()``. A chainer is searched for its first
    usable backend; ``fail``, ``null``, plaintext and password-prompting file backends, and
    backends whose priority is not positive (or cannot be computed), are not usable.
    """
    if candidate is None:
        import keyring

        try:
            candidate = keyring.get_keyring()
        except Exception:
            return None
    from keyring.backends.chainer import ChainerBackend

    if isinstance(candidate, ChainerBackend):
        for backend in candidate.backends:
            found = find_usable_keyring(backend)
            if found is not None:
                return found
        return None
    cls = type(candidate)
    if cls.__module__.startswith(_UNSAFE_KEYRING_MODULES) or "plaintext" in cls.__name__.lower():
        return None
    try:
        priority = float(cls.priority)
    except Exception:  # a backend raises here when its service is unavailable
        return None
    return candidate if priority > 0 else None


class DeviceManager:
    """The identity and master key of this device, kept in ``data_dir``.

    ``keyring_backend`` chooses the key storage: ``"file"``, ``"keyring"`` (an error when no
    usable keyring exists), ``"auto"``, or a :class:`keyring.backend.KeyringBackend` instance to
    use as the keyring (trusted as given). ``None`` reads ``SPACEDRIVE_KEY_BACKEND``.

    Constructing the manager reads ``device.json``, creating it if missing; the master key is
    made on the first call of :meth:`master_key`.
    """

    def __init__(
        self,
        data_dir: Path,
        keyring_backend: KeyringBackend | KeyBackendChoice | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._backend_instance: KeyringBackend | None = None
        self._choice: KeyBackendChoice
        if keyring_backend is None:
            raw = os.environ.get(KEY_BACKEND_ENV, "").strip().lower() or "auto"
            self._choice = _parse_choice(raw, KEY_BACKEND_ENV)
            self._choice_source = f"{KEY_BACKEND_ENV}={raw}"
        elif isinstance(keyring_backend, str):
            self._choice = _parse_choice(keyring_backend, "keyring_backend")
            self._choice_source = f"the key backend option ({keyring_backend})"
        else:
            self._choice = "keyring"
            self._backend_instance = keyring_backend
            self._choice_source = f"the keyring backend given ({type(keyring_backend).__name__})"
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DeviceError(f"cannot create the data dir {self.data_dir}: {exc.strerror or exc}") from exc
        with self._locked():
            record = self._read_record()
            if record is None:
                record = self._new_record()
                self._write_record(record)
        self._record = record
        self._info = DeviceInfo(
            id=uuid.UUID(record["id"]), name=record["name"], os=record["os"], kind="physical"
        )

    # -- identity ---------------------------------------------------------------------------

    @property
    def device_id(self) -> uuid.UUID:
        """The stable id of this device."""
        return self._info.id

    def info(self) -> DeviceInfo:
        """This device as libraries record it (kind ``physical``)."""
        return self._info

    @property
    def device_file(self) -> Path:
        return self.data_dir / DEVICE_FILE

    @property
    def key_file(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def keyring_username(self) -> str:
        return f"device-master-key:{self.device_id}"

    def virtual_device_id(self, integration_id: str, cloud_location_id: str) -> uuid.UUID:
        """Same as the module function :func:`virtual_device_id` (independent of this device)."""
        return virtual_device_id(integration_id, cloud_location_id)

    def virtual_device(self, integration_id: str, cloud_location_id: str, name: str) -> DeviceInfo:
        """The :class:`DeviceInfo` of the virtual device of a cloud location."""
        return DeviceInfo(
            id=virtual_device_id(integration_id, cloud_location_id),
            name=name,
            os=None,
            kind="virtual",
            integration_id=integration_id,
            cloud_location_id=cloud_location_id,
        )

    # -- master key -------------------------------------------------------------------------

    def key_storage(self) -> KeyStorage:
        """Where the master key is kept, or, before it exists, where it will be made."""
        with self._locked():
            return self._storage(self._current_record())

    def key_storage_description(self) -> str:
        """A sentence for ``status``: where the master key is, e.g. ``OS keyring (Keychain)``."""
        storage = self.key_storage()
        if storage == "file":
            return f"key file {self.key_file} (mode 0600)"
        backend = self._keyring()
        return f"OS keyring ({type(backend).__module__}.{type(backend).__name__})"

    def master_key(self) -> bytes:
        """The 32-byte master key of this device, made and stored on first use."""
        with self._locked():
            record = self._current_record()
            storage = self._storage(record)
            if storage == "file":
                key = self._read_key_file(must_exist=record.get("key_storage") == "file")
                if key is None:
                    key = secrets.token_bytes(MASTER_KEY_BYTES)
                    self._write_key_file(key, replace=False)
            else:
                key = self._read_keyring(must_exist=record.get("key_storage") == "keyring")
                if key is None:
                    key = secrets.token_bytes(MASTER_KEY_BYTES)
                    self._write_keyring(key)
            if record.get("key_storage") != storage:
                record = {**record, "key_storage": storage}
                self._write_record(record)
                self._record = record
            return key

    def rotate_master_key(self) -> tuple[bytes, bytes]:
        """Replace the master key by a new random one; return ``(old, new)``.

        The new key replaces the old one atomically (a renamed file, or one keyring write).
        The caller re-encrypts what the old key protected; the old key is not kept.
        """
        old = self.master_key()
        with self._locked():
            storage = self._storage(self._current_record())
            current = (
                self._read_key_file(must_exist=True)
                if storage == "file"
                else self._read_keyring(must_exist=True)
            )
            if current != old:
                raise MasterKeyError("the master key changed while it was being rotated; try again")
            new = secrets.token_bytes(MASTER_KEY_BYTES)
            if storage == "file":
                self._write_key_file(new, replace=True)
            else:
                self._write_keyring(new)
        return old, new

    # -- storage choice ---------------------------------------------------------------------

    def _storage(self, record: dict[str, Any]) -> KeyStorage:
        recorded: KeyStorage | None = record.get("key_storage")
        if recorded is None and self.key_file.exists():
            recorded = "file"  # made by a process that stopped before recording it
        if recorded is None:
            if self._choice == "file":
                return "file"
            if self._choice == "keyring":
                self._keyring()  # raises when there is none
                return "keyring"
            return "keyring" if self._keyring_or_none() is not None else "file"
        if self._choice not in ("auto", recorded):
            raise MasterKeyError(
                f"the master key of this device is kept in the {_storage_name(recorded)}, but "
                f"{self._choice_source} asks for the {_storage_name(self._choice)}. Moving the key "
                f"is not supported; remove that setting to use the key where it is"
            )
        return recorded

    def _keyring_or_none(self) -> KeyringBackend | None:
        if self._backend_instance is not None:
            return self._backend_instance
        return find_usable_keyring()

    def _keyring(self) -> KeyringBackend:
        backend = self._keyring_or_none()
        if backend is None:
            raise MasterKeyError(
                "no usable OS keyring is available (keyring backends found: "
                f"{_describe_keyrings()}). Unlock or install one (e.g. a Secret Service such as "
                f"gnome-keyring), or, for a new device, set {KEY_BACKEND_ENV}=file to keep the key "
                f"in {self.key_file}"
            )
        return backend

    # -- keyring storage ------------------------------------------------------------------------

    def _read_keyring(self, *, must_exist: bool) -> bytes | None:
        from keyring.errors import KeyringError

        backend = self._keyring()
        try:
            value = backend.get_password(KEYRING_SERVICE, self.keyring_username)
        except KeyringError as exc:
            raise MasterKeyError(f"cannot read the master key from the OS keyring: {exc}") from exc
        if value is None:
            if must_exist:
                raise MasterKeyError(
                    f"the master key of device {self.device_id} is missing from the OS keyring "
                    f"(service {KEYRING_SERVICE!r}, user {self.keyring_username!r}). Credentials "
                    "encrypted with it cannot be read; restore the keyring entry from a backup"
                )
            return None
        return _decode_key(value, "the OS keyring entry of the master key")

    def _write_keyring(self, key: bytes) -> None:
        from keyring.errors import KeyringError

        try:
            self._keyring().set_password(KEYRING_SERVICE, self.keyring_username, key.hex())
        except KeyringError as exc:
            raise MasterKeyError(f"cannot store the master key in the OS keyring: {exc}") from exc

    # -- file storage -------------------------------------------------------------------------

    def _read_key_file(self, *, must_exist: bool) -> bytes | None:
        path = self.key_file
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if must_exist:
                raise MasterKeyError(
                    f"the master key file {path} is missing. Credentials encrypted with it cannot be "
                    "read; restore the file from a backup"
                ) from None
            return None
        except OSError as exc:
            if path.is_symlink():
                raise MasterKeyError(
                    f"{path} is a symbolic link; the key file must be a regular file"
                ) from exc
            raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise MasterKeyError(f"{path} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if sys.platform != "win32" and mode & 0o077:
                raise MasterKeyError(
                    f"the master key file {path} is accessible to other users (mode {mode:04o}); "
                    f"it must be private to you. Run: chmod 600 {shlex.quote(str(path))} "
                    "(and if others may have read it, rotate the key afterwards)"
                )
            data = f.read(1024)
        return _decode_key(data.decode("ascii", "replace"), f"the master key file {path}")

    def _write_key_file(self, key: bytes, *, replace: bool) -> None:
        """Write the key to a new 0600 temporary file, then move it in place atomically."""
        path = self.key_file
        fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", suffix=".tmp", dir=self.data_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                if sys.platform != "win32":
                    os.fchmod(f.fileno(), 0o600)
                f.write(key.hex().encode("ascii") + b"\n")
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                _move_no_replace(tmp, path)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise MasterKeyError(f"{path} appeared while a new key was being made; try again") from None
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise MasterKeyError(f"cannot write the master key file {path}: {exc.strerror or exc}") from exc
        fsync_dir(self.data_dir)

    # -- device.json ----------------------------------------------------------------------------

    def _current_record(self) -> dict[str, Any]:
        record = self._read_record()
        if record is None:
            raise DeviceError(f"{self.device_file} disappeared while Spacedrive was running")
        if record["id"] != self._record["id"]:
            raise DeviceError(f"{self.device_file} now holds another device id than when it was opened")
        return record

    def _read_record(self) -> dict[str, Any] | None:
        path = self.device_file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise DeviceError(f"{path} is a folder; it should be the device identity file") from None
        except OSError as exc:
            raise DeviceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            record = json.loads(data)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            version = record.get("version", DEVICE_FILE_VERSION)
            if not isinstance(version, int):
                raise ValueError("'version' is not a number")
            if version > DEVICE_FILE_VERSION:
                raise DeviceError(
                    f"{path} was written by a newer Spacedrive (format {version}; this one knows "
                    f"up to {DEVICE_FILE_VERSION}); upgrade Spacedrive"
                )
            if not isinstance(record.get("id"), str):
                raise ValueError("'id' is missing")
            record["id"] = str(uuid.UUID(record["id"]))
            for field in ("name", "os"):
                if not isinstance(record.get(field), str):
                    raise ValueError(f"{field!r} is missing or not a string")
            if record.get("key_storage") not in (None, "keyring", "file"):
                raise ValueError(f"'key_storage' is {record['key_storage']!r}, not 'keyring' or 'file'")
        except (ValueError, UnicodeDecodeError) as exc:
            raise DeviceError(
                f"{path} is corrupt ({exc}). Spacedrive will not make up a new device id, because "
                "libraries and other devices know this device by its id: restore the file from a "
                "backup, or, to register this machine as a new device, move the file away"
            ) from None
        return record

    def _new_record(self) -> dict[str, Any]:
        return {
            "version": DEVICE_FILE_VERSION,
            "id": str(uuid.uuid4()),
            "name": _host_name(),
            "os": _os_name(),
            "created_at": time.time(),
            "key_storage": None,
        }

    def _write_record(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        try:
            write_atomically(self.device_file, text.encode("utf-8"))
        except OSError as exc:
            raise DeviceError(f"cannot write {self.device_file}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the advisory lock of the data dir (a no-op where ``flock`` does not exist)."""
        try:
            fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DeviceError(f"cannot open {self.data_dir / LOCK_FILE}: {exc.strerror or exc}") from exc
        try:
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _move_no_replace(src: str, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError rather than replace ``dst``."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (some file systems): the caller holds the lock, so a check
        # followed by a rename is enough.
        if os.path.lexists(dst):
            raise FileExistsError(dst) from None
        os.replace(src, dst)
    else:
        os.unlink(src)


def _decode_key(text: str, where: str) -> bytes:
    value = text.strip()
    if len(value) != 2 * MASTER_KEY_BYTES or not all(c in "0123456789abcdefABCDEF" for c in value):
        raise MasterKeyError(
            f"{where} is corrupt (expected {2 * MASTER_KEY_BYTES} hex digits). Credentials "
            "encrypted with the key cannot be read; restore it from a backup"
        )
    return bytes.fromhex(value)


def _parse_choice(value: str, source: str) -> KeyBackendChoice:
    for choice in _CHOICES:
        if value == choice:
            return choice
    raise ConfigError(f"{source}={value!r} is not one of: {', '.join(_CHOICES)}")


def _storage_name(storage: str) -> str:
    return "OS keyring" if storage == "keyring" else "key file"


def _describe_keyrings() -> str:
    try:
        import keyring

        return repr(keyring.get_keyring())
    except Exception as exc:
        return f"none ({exc})"


def _host_name() -> str:
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return name or platform.node() or "unknown device"


def _os_name() -> str:
    return platform.system().lower() or sys.platform
