from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacedrive.core import sdpath
from spacedrive.core.errors import InvalidSdPath, SpacedriveError
from spacedrive.core.sdpath import (
    BUILTIN_CLOUD_SERVICES,
    CloudSdPath,
    ContentSdPath,
    PhysicalSdPath,
    SdPath,
    cloud_services,
    is_cas_id,
    register_cloud_service,
)

DEVICE = uuid.UUID("0b6c2a9e-4f1d-4c8a-9b3e-5d7f1a2c3e4f")
D = str(DEVICE)
CAS = "0123456789abcdef"

# -- strategies --------------------------------------------------------------------------------

text_segments = st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and "\0" not in s)
# Undecodable file names, held the way Python holds them (os.fsdecode: UTF-8 + surrogateescape).
byte_segments = (
    st.binary(min_size=1, max_size=12)
    .filter(lambda b: b"/" not in b and b"\0" not in b)
    .map(lambda b: b.decode("utf-8", "surrogateescape"))
)
tricky_segments = st.sampled_from(["a b", "#", "?", "%", "%20", "100%", "é", "日本語", "a+b", "~x", ":@;="])
segments = st.one_of(text_segments, byte_segments, tricky_segments).filter(lambda s: s not in (".", ".."))
abs_paths = st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts))
physical_paths = st.builds(SdPath.physical, st.uuids(), abs_paths)
identifiers = st.one_of(
    st.text(min_size=1, max_size=20).filter(lambda s: "\0" not in s),
    st.sampled_from(["bucket", "my.bucket-1", "me@host:22", "[::1]:2022", "0AHd3xYz_-", "a/b"]),
)
cloud_paths = st.builds(SdPath.cloud, st.sampled_from(sorted(BUILTIN_CLOUD_SERVICES)), identifiers, abs_paths)
cas_ids = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
content_paths = st.builds(SdPath.content, cas_ids)
any_paths = st.one_of(physical_paths, cloud_paths, content_paths)


def is_printable_ascii(text: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in text)


# -- round trips -------------------------------------------------------------------------------


@given(physical_paths)
def test_physical_paths_round_trip_through_their_uri(p: PhysicalSdPath) -> None:
    uri = str(p)
    assert SdPath.parse(uri) == p
    assert str(SdPath.parse(uri)) == uri
    assert is_printable_ascii(uri)


@given(cloud_paths)
def test_cloud_paths_round_trip_through_their_uri(p: CloudSdPath) -> None:
    uri = p.to_uri()
    assert uri.startswith(f"{p.service}://")
    assert SdPath.parse(uri) == p
    assert is_printable_ascii(uri)


@given(content_paths)
def test_content_paths_round_trip_through_their_uri(p: ContentSdPath) -> None:
    assert SdPath.parse(str(p)) == p
    assert str(p) == f"sd://content/{p.cas_id}"


@given(st.uuids(), st.lists(st.binary(min_size=1, max_size=8), max_size=5))
def test_a_physical_path_given_as_bytes_keeps_its_bytes(device: uuid.UUID, parts: list[bytes]) -> None:
    parts = [b for b in parts if b"/" not in b and b"\0" not in b and b not in (b".", b"..")]
    raw = b"/" + b"/".join(parts)
    p = SdPath.physical(device, raw)
    assert p.path_bytes() == raw
    assert SdPath.parse(str(p)).path_bytes() == raw  # type: ignore[attr-defined]


@given(physical_paths, segments)
def test_join_then_parent_gives_back_the_path(p: PhysicalSdPath, name: str) -> None:
    child = p.join(name)
    assert child.parent == p
    assert child.name == SdPath.physical(DEVICE, "/" + name).name
    assert SdPath.parse(str(child)) == child


@given(any_paths)
def test_equal_addresses_have_equal_uris_and_hashes(p: SdPath) -> None:
    again = SdPath.parse(str(p))
    assert again == p
    assert hash(again) == hash(p)
    assert {p, again} == {p}


# -- the encoding ------------------------------------------------------------------------------


