"""The file type registry: what a file is, from its name and its first bytes.

Type ids
--------
Built-in types use MIME-style ids, lowercase, as Spacedrive v2 does: ``image/png``,
``application/zip``, ``text/x-python``. Where a format has a registered media type, the id is that
type (``application/pdf``); otherwise it is the customary ``x-`` type (``application/x-7z-compressed``)
or, where two formats would share a media type, a more specific one (``video/mp2t`` vs
``text/x-typescript``). Ids registered at run time by integrations are namespaced with a colon:
``my-integration:xyz``. Every id is lowercase ASCII (``a-z 0-9 . + _ -``) with at least one ``/``
or ``:`` separator.

Definitions
-----------
Built-in types are data: ``definitions/*.toml``, one file per category, each a list of
``[[types]]`` tables::

    [[types]]
    id = "image/png"                 # required, unique
    name = "PNG Image"               # required
    category = "Image"               # required, a Category value (case-insensitive)
    extensions = ["png"]             # lowercase, no dot; may be compound: "tar.gz"
    filenames = []                   # whole file names, matched case-insensitively: "Makefile"
    mime_types = ["image/png"]
    priority = 100                   # higher wins among types sharing an extension (default 50)
    magic = [{ offset = 0, bytes = "89 50 4E 47 0D 0A 1A 0A" }]

A magic pattern is hex bytes separated by spaces, with ``??`` matching any byte and ``??{N}``
matching N bytes; it must lie in the first :data:`HEAD_SIZE` bytes. A type matches when any of its
patterns matches (so several patterns are alternatives; wildcards join the parts of one pattern).

Identification
--------------
:meth:`FileTypeRegistry.identify_by_name` looks at the name only (a file name, then a compound
extension like ``tar.gz``, then the last extension): a dictionary lookup, for directory scans.

:meth:`FileTypeRegistry.identify` reads at most the first 8 KiB of a file with one ``read`` and
ranks the evidence (:class:`Confidence`):

1. ``EXTENSION_AND_MAGIC``: a type the name maps to also matches the bytes (the name decides
   between formats sharing magic, such as ZIP, DOCX and EPUB);
2. ``MAGIC``: the bytes match a type the name does not map to (a PNG named ``.jpg`` is a PNG).
   The most specific pattern (most fixed bytes) wins, then priority (so a bare ZIP header is
   ``application/zip``, not DOCX; an EPUB, whose ``mimetype`` entry is in its pattern, is EPUB).
   A pattern of fewer than four fixed bytes (``BM``, ``MZ``, MP3 frame sync...) is not trusted
   alone on bytes that look like text;
3. ``EXTENSION``: the name alone (a known extension or file name, no agreeing magic). Among types
   sharing the extension, one without magic patterns (which the bytes cannot contradict) is
   preferred, then priority: ``.ts`` is TypeScript unless it has MPEG transport stream packets;
4. ``TEXT_HEURISTIC``: neither, but the bytes look like text (no NUL or other binary control
   bytes; UTF-8, a UTF-16 BOM, or mostly-ASCII 8-bit text): the generic ``text/plain`` type;
5. ``UNKNOWN``: nothing: the generic ``application/octet-stream`` type (category ``Unknown``). An
   empty file with an unknown name is unknown.

Magic matching is indexed, not a loop over the types: patterns are grouped by the absolute
position and value of their first fixed byte (a large group, such as the ~40 ISO-BMFF ``ftyp``
brands, is split again on a second byte), a pattern shared by several types is tested once, and
each test is a ``bytes.startswith`` at the offset or a precompiled ``re`` match for patterns with
wildcards. Identifying an 8 KiB head costs a few microseconds.

Files that cannot be read raise ``OSError`` (``FileNotFoundError``, ``PermissionError``,
``IsADirectoryError``...): nothing is swallowed. Files are opened with ``O_NONBLOCK`` where it
exists, so a named pipe does not block the caller.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import threading
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PRIORITY",
    "GENERIC_BINARY_ID",
    "GENERIC_TEXT_ID",
    "HEAD_SIZE",
    "STRONG_MAGIC_BYTES",
    "Category",
    "Confidence",
    "DuplicateFileTypeError",
    "FileType",
    "FileTypeDefinitionError",
    "FileTypeError",
    "FileTypeRegistry",
    "Identification",
    "MagicPattern",
    "load_definitions",
    "looks_like_text",
]

#: Bytes of a file that identification reads (and that magic patterns may reach).
HEAD_SIZE = 8192
#: Patterns with fewer fixed bytes are trusted alone only on bytes that do not look like text.
STRONG_MAGIC_BYTES = 4
#: Priority of a definition that does not give one.
DEFAULT_PRIORITY = 50
#: The type of text identified by the text heuristic.
GENERIC_TEXT_ID = "text/plain"
#: The type of an unidentified file (category ``Unknown``).
GENERIC_BINARY_ID = "application/octet-stream"


class FileTypeError(Exception):
    """Base class of the registry's errors."""


