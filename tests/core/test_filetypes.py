"""The file type registry: built-in definitions, identification by name and by content."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import sqlite3
import tarfile
import wave
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from spacedrive.core.filetypes import (
    HEAD_SIZE,
    Category,
    Confidence,
    DuplicateFileTypeError,
    FileType,
    FileTypeDefinitionError,
    FileTypeRegistry,
    MagicPattern,
    load_definitions,
    looks_like_text,
)

REGISTRY = FileTypeRegistry.builtin()
DEFINITIONS = resources.files("spacedrive.core.filetypes").joinpath("definitions")

#: Types whose magic is shared with a more general format, so that the bytes alone (no name)
#: identify the general one: the winner for each (type id, pattern), or for every pattern of the
#: type when the pattern is None. The name (extension) is what tells these apart.
SHARED_MAGIC: dict[tuple[str, str | None], str] = {
    ("image/apng", None): "image/png",
    ("image/heic", "66 74 79 70 6D 69 66 31"): "image/heif",  # ftypmif1
    ("image/heic", "66 74 79 70 6D 73 66 31"): "image/heif",  # ftypmsf1
    ("image/avif", "66 74 79 70 6D 69 66 31"): "image/heif",
    ("image/x-nikon-nef", None): "image/tiff",
    ("image/x-sony-arw", None): "image/tiff",
    ("image/x-adobe-dng", None): "image/tiff",
    ("image/x-pentax-pef", None): "image/tiff",
    ("video/quicktime", "66 74 79 70"): "video/mp4",  # bare ftyp box
    ("video/webm", None): "video/x-matroska",
    ("video/x-ms-wmv", None): "video/x-ms-asf",
    ("video/ogg", "4F 67 67 53"): "audio/ogg",
    ("audio/opus", "4F 67 67 53"): "audio/ogg",
    ("audio/x-speex", "4F 67 67 53"): "audio/ogg",
    ("audio/x-ms-wma", None): "video/x-ms-asf",
    ("audio/x-matroska", None): "video/x-matroska",
    ("application/msword", None): "application/x-ole-storage",
    ("application/vnd.ms-excel", None): "application/x-ole-storage",
    ("application/vnd.ms-powerpoint", None): "application/x-ole-storage",
    ("application/x-msi", None): "application/x-ole-storage",
    ("application/vnd.ms-outlook", None): "application/x-ole-storage",
    ("application/vnd.comicbook-rar", None): "application/vnd.rar",
    ("application/x-compressed-tar", None): "application/gzip",
    ("application/x-bzip2-compressed-tar", None): "application/x-bzip2",
    ("application/x-xz-compressed-tar", None): "application/x-xz",
    ("application/x-zstd-compressed-tar", None): "application/zstd",
    ("application/x-ruby-gem", None): "application/x-tar",
    ("application/x-snap", None): "application/x-squashfs",
    ("application/x-apple-installer-package", None): "application/x-xar",
    ("application/x-sharedlib", None): "application/x-executable",
    ("application/x-msdownload", None): "application/vnd.microsoft.portable-executable",
    ("application/x-webarchive", None): "application/x-plist",
}
ZIP_BASED = {
    ft.id
    for ft in REGISTRY
    if ft.id != "application/zip" and any(m.pattern == "50 4B 03 04" for m in ft.magic)
}
for _zip_type in ZIP_BASED:
    SHARED_MAGIC.setdefault((_zip_type, "50 4B 03 04"), "application/zip")


def pattern_bytes(pattern: str, fill: int = 0) -> bytes:
    """The bytes a magic pattern describes, wildcards replaced by ``fill``."""
    out = bytearray()
    for token in pattern.split():
        if token == "??":
            out.append(fill)
        elif token.startswith("??{"):
            out.extend([fill] * int(token[3:-1]))
        else:
            out.append(int(token, 16))
    return bytes(out)


def synthetic_file(pattern: MagicPattern) -> bytes:
    """A file that starts with the pattern at its offset, followed by binary filler."""
    return b"\0" * pattern.offset + pattern_bytes(pattern.pattern) + bytes(range(256)) * 4


def magic_cases() -> list[tuple[FileType, int, MagicPattern]]:
    return [(ft, i, m) for ft in REGISTRY for i, m in enumerate(ft.magic)]


def named_magic_cases() -> list[tuple[FileType, int, MagicPattern]]:
    """Magic cases of types with an extension or a file name to give the file."""
    return [case for case in magic_cases() if case[0].extensions or case[0].filenames]


def case_id(case: object) -> str:
    if isinstance(case, tuple):
        return f"{case[0].id}#{case[1]}"
    return str(case)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# -- the built-in definitions -----------------------------------------------------------------


def test_every_builtin_definition_file_parses() -> None:
    files = sorted(entry.name for entry in DEFINITIONS.iterdir() if entry.name.endswith(".toml"))
    assert len(files) >= 12
    total = 0
    for name in files:
        with resources.as_file(DEFINITIONS.joinpath(name)) as path:
            types = load_definitions(path)
        assert types, f"{name} defines no type"
        total += len(types)
    assert total == len(REGISTRY)


def test_builtin_ids_are_unique_and_there_are_at_least_a_hundred_types() -> None:
    ids = [ft.id for ft in REGISTRY]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100
    assert sum(1 for ft in REGISTRY if ft.magic) >= 100


def test_builtin_definitions_use_the_documented_id_scheme_and_lowercase_extensions() -> None:
    for ft in REGISTRY:
        assert "/" in ft.id and ft.id == ft.id.lower(), ft.id
        for ext in ft.extensions:
            assert ext == ext.lower() and not ext.startswith("."), (ft.id, ext)
        assert isinstance(ft.category, Category)


def test_builtin_registry_is_fresh_on_each_call_so_registrations_do_not_leak() -> None:
    first = FileTypeRegistry.builtin()
    first.register(FileType("leak-test:thing", "Thing", Category.CUSTOM, ("leaktest",)))
    assert "leak-test:thing" not in FileTypeRegistry.builtin()
    assert len(FileTypeRegistry.builtin()) == len(first) - 1


# -- magic ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", named_magic_cases(), ids=case_id)
def test_each_magic_pattern_identifies_its_type_together_with_its_extension(
    case: tuple[FileType, int, MagicPattern], tmp_path: Path
) -> None:
    file_type, _, pattern = case
    name = f"sample.{file_type.extensions[0]}" if file_type.extensions else file_type.filenames[0]
    found = REGISTRY.identify(write(tmp_path / name, synthetic_file(pattern)))
    assert found.file_type.id == file_type.id
    assert found.confidence is Confidence.EXTENSION_AND_MAGIC
    assert found.magic is not None and found.magic.matches(synthetic_file(pattern))


@pytest.mark.parametrize("case", magic_cases(), ids=case_id)
def test_each_magic_pattern_identifies_its_type_without_a_name_hint(
    case: tuple[FileType, int, MagicPattern], tmp_path: Path
) -> None:
    file_type, _, pattern = case
    expected = SHARED_MAGIC.get(
        (file_type.id, pattern.pattern), SHARED_MAGIC.get((file_type.id, None), file_type.id)
    )
    found = REGISTRY.identify(write(tmp_path / "sample", synthetic_file(pattern)))
    assert found.file_type.id == expected
    assert found.confidence is Confidence.MAGIC
    assert found.extension is None


def test_png_with_jpg_extension_is_identified_by_magic(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
    found = REGISTRY.identify(write(tmp_path / "holiday.jpg", png))
    assert found.file_type.id == "image/png"
    assert found.confidence is Confidence.MAGIC
    assert found.category is Category.IMAGE


def test_weak_magic_is_not_trusted_alone_on_bytes_that_look_like_text(tmp_path: Path) -> None:
    # "BM" is the BMP signature, "MZ" the DOS/PE one: too short to overrule text.
    assert REGISTRY.identify(write(tmp_path / "cars", "BMW and Mazda\n")).file_type.id == "text/plain"
    assert (
        REGISTRY.identify(write(tmp_path / "notes.txt", "MZ is a prefix\n")).confidence
        is Confidence.EXTENSION
    )
    bmp = b"BM" + (70).to_bytes(4, "little") + bytes(64)
    assert REGISTRY.identify(write(tmp_path / "picture", bmp)).file_type.id == "image/bmp"


def test_zip_based_formats_are_told_apart_by_extension(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    data = buffer.getvalue()
    expected = {
        "report.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "budget.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "slides.pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "app.jar": "application/java-archive",
        "bundle.zip": "application/zip",
    }
    for name, type_id in expected.items():
        found = REGISTRY.identify(write(tmp_path / name, data))
        assert (found.file_type.id, found.confidence) == (type_id, Confidence.EXTENSION_AND_MAGIC)
    found = REGISTRY.identify(write(tmp_path / "no-extension", data))
    assert (found.file_type.id, found.confidence) == ("application/zip", Confidence.MAGIC)


def test_epub_and_opendocument_are_identified_without_extension_from_their_mimetype_entry(
    tmp_path: Path,
) -> None:
    for mimetype, type_id in [
        ("application/epub+zip", "application/epub+zip"),
        ("application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text"),
    ]:
        path = tmp_path / type_id.replace("/", "_")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
            archive.writestr("content.xml", "<doc/>")
        found = REGISTRY.identify(path)
        assert (found.file_type.id, found.confidence) == (type_id, Confidence.MAGIC)


def test_files_written_by_real_encoders_are_identified_without_extension(tmp_path: Path) -> None:
    payload = b"spacedrive " * 100
    write(tmp_path / "gz", gzip.compress(payload))
    write(tmp_path / "bz", bz2.compress(payload))
    write(tmp_path / "xz", lzma.compress(payload))
    with tarfile.open(tmp_path / "tar", "w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with zipfile.ZipFile(tmp_path / "zip", "w") as archive:
        archive.writestr("a.txt", payload)
    connection = sqlite3.connect(tmp_path / "sqlite")
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    with wave.open(str(tmp_path / "wav"), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(800))
    expected = {
        "gz": "application/gzip",
        "bz": "application/x-bzip2",
        "xz": "application/x-xz",
        "tar": "application/x-tar",
        "zip": "application/zip",
        "sqlite": "application/vnd.sqlite3",
        "wav": "audio/wav",
    }
    for name, type_id in expected.items():
        found = REGISTRY.identify(tmp_path / name)
        assert (name, found.file_type.id, found.confidence) == (name, type_id, Confidence.MAGIC)


def test_double_extension_tar_gz_is_identified_as_a_compressed_tarball(tmp_path: Path) -> None:
    data = gzip.compress(b"not really a tar, but gzip")
    found = REGISTRY.identify(write(tmp_path / "backup.TAR.GZ", data))
    assert found.file_type.id == "application/x-compressed-tar"
    assert (found.confidence, found.extension) == (Confidence.EXTENSION_AND_MAGIC, "tar.gz")
    assert REGISTRY.identify(write(tmp_path / "log.gz", data)).file_type.id == "application/gzip"
    assert REGISTRY.identify(write(tmp_path / "my.backup.gz", data)).file_type.id == "application/gzip"


def test_ts_is_typescript_unless_it_holds_mpeg_transport_stream_packets(tmp_path: Path) -> None:
    assert [ft.id for ft in REGISTRY.by_extension("ts")] == ["text/x-typescript", "video/mp2t"]
    assert REGISTRY.identify_by_name("main.ts") == REGISTRY.get("text/x-typescript")
    source = REGISTRY.identify(write(tmp_path / "main.ts", "export const x: number = 1;\n"))
    assert (source.file_type.id, source.confidence) == ("text/x-typescript", Confidence.EXTENSION)
    packet = b"\x47\x40\x00\x10" + bytes(184)
    stream = REGISTRY.identify(write(tmp_path / "clip.ts", packet * 8))
    assert (stream.file_type.id, stream.confidence) == ("video/mp2t", Confidence.EXTENSION_AND_MAGIC)


# -- names, extensions, text ------------------------------------------------------------------


def test_identify_by_name_uses_file_names_compound_and_last_extensions() -> None:
    by_name = REGISTRY.identify_by_name
    assert by_name("IMG_0001.JPG") == REGISTRY.get("image/jpeg")
    assert by_name("photos/2024/IMG_0001.jpeg") == REGISTRY.get("image/jpeg")
    assert by_name("release.tar.xz") == REGISTRY.get("application/x-xz-compressed-tar")
    assert by_name("jquery.min.js") == REGISTRY.get("text/javascript")
    assert by_name("Makefile") == REGISTRY.get("text/x-makefile")
    assert by_name("CMakeLists.txt") == REGISTRY.get("text/x-cmake")
    assert by_name(".bashrc") == REGISTRY.get("text/x-shellscript")
    assert by_name(".hidden") is None
    assert by_name("no_extension") is None
    assert by_name("file.") is None
    assert by_name("weird.unknownextension") is None


def test_known_extension_without_agreeing_magic_is_identified_by_extension_only(
    tmp_path: Path,
) -> None:
    markdown = REGISTRY.identify(write(tmp_path / "README.md", "# Title\n\nSome *text*.\n"))
    assert (markdown.file_type.id, markdown.confidence) == ("text/markdown", Confidence.EXTENSION)
    assert markdown.extension == "md" and markdown.magic is None
    corrupt = REGISTRY.identify(write(tmp_path / "broken.jpg", bytes(range(1, 200))))
    assert (corrupt.file_type.id, corrupt.confidence) == ("image/jpeg", Confidence.EXTENSION)


def test_text_without_a_known_extension_is_plain_text_by_the_text_heuristic(tmp_path: Path) -> None:
    found = REGISTRY.identify(write(tmp_path / "notes", "Grüße, 東京 — naïve café\n" * 3))
    assert (found.file_type.id, found.confidence) == ("text/plain", Confidence.TEXT_HEURISTIC)
    assert found.category is Category.TEXT
    # A multi-byte character cut by the 8 KiB boundary is still text.
    cut = ("a" * (HEAD_SIZE - 1) + "é" * 10).encode()
    assert cut[HEAD_SIZE - 1 : HEAD_SIZE + 1] == "é".encode()
    assert REGISTRY.identify(write(tmp_path / "long", cut)).confidence is Confidence.TEXT_HEURISTIC
    utf16 = "\ufeffhello".encode("utf-16-le")
    assert REGISTRY.identify(write(tmp_path / "wide", utf16)).confidence is Confidence.TEXT_HEURISTIC
    latin1 = "Ceci est un texte français, écrit en Latin-1.\n".encode("latin-1")
    assert REGISTRY.identify(write(tmp_path / "old", latin1)).confidence is Confidence.TEXT_HEURISTIC


def test_binary_without_known_extension_or_magic_is_unknown(tmp_path: Path) -> None:
    data = random.Random(20240501).randbytes(4096)
    found = REGISTRY.identify(write(tmp_path / "blob.qqq", data))
    assert (found.file_type.id, found.confidence) == ("application/octet-stream", Confidence.UNKNOWN)
    assert found.category is Category.UNKNOWN
    assert found.extension is None and found.magic is None


def test_empty_file_is_unknown_unless_its_name_is_known(tmp_path: Path) -> None:
    assert REGISTRY.identify(write(tmp_path / "empty", b"")).confidence is Confidence.UNKNOWN
    found = REGISTRY.identify(write(tmp_path / "empty.txt", b""))
    assert (found.file_type.id, found.confidence) == ("text/plain", Confidence.EXTENSION)


def test_looks_like_text_rejects_nul_and_control_bytes() -> None:
    assert looks_like_text(b"plain ascii\twith tabs\r\n")
    assert not looks_like_text(b"")
    assert not looks_like_text(b"abc\x00def")
    assert not looks_like_text(b"abc\x01\x02def")
    assert not looks_like_text(bytes(range(0x80, 0x100)))


def test_identify_bytes_agrees_with_identify(tmp_path: Path) -> None:
    data = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(100)
    path = write(tmp_path / "paper.pdf", data)
    assert REGISTRY.identify_bytes("paper.pdf", data) == REGISTRY.identify(path)
    assert REGISTRY.identify_bytes(None, data).confidence is Confidence.MAGIC
    assert REGISTRY.identify_bytes("paper.pdf", data + bytes(2 * HEAD_SIZE)).file_type.id == "application/pdf"


# -- reading ----------------------------------------------------------------------------------


def test_identify_reads_the_first_8_kib_with_one_read_even_for_a_large_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big.mp4", b"\x00\x00\x00\x20ftypisom" + bytes(1024 * 1024))
    reads: list[tuple[int, int]] = []
    real_read, real_pread = os.read, os.pread

    def spy_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append((n, len(data)))
        return data

    def spy_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        reads.append((n, len(data)))
        return data

    monkeypatch.setattr(os, "read", spy_read)
    monkeypatch.setattr(os, "pread", spy_pread)
    found = REGISTRY.identify(path)
    monkeypatch.undo()
    assert found.file_type.id == "video/mp4"
    assert reads == [(HEAD_SIZE, HEAD_SIZE)]
    assert HEAD_SIZE == 8192


def test_unreadable_files_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        REGISTRY.identify(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(IsADirectoryError):
        REGISTRY.identify(tmp_path / "folder.png")


# -- registration -----------------------------------------------------------------------------


def test_runtime_registration_of_a_custom_integration_type(tmp_path: Path) -> None:
    registry = FileTypeRegistry.builtin()
    custom = FileType(
        id="my-integration:xyz",
        name="XYZ Scene",
        category=Category.CUSTOM,
        extensions=("xyz",),
        mime_types=("application/x-xyz",),
        magic=(MagicPattern(0, "58 59 5A ?? 21"),),
    )
    registry.register(custom)
    assert registry.get("my-integration:xyz") is custom
    assert "my-integration:xyz" in registry
    assert registry.by_extension(".XYZ") == [custom]
    assert registry.by_mime_type("application/x-xyz") == [custom]
    assert custom in registry.by_category(Category.CUSTOM)
    assert registry.identify_by_name("scene.xyz") is custom
    found = registry.identify(write(tmp_path / "scene", b"XYZ1!" + bytes(10)))
    assert (found.file_type, found.confidence) == (custom, Confidence.MAGIC)
    found = registry.identify(write(tmp_path / "scene.xyz", b"XYZ1!" + bytes(10)))
    assert (found.file_type, found.confidence) == (custom, Confidence.EXTENSION_AND_MAGIC)

    with pytest.raises(DuplicateFileTypeError, match=r"my-integration:xyz.*replace=True"):
        registry.register(FileType("my-integration:xyz", "Other", Category.CUSTOM))
    replacement = FileType("my-integration:xyz", "XYZ v2", Category.CUSTOM, ("xyz2",))
    registry.register(replacement, replace=True)
    assert registry.get("my-integration:xyz") is replacement
    assert registry.identify_by_name("scene.xyz") is None
    assert registry.identify_by_name("scene.xyz2") is replacement
    assert registry.unregister("my-integration:xyz") is replacement
    assert len(registry) == len(REGISTRY)
    with pytest.raises(DuplicateFileTypeError, match="image/png"):
        registry.register(FileType("image/png", "Not PNG", Category.CUSTOM))


def test_a_higher_priority_type_wins_a_shared_extension() -> None:
    registry = FileTypeRegistry.builtin()
    raw = FileType("camera-tool:raw-png", "Camera PNG", Category.CUSTOM, ("png",), priority=500)
    registry.register(raw)
    assert registry.by_extension("png")[0] is raw
    assert registry.identify_by_name("x.png") is raw
    png = b"\x89PNG\r\n\x1a\n" + bytes(32)
    # The bytes are still a PNG: magic agreement beats the custom type's bare extension claim.
    assert registry.identify_bytes("x.png", png).file_type.id == "image/png"


def test_register_all_adds_nothing_when_one_id_is_a_duplicate() -> None:
    registry = FileTypeRegistry.builtin()
    before = len(registry)
    with pytest.raises(DuplicateFileTypeError):
        registry.register_all(
            [
                FileType("batch:one", "One", Category.CUSTOM, ("one",)),
                FileType("image/png", "Clash", Category.CUSTOM),
            ]
        )
    assert len(registry) == before and "batch:one" not in registry


def test_invalid_file_types_are_rejected_on_construction() -> None:
    with pytest.raises(ValueError, match="bad id"):
        FileType("NoSeparator", "x", Category.CUSTOM)
    with pytest.raises(ValueError, match="lowercase"):
        FileType("a:b", "x", Category.CUSTOM, ("PNG",))
    with pytest.raises(ValueError, match="lowercase"):
        FileType("a:b", "x", Category.CUSTOM, (".png",))
    with pytest.raises(ValueError, match="unknown category"):
        FileType("a:b", "x", "Sculpture")  # type: ignore[arg-type]
    assert FileType("a:b", "x", "image").category is Category.IMAGE  # type: ignore[arg-type]


def test_magic_patterns_support_wildcards_and_stay_within_the_head() -> None:
    pattern = MagicPattern(2, "41 ?? 43 ??{2} 46")
    assert pattern.matches(b"..A.C..F") and pattern.matches(b"xxAbCdeF")
    assert not pattern.matches(b"..A.C..G") and not pattern.matches(b"..A.C")
    assert (pattern.specificity, pattern.length) == (3, 6)
    assert MagicPattern(0, "ff d8").pattern == "FF D8"
    with pytest.raises(ValueError, match="past the 8192 bytes"):
        MagicPattern(8190, "00 00 00")
    with pytest.raises(ValueError, match="no fixed byte"):
        MagicPattern(0, "?? ??")
    with pytest.raises(ValueError, match="bad token"):
        MagicPattern(0, "4G")


# -- definition files -------------------------------------------------------------------------

GOOD_DEFINITION = """
[[types]]
id = "acme:widget"
name = "Acme Widget"
category = "Custom"
extensions = ["widget"]
mime_types = ["application/x-acme-widget"]
priority = 70
magic = [{ offset = 4, bytes = "57 49 44 ?? 47" }]
"""


def test_a_definitions_file_can_be_loaded_into_a_registry(tmp_path: Path) -> None:
    registry = FileTypeRegistry.builtin()
    path = write(tmp_path / "acme.toml", GOOD_DEFINITION)
    (widget,) = registry.load(path)
    assert widget.id == "acme:widget" and widget.priority == 70 and widget.source == str(path)
    assert widget.magic == (MagicPattern(4, "57 49 44 ?? 47"),)
    assert registry.identify_bytes(None, b"\0\0\0\0WIDxG").file_type is widget
    with pytest.raises(DuplicateFileTypeError):
        registry.load(path)


def test_malformed_toml_definition_file_gives_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", '[[types]]\nid = "acme:x\n')
    with pytest.raises(FileTypeDefinitionError, match=r"broken\.toml.*invalid TOML") as info:
        load_definitions(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('bytes = "57 49 44 ?? 47"', 'bytes = "57 ZZ"'), "bad token 'ZZ'"),
        (('category = "Custom"', 'category = "Sculpture"'), "unknown category"),
        (('extensions = ["widget"]', 'extensions = ["WIDGET"]'), "lowercase"),
        (("priority = 70", 'priority = "high"'), "priority must be an integer"),
        (("priority = 70", "colour = 70"), r"unknown key\(s\) \['colour'\]"),
        (('name = "Acme Widget"\n', ""), r"missing required key\(s\) \['name'\]"),
        (("offset = 4", "offset = 9000"), "past the 8192 bytes"),
    ],
)
def test_a_bad_definition_gives_an_error_naming_the_file_and_the_type_id(
    change: tuple[str, str], message: str, tmp_path: Path
) -> None:
    old, new = change
    assert old in GOOD_DEFINITION
    path = write(tmp_path / "widgets.toml", GOOD_DEFINITION.replace(old, new))
    with pytest.raises(FileTypeDefinitionError, match=message) as info:
        load_definitions(path)
    assert "widgets.toml" in str(info.value) and "'acme:widget'" in str(info.value)
    assert info.value.type_id == "acme:widget"


def test_an_id_defined_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "twice.toml", GOOD_DEFINITION + GOOD_DEFINITION)
    with pytest.raises(FileTypeDefinitionError, match=r"twice.toml.*acme:widget.*defined twice"):
        load_definitions(path)


# -- small API details ------------------------------------------------------------------------


def test_categories_are_stored_as_titlecase_names_and_map_to_spacedrive_content_kinds() -> None:
    assert str(Category.IMAGE) == "Image" and str(Category.FOLDER) == "Folder"
    assert Category.parse("spreadsheet") is Category.SPREADSHEET
    assert (Category.UNKNOWN.content_kind_id, Category.IMAGE.content_kind_id) == (0, 1)
    assert (Category.EXECUTABLE.content_kind_id, Category.PACKAGE.content_kind_id) == (15, 24)
    assert Category.CUSTOM.content_kind_id == 0
    assert REGISTRY.get("inode/directory") is not None
    assert REGISTRY.get("inode/directory").category is Category.FOLDER  # type: ignore[union-attr]


def test_by_extension_returns_types_sorted_by_priority_and_normalises_the_extension() -> None:
    key_types = REGISTRY.by_extension(".KEY")
    assert [ft.id for ft in key_types] == ["application/x-pem-file", "application/vnd.apple.keynote"]
    assert key_types[0].priority > key_types[1].priority
    assert REGISTRY.by_extension("nope") == []
    assert REGISTRY.by_filename("makefile") == [REGISTRY.get("text/x-makefile")]
    assert len(list(REGISTRY)) == len(REGISTRY)