def test_special_characters_are_percent_encoded() -> None:
    p = SdPath.physical(DEVICE, "/home/me/a b#c?d%e/résumé.pdf")
    assert str(p) == f"sd://{D}/home/me/a%20b%23c%3Fd%25e/r%C3%A9sum%C3%A9.pdf"
    assert SdPath.parse(str(p)).path == "/home/me/a b#c?d%e/résumé.pdf"  # type: ignore[attr-defined]


def test_undecodable_bytes_are_encoded_as_themselves() -> None:
    p = SdPath.physical(DEVICE, b"/data/caf\xe9")
    assert p.path == "/data/caf\udce9"
    assert str(p) == f"sd://{D}/data/caf%E9"


def test_escaped_bytes_that_form_utf8_are_the_same_path_as_the_text() -> None:
    assert SdPath.physical(DEVICE, "/\udcc3\udca9") == SdPath.physical(DEVICE, "/é")


def test_rfc3986_sub_delimiters_stay_readable() -> None:
    p = SdPath.physical(DEVICE, "/a+b/c=d;e,f/(x)/it's!/~me@host:1")
    assert str(p) == f"sd://{D}/a+b/c=d;e,f/(x)/it's!/~me@host:1"


def test_cloud_uris_use_the_service_as_scheme() -> None:
    s3 = SdPath.cloud("s3", "bucket", "key/with/slashes")
    assert str(s3) == "s3://bucket/key/with/slashes"
    assert s3.identifier == "bucket"
    assert s3.path == "/key/with/slashes"
    assert (
        str(SdPath.cloud("gdrive", "0AHd3xYz", "/Reports/2024 Q1")) == "gdrive://0AHd3xYz/Reports/2024%20Q1"
    )
    assert str(SdPath.cloud("sftp", "me@host:22", "/srv")) == "sftp://me@host:22/srv"
    assert str(SdPath.cloud("webdav", "dav.example.com")) == "webdav://dav.example.com/"
    assert str(SdPath.cloud("s3", "odd/bucket id", "k")) == "s3://odd%2Fbucket%20id/k"


def test_parsing_accepts_what_people_type() -> None:
    typed = SdPath.parse(f"sd://{D.upper()}/home/me/My Files/café.txt")
    assert typed == SdPath.physical(DEVICE, "/home/me/My Files/café.txt")
    assert str(typed) == f"sd://{D}/home/me/My%20Files/caf%C3%A9.txt"
    assert SdPath.parse("S3://bucket/k") == SdPath.cloud("s3", "bucket", "/k")
    assert SdPath.parse(f"sd://CONTENT/{CAS}") == SdPath.content(CAS)
    assert SdPath.parse(f"sd://{D}/a%2fb") == SdPath.physical(DEVICE, "/a/b")


def test_paths_are_normalized_like_pathlib_does() -> None:
    assert SdPath.physical(DEVICE, "/a//b/./c/") == SdPath.physical(DEVICE, "/a/b/c")
    assert SdPath.parse(f"sd://{D}/a//b/./c/").path == "/a/b/c"  # type: ignore[attr-defined]
    assert SdPath.parse(f"sd://{D}") == SdPath.physical(DEVICE, "/")
    assert SdPath.parse("s3://bucket") == SdPath.cloud("s3", "bucket", "/")
    assert str(SdPath.physical(DEVICE, "/")) == f"sd://{D}/"


# -- behaviour ---------------------------------------------------------------------------------


def test_name_parent_parts_and_join_work_on_physical_and_cloud_paths() -> None:
    p = SdPath.physical(DEVICE, "/home/me/notes.txt")
    assert p.name == "notes.txt"
    assert p.parent == SdPath.physical(DEVICE, "/home/me")
    assert p.parts == ("home", "me", "notes.txt")
    assert p.parent.join("other/file.md") == SdPath.physical(DEVICE, "/home/me/other/file.md")
    root = SdPath.physical(DEVICE, "/")
    assert root.name == ""
    assert root.parent == root
    assert root.parts == ()
    assert root.join("etc") == SdPath.physical(DEVICE, "/etc")

    c = SdPath.cloud("s3", "bucket", "a/b")
    assert c.name == "b"
    assert c.parent == SdPath.cloud("s3", "bucket", "/a")
    assert isinstance(c.parent, CloudSdPath)
    assert c.join("c") == SdPath.cloud("s3", "bucket", "/a/b/c")
    assert c.parent.parent.parent == SdPath.cloud("s3", "bucket")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "cannot join an empty name"),
        ("/etc", "cannot join absolute path '/etc'"),
        ("..", "contains a '..' segment"),
        ("a/../../b", "contains a '..' segment"),
        ("a\0b", "contains a NUL byte"),
    ],
)
def test_join_refuses_names_that_escape_or_are_malformed(name: str, message: str) -> None:
    with pytest.raises(InvalidSdPath, match=re.escape(message)):
        SdPath.physical(DEVICE, "/home").join(name)