class FileTypeDefinitionError(FileTypeError, ValueError):
    """A file type definition is invalid; names its source file and type id where known."""

    def __init__(self, message: str, *, source: str | None = None, type_id: str | None = None) -> None:
        self.source = source
        self.type_id = type_id
        where = []
        if source is not None:
            where.append(source)
        if type_id is not None:
            where.append(f"file type {type_id!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class DuplicateFileTypeError(FileTypeError, ValueError):
    """A file type id is already registered."""


class Category(StrEnum):
    """What kind of thing a file is; modelled on Spacedrive v2's ``ContentKind``.

    Values are the TitleCase names stored in the library database (``str(Category.IMAGE)`` is
    ``"Image"``). ``Custom`` is for integration-defined types, ``Folder`` for directories.
    """

    UNKNOWN = "Unknown"
    IMAGE = "Image"
    VIDEO = "Video"
    AUDIO = "Audio"
    DOCUMENT = "Document"
    ARCHIVE = "Archive"
    CODE = "Code"
    TEXT = "Text"
    DATABASE = "Database"
    BOOK = "Book"
    FONT = "Font"
    MESH = "Mesh"
    CONFIG = "Config"
    ENCRYPTED = "Encrypted"
    KEY = "Key"
    EXECUTABLE = "Executable"
    BINARY = "Binary"
    SPREADSHEET = "Spreadsheet"
    PRESENTATION = "Presentation"
    EMAIL = "Email"
    CALENDAR = "Calendar"
    CONTACT = "Contact"
    WEB = "Web"
    SHORTCUT = "Shortcut"
    PACKAGE = "Package"
    CUSTOM = "Custom"
    FOLDER = "Folder"

    @classmethod
    def parse(cls, value: str) -> Category:
        """The category named ``value``, case-insensitively (``"image"``, ``"Image"``)."""
        try:
            return _CATEGORY_BY_LOWER[value.lower()]
        except (KeyError, AttributeError):
            choices = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown category {value!r}; expected one of {choices}") from None

    @property
    def content_kind_id(self) -> int:
        """The integer id of the matching Spacedrive v2 ``ContentKind`` (0, Unknown, if none)."""
        return _CONTENT_KIND_IDS.get(self, 0)


_CATEGORY_BY_LOWER = {c.value.lower(): c for c in Category}
_CONTENT_KIND_IDS = {c: i for i, c in enumerate(list(Category)[:25])}


class Confidence(IntEnum):
    """How sure an identification is; higher is surer. See the module docstring for the order."""

    UNKNOWN = 0
    TEXT_HEURISTIC = 25
    EXTENSION = 50
    MAGIC = 75
    EXTENSION_AND_MAGIC = 100


_HEX_TOKEN = re.compile(r"[0-9A-Fa-f]{2}|\?\?(?:\{([0-9]+)\})?")


@dataclass(frozen=True, slots=True)
class MagicPattern:
    """Bytes expected at ``offset``: hex with ``??`` (any byte) and ``??{N}`` (N any bytes)."""

    offset: int
    pattern: str
    #: Number of fixed (non-wildcard) bytes: how specific the pattern is.
    specificity: int = field(init=False, compare=False)
    #: Number of bytes the pattern spans.
    length: int = field(init=False, compare=False)
    _elements: tuple[int | None, ...] = field(init=False, repr=False, compare=False)
    _anchor: int = field(init=False, repr=False, compare=False)
    _anchor_byte: int = field(init=False, repr=False, compare=False)
    _literal: bytes | None = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[bytes] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.offset, int) or isinstance(self.offset, bool) or self.offset < 0:
            raise ValueError(f"magic offset must be an integer >= 0, not {self.offset!r}")
        if not isinstance(self.pattern, str):
            raise ValueError(f"magic bytes must be a string of hex bytes, not {self.pattern!r}")
        elements: list[int | None] = []
        tokens = self.pattern.split()
        for token in tokens:
            m = _HEX_TOKEN.fullmatch(token)
            if m is None:
                raise ValueError(
                    f"bad token {token!r} in magic bytes {self.pattern!r}: expected two hex digits,"
                    " '??' or '??{N}', separated by spaces"
                )
            if token.startswith("?"):
                count = int(m.group(1)) if m.group(1) is not None else 1
                if count < 1:
                    raise ValueError(f"bad wildcard count in {token!r}")
                elements.extend([None] * count)
            else:
                elements.append(int(token, 16))
        fixed = [i for i, b in enumerate(elements) if b is not None]
        if not fixed:
            raise ValueError(f"magic bytes {self.pattern!r} have no fixed byte")
        end = self.offset + len(elements)
        if end > HEAD_SIZE:
            raise ValueError(
                f"magic bytes {self.pattern!r} at offset {self.offset} end at byte {end},"
                f" past the {HEAD_SIZE} bytes that identification reads"
            )
        canonical = " ".join(token.upper() if not token.startswith("?") else token for token in tokens)
        set_ = object.__setattr__
        set_(self, "pattern", canonical)
        set_(self, "specificity", len(fixed))
        set_(self, "length", len(elements))
        set_(self, "_elements", tuple(elements))
        first = fixed[0]
        set_(self, "_anchor", self.offset + first)
        set_(self, "_anchor_byte", elements[first])
        if len(fixed) == len(elements):
            set_(self, "_literal", bytes(b for b in elements if b is not None))
            set_(self, "_regex", None)
        else:
            parts: list[bytes] = []
            run: list[int] = []
            wild = 0
            for b in elements:
                if b is None:
                    if run:
                        parts.append(re.escape(bytes(run)))
                        run = []
                    wild += 1
                else:
                    if wild:
                        parts.append(b".{%d}" % wild)
                        wild = 0
                    run.append(b)
            if run:
                parts.append(re.escape(bytes(run)))
            if wild:
                parts.append(b".{%d}" % wild)
            set_(self, "_literal", None)
            set_(self, "_regex", re.compile(b"".join(parts), re.DOTALL))

    def byte_at(self, position: int) -> int | None:
        """The fixed byte expected at absolute ``position`` of a file; None if any or none."""
        index = position - self.offset
        return self._elements[index] if 0 <= index < len(self._elements) else None

    def matches(self, head: bytes) -> bool:
        """Whether ``head`` (the first bytes of a file) matches this pattern."""
        if self._literal is not None:
            return head.startswith(self._literal, self.offset)
        assert self._regex is not None
        return self._regex.match(head, self.offset) is not None


_ID_RE = re.compile(r"[a-z0-9][a-z0-9.+_-]*(?:[/:][a-z0-9][a-z0-9.+_-]*)+")
_EXT_RE = re.compile(r"[a-z0-9_+~-]+(?:\.[a-z0-9_+~-]+)*")
_MIME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


@dataclass(frozen=True, slots=True)
class FileType:
    """A kind of file. Construction validates it (``ValueError``/``TypeError`` otherwise)."""

    id: str
    name: str
    category: Category
    extensions: tuple[str, ...] = ()
    mime_types: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    magic: tuple[MagicPattern, ...] = ()
    filenames: tuple[str, ...] = ()
    #: Where the definition came from (a definitions file, or None); not part of equality.
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.id, str) or not _ID_RE.fullmatch(self.id):
            raise ValueError(
                f"bad id {self.id!r}: expected lowercase 'type/subtype' or 'namespace:name' (a-z 0-9 . + _ -)"
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name must be a non-empty string")
        category: object = self.category
        if not isinstance(category, Category):
            if not isinstance(category, str):
                raise TypeError(f"category must be a Category, not {category!r}")
            set_(self, "category", Category.parse(category))
        set_(self, "extensions", _strings("extensions", self.extensions))
        for ext in self.extensions:
            if not _EXT_RE.fullmatch(ext):
                raise ValueError(f"bad extension {ext!r}: extensions are lowercase, without a leading dot")
        set_(self, "mime_types", _strings("mime_types", self.mime_types))
        for mime in self.mime_types:
            if not _MIME_RE.fullmatch(mime):
                raise ValueError(f"bad MIME type {mime!r}")
        set_(self, "filenames", _strings("filenames", self.filenames))
        for filename in self.filenames:
            if not filename or "/" in filename or "\\" in filename or filename.strip() != filename:
                raise ValueError(f"bad file name {filename!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise TypeError(f"priority must be an integer, not {self.priority!r}")
        magic = tuple(self.magic) if isinstance(self.magic, list | tuple) else self.magic
        if not isinstance(magic, tuple) or not all(isinstance(m, MagicPattern) for m in magic):
            raise TypeError("magic must be a tuple of MagicPattern")
        set_(self, "magic", magic)

    def to_dict(self) -> dict[str, Any]:
        """A TOML/JSON-friendly form, the inverse of a definition table."""
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category.value,
            "extensions": list(self.extensions),
            "filenames": list(self.filenames),
            "mime_types": list(self.mime_types),
            "priority": self.priority,
            "magic": [{"offset": m.offset, "bytes": m.pattern} for m in self.magic],
        }


def _strings(what: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise TypeError(f"{what} must be a list of strings, not {values!r}")
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} must be a list of strings, not {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} has duplicates: {list(values)!r}")
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Identification:
    """The result of :meth:`FileTypeRegistry.identify`: a type and the evidence for it."""

    file_type: FileType
    confidence: Confidence
    #: The name key that supported the result: an extension (``"png"``, ``"tar.gz"``) or a whole
    #: lowercase file name (``"makefile"``); None when the name played no part.
    extension: str | None = None
    #: The magic pattern that matched the type; None when the bytes played no part.
    magic: MagicPattern | None = None

    @property
    def category(self) -> Category:
        return self.file_type.category


# ---------------------------------------------------------------------------------------------
# Text heuristic

# C0 control bytes that text does not contain (tab, LF, VT, FF, CR and ESC are allowed).
_BINARY_CONTROL = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_HIGH_BYTES = bytes(range(0x80, 0x100))
_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file look like text.

    Text: starts with a UTF-16 byte order mark; or has no NUL or other binary control byte (tab,
    newlines, form feed and escape are allowed) and is UTF-8 (a multi-byte character cut at the
    end is allowed) or, failing that, 8-bit text with at most 30 % non-ASCII bytes. Empty is
    not text.
    """
    if not head:
        return False
    if head.startswith(_BOMS):
        return True
    if b"\x00" in head or len(head.translate(None, _BINARY_CONTROL)) != len(head):
        return False
    if head.isascii():
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return True
    except UnicodeDecodeError:
        pass
    high = len(head) - len(head.translate(None, _HIGH_BYTES))
    return high * 10 <= len(head) * 3


# ---------------------------------------------------------------------------------------------
# Definitions

_DEFINITION_KEYS = {"id", "name", "category", "extensions", "filenames", "mime_types", "priority", "magic"}
_REQUIRED_KEYS = ("id", "name", "category")
_MAGIC_KEYS = {"offset", "bytes"}


def load_definitions(path: str | os.PathLike[str]) -> list[FileType]:
    """Parse and validate one TOML definitions file (see the module docstring for the format).

    Raises :class:`FileTypeDefinitionError` naming the file (and the type id, once known) for
    invalid TOML, an unknown key, a bad value or an id defined twice in the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileTypeDefinitionError(f"not UTF-8 ({exc})", source=str(path)) from exc
    return _parse_definitions(text, str(path))


def _parse_definitions(text: str, source: str) -> list[FileType]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileTypeDefinitionError(f"invalid TOML: {exc}", source=source) from exc
    extra = set(document) - {"types"}
    if extra:
        raise FileTypeDefinitionError(
            f"unknown top-level key(s) {sorted(extra)}; definitions go in [[types]] tables", source=source
        )
    tables = document.get("types", [])
    if not isinstance(tables, list):
        raise FileTypeDefinitionError("'types' must be an array of tables ([[types]])", source=source)
    result: list[FileType] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        if not isinstance(table, dict):
            raise FileTypeDefinitionError(f"types[{index}] is not a table", source=source)
        raw_id = table.get("id")
        type_id = raw_id if isinstance(raw_id, str) else f"types[{index}]"
        try:
            file_type = _file_type_from_table(table, source)
        except (ValueError, TypeError) as exc:
            raise FileTypeDefinitionError(str(exc), source=source, type_id=type_id) from exc
        if file_type.id in seen:
            raise FileTypeDefinitionError("defined twice in this file", source=source, type_id=type_id)
        seen.add(file_type.id)
        result.append(file_type)
    return result


def _file_type_from_table(table: dict[str, Any], source: str) -> FileType:
    unknown = set(table) - _DEFINITION_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_DEFINITION_KEYS)}")
    missing = [key for key in _REQUIRED_KEYS if key not in table]
    if missing:
        raise ValueError(f"missing required key(s) {missing}")
    category = table["category"]
    if not isinstance(category, str):
        raise TypeError(f"category must be a string, not {category!r}")
    magic_tables = table.get("magic", [])
    if not isinstance(magic_tables, list):
        raise TypeError('magic must be an array of { offset = N, bytes = ".." } tables')
    patterns: list[MagicPattern] = []
    for i, entry in enumerate(magic_tables):
        if not isinstance(entry, dict) or set(entry) != _MAGIC_KEYS:
            raise ValueError(f"magic[{i}] must be a table with exactly the keys 'offset' and 'bytes'")
        try:
            patterns.append(MagicPattern(entry["offset"], entry["bytes"]))
        except ValueError as exc:
            raise ValueError(f"magic[{i}]: {exc}") from exc
    return FileType(
        id=table["id"],
        name=table["name"],
        category=Category.parse(category),
        extensions=table.get("extensions", ()),
        mime_types=table.get("mime_types", ()),
        priority=table.get("priority", DEFAULT_PRIORITY),
        magic=tuple(patterns),
        filenames=table.get("filenames", ()),
        source=source,
    )