def test_is_local_is_true_only_for_physical_paths_of_that_device() -> None:
    p = SdPath.physical(DEVICE, "/x")
    assert p.is_local(DEVICE)
    assert p.is_local(D)
    assert not p.is_local(uuid.uuid4())
    assert not SdPath.cloud("s3", "b", "/x").is_local(DEVICE)
    assert not SdPath.content(CAS).is_local(DEVICE)


def test_the_three_kinds_are_told_apart() -> None:
    assert SdPath.physical(DEVICE, "/x").kind == "physical"
    assert SdPath.cloud("s3", "b").kind == "cloud"
    assert SdPath.content(CAS).kind == "content"
    assert SdPath.physical(DEVICE, "/x") != SdPath.cloud("s3", str(DEVICE), "/x")


def test_sdpaths_are_immutable_and_hashable() -> None:
    p = SdPath.physical(DEVICE, "/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.path = "/y"  # type: ignore[misc]
    assert {p: 1}[SdPath.parse(str(p))] == 1
    assert repr(p) == f"PhysicalSdPath('sd://{D}/x')"


def test_the_base_class_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError, match="SdPath is abstract"):
        SdPath()


def test_physical_paths_convert_to_local_paths() -> None:
    p = SdPath.physical(DEVICE, b"/tmp/caf\xe9")
    assert bytes(p.local_path()) == b"/tmp/caf\xe9"


def test_is_cas_id_checks_length_case_and_alphabet() -> None:
    assert is_cas_id(CAS)
    assert not is_cas_id(CAS.upper())
    assert not is_cas_id(CAS[:-1])
    assert not is_cas_id(CAS[:-1] + "g")


# -- errors ------------------------------------------------------------------------------------

MALFORMED = [
    ("", "the URI is empty"),
    ("/home/me/file", "this is a local path, not a URI"),
    ("home/me", "no scheme"),
    ("sd:/" + D + "/x", "missing '//' after 'sd:'"),
    ("://x/y", "the scheme before '://' is empty"),
    ("1sd://x/y", "invalid scheme '1sd'"),
    ("ftp://host/file", "unknown scheme 'ftp'; expected 'sd' or a cloud service"),
    ("http://example.com/", "unknown scheme 'http'"),
    ("https://example.com/search?q=1", "unknown scheme 'https'"),
    ("sd:///home/me", "missing device id after 'sd://'"),
    ("sd://laptop/home", "device id 'laptop' is not a UUID"),
    ("sd://0b6c2a9e4f1d4c8a9b3e5d7f1a2c3e4f/x", "is not a UUID (8-4-4-4-12 hex digits)"),
    (f"sd://{D}/home/../etc", "contains a '..' segment"),
    (f"sd://{D}/home/%2E%2E/etc", "contains a '..' segment"),
    (f"sd://{D}/a%00b", "the path contains a NUL byte (%00)"),
    (
        f"sd://{D}/a?b=1",
        "raw '?' at position 43: SdPath URIs have no query or fragment; percent-encode it as %3F",
    ),
    (f"sd://{D}/a#frag", "raw '#' at position 43"),
    (f"sd://{D}/a%zzb", "malformed percent-escape '%zz'"),
    (f"sd://{D}/a%4", "malformed percent-escape '%4'"),
    (f"sd://{D}/a\nb", "raw control character U+000A"),
    (f"sd://{D}/a\ud800", "the path contains the lone surrogate U+D800"),
    ("sd://content/", "missing cas_id after 'sd://content/'"),
    ("sd://content", "missing cas_id"),
    ("sd://content/0123456789abcde", "has 15 characters; a cas_id is 16 hex digits"),
    ("sd://content/0123456789abcdef0", "has 17 characters"),
    ("sd://content/0123456789ABCDEF", "has uppercase letters; a cas_id is lowercase hex"),
    ("sd://content/0123456789abcdeg", "is not hexadecimal (0-9, a-f)"),
    (f"sd://content/{CAS}/extra", "unexpected path after the cas_id"),
    ("s3:///key", "missing identifier (bucket, drive, folder id or host) after 's3://'"),
    ("gdrive:///0AHd3/x", "missing identifier"),
    ("s3://%00/key", "the identifier contains a NUL byte"),
    ("s3://bucket/a/../b", "contains a '..' segment"),
]