@functools.cache
def _builtin_types() -> tuple[FileType, ...]:
    """Every built-in definition, parsed and validated once per process."""
    folder = resources.files(__package__ or "spacedrive.core.filetypes").joinpath("definitions")
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".toml")), key=lambda e: e.name)
    result: list[FileType] = []
    first_source: dict[str, str] = {}
    for entry in entries:
        source = f"definitions/{entry.name}"
        for file_type in _parse_definitions(entry.read_text(encoding="utf-8"), source):
            if file_type.id in first_source:
                raise FileTypeDefinitionError(
                    f"already defined in {first_source[file_type.id]}", source=source, type_id=file_type.id
                )
            first_source[file_type.id] = source
            result.append(file_type)
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# The registry

_FALLBACK_TEXT = FileType(GENERIC_TEXT_ID, "Plain Text", Category.TEXT, ("txt",), ("text/plain",))
_FALLBACK_BINARY = FileType(
    GENERIC_BINARY_ID, "Binary Data", Category.UNKNOWN, (), ("application/octet-stream",)
)

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)

# A magic candidate: (pattern, file type, rank key, literal bytes or None, regex or None, offset).
# Rank: most fixed bytes, then priority, then registration order.
_Candidate = tuple[MagicPattern, FileType, tuple[int, int, int], bytes | None, re.Pattern[bytes] | None, int]
# A name match: (name key, file type): the extension or file name that mapped to the type.
_Named = tuple[str, FileType]
# A check: one distinct pattern (literal bytes or regex, offset) and the best-ranked candidate that
# has it. ZIP's "PK\x03\x04" is shared by some 30 types: it is tested once, and without a name
# only its best type (ZIP itself) can win; the name-agreement check looks at each named type's own
# patterns instead.
_Check = tuple[bytes | None, re.Pattern[bytes] | None, int, _Candidate]
# The checks sharing an anchor byte: (always done, split position or -1, checks by the byte at the
# split position). Large groups (the ~40 ISO-BMFF "ftyp" brands) are split on a second byte.
_Bucket = tuple[tuple[_Check, ...], int, dict[int, tuple[_Check, ...]]]
#: Groups of more distinct patterns than this are split on a second byte.
_SPLIT_ABOVE = 6