@pytest.mark.parametrize(("uri", "message"), MALFORMED)
def test_malformed_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(InvalidSdPath, match=re.escape(message)) as info:
        SdPath.parse(uri)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SpacedriveError)
    assert str(info.value).startswith("invalid SdPath URI")


def test_parse_takes_only_strings() -> None:
    with pytest.raises(TypeError, match="takes a str, not bytes"):
        SdPath.parse(b"sd://content/0123456789abcdef")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SdPath.physical(DEVICE, "home/me"), "relative path 'home/me'"),
        (lambda: SdPath.physical(DEVICE, ""), "empty path"),
        (lambda: SdPath.physical(DEVICE, "/a/../b"), "contains a '..' segment"),
        (lambda: SdPath.physical(DEVICE, "/a\0b"), "contains a NUL byte"),
        (lambda: SdPath.physical(DEVICE, "/a\ud800"), "lone surrogate U+D800"),
        (lambda: SdPath.physical("not-a-uuid", "/x"), "device id 'not-a-uuid' is not a UUID"),
        (lambda: SdPath.physical("", "/x"), "missing device id"),
        (lambda: SdPath.physical(DEVICE, 42), "a path must be a str, bytes or path-like object"),
        (lambda: SdPath.cloud("S3", "b"), "invalid cloud service name 'S3'"),
        (lambda: SdPath.cloud("nosuch", "b"), "unknown cloud service 'nosuch'"),
        (lambda: SdPath.cloud("sd", "b"), "'sd' is not a cloud service"),
        (lambda: SdPath.cloud("s3", ""), "s3 address has no identifier"),
        (lambda: SdPath.cloud("s3", "b\0"), "contains a NUL byte"),
        (lambda: SdPath.cloud("s3", "b", "/a/../.."), "contains a '..' segment"),
        (lambda: SdPath.content("abc"), "has 3 characters"),
        (lambda: SdPath.content("0123456789abcdeX"), "is not hexadecimal"),
    ],
)
def test_constructors_refuse_invalid_arguments(build: object, message: str) -> None:
    with pytest.raises(InvalidSdPath, match=re.escape(message)):
        build()  # type: ignore[operator]


# -- cloud services ----------------------------------------------------------------------------


def test_a_registered_cloud_service_becomes_a_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdpath, "_cloud_services", set(BUILTIN_CLOUD_SERVICES))
    with pytest.raises(InvalidSdPath, match="unknown scheme 'box'"):
        SdPath.parse("box://12345/Documents")
    register_cloud_service("box")
    register_cloud_service("box")
    assert "box" in cloud_services()
    assert SdPath.parse("box://12345/Documents") == SdPath.cloud("box", "12345", "Documents")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sd", "'sd' is reserved"),
        ("file", "'file' is reserved"),
        ("https", "'https' is reserved"),
        ("Box", "invalid cloud service name 'Box'"),
        ("9p", "invalid cloud service name '9p'"),
        ("a_b", "invalid cloud service name 'a_b'"),
        ("", "invalid cloud service name ''"),
    ],
)
def test_reserved_or_malformed_service_names_cannot_be_registered(
    name: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdpath, "_cloud_services", set(BUILTIN_CLOUD_SERVICES))
    with pytest.raises(InvalidSdPath, match=re.escape(message)):
        register_cloud_service(name)
    assert cloud_services() == BUILTIN_CLOUD_SERVICES