def _bucket(anchor: int, candidates: list[_Candidate]) -> _Bucket:
    """Group the candidates sharing an anchor byte into checks, split on a second byte if many.

    The split position is the one that minimises the checks done in the worst case: those with
    no fixed byte there (always done) plus the largest group sharing a byte there.
    """
    grouped: dict[tuple[int, str], _Candidate] = {}
    for c in candidates:
        key = (c[0].offset, c[0].pattern)
        if key not in grouped or c[2] < grouped[key][2]:
            grouped[key] = c
    checks = [(c[3], c[4], c[5], c) for c in grouped.values()]
    if len(checks) <= _SPLIT_ABOVE:
        return (tuple(checks), -1, {})
    patterns = [check[3][0] for check in checks]
    positions = {m.offset + i for m in patterns for i, b in enumerate(m._elements) if b is not None}
    positions.discard(anchor)
    best: tuple[int, int] | None = None
    for position in sorted(positions):
        counts: dict[int | None, int] = {}
        for m in patterns:
            value = m.byte_at(position)
            counts[value] = counts.get(value, 0) + 1
        always = counts.pop(None, 0)
        cost = always + max(counts.values(), default=0)
        if best is None or cost < best[0]:
            best = (cost, position)
    if best is None or best[0] >= len(checks):
        return (tuple(checks), -1, {})
    split = best[1]
    rest: list[_Check] = []
    by_byte: dict[int, list[_Check]] = {}
    for check, m in zip(checks, patterns, strict=True):
        value = m.byte_at(split)
        if value is None:
            rest.append(check)
        else:
            by_byte.setdefault(value, []).append(check)
    return (tuple(rest), split, {k: tuple(v) for k, v in by_byte.items()})


def _collect(checks: tuple[_Check, ...], head: bytes, found: list[_Candidate]) -> None:
    for literal, regex, offset, candidate in checks:
        if literal is not None:
            if head.startswith(literal, offset):
                found.append(candidate)
        elif regex is not None and regex.match(head, offset) is not None:
            found.append(candidate)


class _Index:
    """Lookup tables derived from the registered types; rebuilt whole and swapped on change."""

    __slots__ = (
        "anchors",
        "best_ext",
        "best_name",
        "by_ext",
        "by_mime",
        "by_name",
        "compound",
        "generic_binary",
        "generic_text",
        "named_ext",
        "named_name",
    )

    def __init__(self, types: dict[str, FileType]) -> None:
        rank = {type_id: i for i, type_id in enumerate(types)}

        def order(ft: FileType) -> tuple[int, int]:
            return (-ft.priority, rank[ft.id])

        by_ext: dict[str, list[FileType]] = {}
        by_name: dict[str, list[FileType]] = {}
        by_mime: dict[str, list[FileType]] = {}
        anchors: dict[int, dict[int, list[_Candidate]]] = {}
        for ft in types.values():
            for ext in ft.extensions:
                by_ext.setdefault(ext, []).append(ft)
            for filename in dict.fromkeys(f.lower() for f in ft.filenames):
                by_name.setdefault(filename, []).append(ft)
            for mime in dict.fromkeys(m.lower() for m in ft.mime_types):
                by_mime.setdefault(mime, []).append(ft)
            for pattern in ft.magic:
                key = (-pattern.specificity, -ft.priority, rank[ft.id])
                table = anchors.setdefault(pattern._anchor, {})
                candidate = (pattern, ft, key, pattern._literal, pattern._regex, pattern.offset)
                table.setdefault(pattern._anchor_byte, []).append(candidate)
        self.by_ext = {k: tuple(sorted(v, key=order)) for k, v in by_ext.items()}
        self.by_name = {k: tuple(sorted(v, key=order)) for k, v in by_name.items()}
        self.by_mime = {k: tuple(sorted(v, key=order)) for k, v in by_mime.items()}
        self.best_ext = {k: v[0] for k, v in self.by_ext.items()}
        self.best_name = {k: v[0] for k, v in self.by_name.items()}
        self.named_ext: dict[str, tuple[_Named, ...]] = {
            k: tuple((k, ft) for ft in v) for k, v in self.by_ext.items()
        }
        self.named_name: dict[str, tuple[_Named, ...]] = {
            k: tuple((k, ft) for ft in v) for k, v in self.by_name.items()
        }
        self.compound = any("." in ext for ext in self.by_ext)
        self.anchors = tuple(
            (pos, {byte: _bucket(pos, cands) for byte, cands in table.items()})
            for pos, table in sorted(anchors.items())
        )
        self.generic_text = types.get(GENERIC_TEXT_ID, _FALLBACK_TEXT)
        self.generic_binary = types.get(GENERIC_BINARY_ID, _FALLBACK_BINARY)


class FileTypeRegistry:
    """Registered file types and the identification of files against them.

    Reads (``identify*``, ``get``, ``by_*``) may run in any number of threads while another
    registers or unregisters types: the types and lookup tables are rebuilt aside and swapped in.
    """

    def __init__(self, types: Iterable[FileType] = ()) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, FileType] = {}
        self._index = _Index(self._types)
        self.register_all(types)

    @classmethod
    def builtin(cls) -> FileTypeRegistry:
        """A new registry holding the built-in types.

        The definition files are parsed and validated once per process; each call returns an
        independent registry, so types registered on one do not leak into another.
        """
        return cls(_builtin_types())

    # -- registration ---------------------------------------------------------------------

    def register(self, file_type: FileType, *, replace: bool = False) -> None:
        """Add a type. A registered id raises :class:`DuplicateFileTypeError` unless ``replace``.

        A replaced type keeps its predecessor's place in the registration order.
        """
        self.register_all((file_type,), replace=replace)

    def register_all(self, file_types: Iterable[FileType], *, replace: bool = False) -> None:
        """Add several types at once (all or none: a duplicate id leaves the registry unchanged)."""
        with self._lock:
            types = dict(self._types)
            for file_type in file_types:
                if not isinstance(file_type, FileType):
                    raise TypeError(f"expected a FileType, not {type(file_type).__name__}")
                existing = types.get(file_type.id)
                if existing is not None and not replace:
                    origin = f" (from {existing.source})" if existing.source else ""
                    raise DuplicateFileTypeError(
                        f"file type id {file_type.id!r} is already registered{origin};"
                        " pass replace=True to replace it"
                    )
                types[file_type.id] = file_type
            self._swap(types)

    def load(self, path: str | os.PathLike[str], *, replace: bool = False) -> list[FileType]:
        """Register every type of a TOML definitions file; returns them."""
        file_types = load_definitions(path)
        self.register_all(file_types, replace=replace)
        return file_types

    def unregister(self, type_id: str) -> FileType:
        """Remove a type and return it; ``KeyError`` if it is not registered."""
        with self._lock:
            types = dict(self._types)
            removed = types.pop(type_id)
            self._swap(types)
            return removed

    def _swap(self, types: dict[str, FileType]) -> None:
        # Copy-on-write: a reader in another thread keeps the tables it already holds.
        index = _Index(types)
        self._types = types
        self._index = index

    # -- lookups --------------------------------------------------------------------------

    def get(self, type_id: str) -> FileType | None:
        return self._types.get(type_id)

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._types

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self) -> Iterator[FileType]:
        """The types in registration order."""
        return iter(tuple(self._types.values()))

    def by_extension(self, ext: str) -> list[FileType]:
        """Types with this extension (``"png"``, ``".PNG"``, ``"tar.gz"``), best priority first."""
        return list(self._index.by_ext.get(ext.lstrip(".").lower(), ()))

    def by_filename(self, filename: str) -> list[FileType]:
        """Types defined for this whole file name (case-insensitive), best priority first."""
        return list(self._index.by_name.get(filename.lower(), ()))

    def by_mime_type(self, mime_type: str) -> list[FileType]:
        """Types with this MIME type, best priority first."""
        return list(self._index.by_mime.get(mime_type.lower(), ()))

    def by_category(self, category: Category) -> list[FileType]:
        """Types of this category, in registration order."""
        return [ft for ft in self._types.values() if ft.category is category]

    # -- identification -------------------------------------------------------------------

    def identify_by_name(self, name: str) -> FileType | None:
        """The best type for a file name (or path), from the name alone; None if unknown.

        A whole file name (``Makefile``) first, then a compound extension (``x.tar.gz``), then
        the last extension. A leading dot does not start an extension (``.bashrc`` has none).
        """
        index = self._index
        lower = name.lower()
        slash = lower.rfind("/")
        if slash >= 0:
            lower = lower[slash + 1 :]
        found = index.best_name.get(lower)
        if found is not None:
            return found
        dot = lower.rfind(".")
        if dot <= 0:
            return None
        if index.compound:
            dot2 = lower.rfind(".", 0, dot)
            if dot2 > 0:
                found = index.best_ext.get(lower[dot2 + 1 :])
                if found is not None:
                    return found
        return index.best_ext.get(lower[dot + 1 :])

    def identify(self, path: str | os.PathLike[str]) -> Identification:
        """Identify a file from its name and its first :data:`HEAD_SIZE` bytes (one read).

        ``OSError`` propagates for a file that cannot be opened or read.
        """
        fd = os.open(path, _OPEN_FLAGS)
        try:
            head = os.read(fd, HEAD_SIZE)
        finally:
            os.close(fd)
        return self.identify_bytes(os.path.basename(os.fspath(path)), head)

    def identify_bytes(self, name: str | None, head: bytes) -> Identification:
        """Identify a file from its name (or None) and its first bytes (``head``).

        ``head`` should be the first :data:`HEAD_SIZE` bytes (all of a smaller file); only those
        are looked at. Lets a caller that already read them (the indexer) avoid a second read.
        """
        index = self._index
        if len(head) > HEAD_SIZE:
            head = head[:HEAD_SIZE]
        named = self._name_candidates(index, name) if name else ()
        for key, ft in named:
            agreeing: MagicPattern | None = None
            for pattern in ft.magic:
                if pattern.matches(head) and (agreeing is None or pattern.specificity > agreeing.specificity):
                    agreeing = pattern
            if agreeing is not None:
                return Identification(ft, Confidence.EXTENSION_AND_MAGIC, key, agreeing)
        matches = self._match_magic(index, head)
        if matches:
            text: bool | None = None
            for pattern, ft in matches:
                if pattern.specificity < STRONG_MAGIC_BYTES:
                    if text is None:
                        text = looks_like_text(head)
                    if text:
                        continue
                return Identification(ft, Confidence.MAGIC, None, pattern)
        if named:
            for key, ft in named:
                if not ft.magic:
                    return Identification(ft, Confidence.EXTENSION, key)
            key, ft = named[0]
            return Identification(ft, Confidence.EXTENSION, key)
        if looks_like_text(head):
            return Identification(index.generic_text, Confidence.TEXT_HEURISTIC)
        return Identification(index.generic_binary, Confidence.UNKNOWN)

    @staticmethod
    def _name_candidates(index: _Index, name: str) -> tuple[_Named, ...]:
        """(name key, type) pairs for a name, best first: file name, compound, last extension."""
        lower = name.lower()
        slash = lower.rfind("/")
        if slash >= 0:
            lower = lower[slash + 1 :]
        by_name = index.named_name.get(lower, ())
        dot = lower.rfind(".")
        if dot <= 0:
            return by_name
        by_ext = index.named_ext.get(lower[dot + 1 :], ())
        merged = by_name
        if index.compound:
            dot2 = lower.rfind(".", 0, dot)
            if dot2 > 0:
                merged += index.named_ext.get(lower[dot2 + 1 :], ())
        if not merged:
            return by_ext
        merged += by_ext
        unique: dict[str, _Named] = {}
        for named in merged:
            unique.setdefault(named[1].id, named)
        return tuple(unique.values())

    @staticmethod
    def _match_magic(index: _Index, head: bytes) -> list[tuple[MagicPattern, FileType]]:
        """Types whose magic matches ``head``, each with its best pattern, best first.

        Of types sharing one pattern, only the best ranked is returned.
        """
        size = len(head)
        found: list[_Candidate] = []
        for pos, table in index.anchors:
            if pos >= size:
                break
            bucket = table.get(head[pos])
            if bucket is not None:
                always, split, by_byte = bucket
                if always:
                    _collect(always, head, found)
                if 0 <= split < size:
                    more = by_byte.get(head[split])
                    if more is not None:
                        _collect(more, head, found)
        if not found:
            return []
        if len(found) == 1:
            return [(found[0][0], found[0][1])]
        found.sort(key=lambda c: c[2])
        best: dict[str, tuple[MagicPattern, FileType]] = {}
        for candidate in found:
            best.setdefault(candidate[1].id, (candidate[0], candidate[1]))
        return list(best.values())
