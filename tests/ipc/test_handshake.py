"""The handshake models, their validation, version and feature negotiation, and the launch contract."""

import msgspec
import pytest

from spacedrive.ipc._env import ENV_IPC, ENV_PROTOCOL, ENV_SECRET, IpcAddress, LaunchEnvironment, new_secret
from spacedrive.ipc._errors import ConfigurationError, ErrorCode, InvalidParams, ProtocolVersionMismatch
from spacedrive.ipc._handshake import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    ContentProcessor,
    Features,
    FileTypeHandler,
    InitializeParams,
    InitializeResult,
    LocationProvider,
    PeerInfo,
    SearchProvider,
    StreamsFeature,
    ThumbnailGenerator,
    VersionRange,
    check_accepted_features,
    negotiate_features,
    negotiate_version,
    parse_initialize_params,
    parse_initialize_result,
    to_wire,
    validate_capability,
)
from spacedrive.ipc._methods import CAPABILITY_METHODS, capability_of_method, method_spec, required_methods

# The examples of docs/protocol.md §4, verbatim.
INITIALIZE_PARAMS = b"""{"protocol_versions": {"min": 1, "max": 1},
 "core": {"name": "spacedrive", "version": "0.1.0"},
 "integration_id": "webdav",
 "permissions": {"network_access": ["dav.example.com"], "file_system_access": {"read": [], "write": []},
                 "core_apis": ["ReadLocations"], "requires_credentials": true},
 "config": {"endpoint": "https://dav.example.com"},
 "features": {"streams": {"initial_window": 1048576}, "compression": ["zstd"], "fd_passing": false}}"""
INITIALIZE_RESULT = b"""{"protocol_version": 1,
 "info": {"name": "WebDAV", "version": "1.2.0"},
 "capabilities": [{"type": "LocationProvider", "supported_protocols": ["webdav", "webdavs"],
                   "auth_methods": ["Basic"]}],
 "features": {"streams": {"initial_window": 1048576}, "compression": [], "fd_passing": false}}"""


def invalid_params_field(excinfo: pytest.ExceptionInfo[InvalidParams]) -> str:
    field = excinfo.value.data["field"]
    assert f"`{field}`" in excinfo.value.message
    return str(field)


def test_the_initialize_params_of_the_specification_parse_into_typed_models() -> None:
    params = parse_initialize_params(msgspec.json.decode(INITIALIZE_PARAMS))
    assert params.protocol_versions == VersionRange(1, 1)
    assert params.core == PeerInfo("spacedrive", "0.1.0")
    assert params.permissions.network_access == ["dav.example.com"]
    assert params.permissions.requires_credentials is True
    assert params.config == {"endpoint": "https://dav.example.com"}
    assert params.features.streams == StreamsFeature(initial_window=1048576)


def test_the_initialize_result_of_the_specification_parses_and_encodes_back_to_the_same_json() -> None:
    wire = msgspec.json.decode(INITIALIZE_RESULT)
    result = parse_initialize_result(wire)
    assert result.capabilities == [
        LocationProvider(supported_protocols=["webdav", "webdavs"], auth_methods=["Basic"])
    ]
    assert to_wire(result) == wire


def test_fields_added_by_a_newer_peer_are_ignored() -> None:
    wire = msgspec.json.decode(INITIALIZE_RESULT)
    wire["telemetry"] = {"x": 1}
    wire["capabilities"][0]["max_upload"] = 5
    wire["info"]["build"] = "abc"
    assert parse_initialize_result(wire).info == PeerInfo("WebDAV", "1.2.0")


def test_missing_optional_sections_of_initialize_get_their_defaults() -> None:
    params = parse_initialize_params(
        {
            "protocol_versions": {"min": 1, "max": 2},
            "core": {"name": "c", "version": "1"},
            "integration_id": "x",
        }
    )
    assert params.config == {}
    assert params.permissions.core_apis == []
    assert params.features == Features()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda w: w.pop("core"), "core"),
        (lambda w: w["protocol_versions"].pop("max"), "protocol_versions.max"),
        (lambda w: w["protocol_versions"].update(min="1"), "protocol_versions.min"),
        (lambda w: w["protocol_versions"].update(min=3), "protocol_versions"),
        (lambda w: w["features"]["streams"].update(initial_window=0), "features.streams"),
        (lambda w: w["permissions"].update(requires_credentials="yes"), "permissions.requires_credentials"),
    ],
)
def test_invalid_initialize_params_are_invalid_params_naming_the_field(mutate: object, field: str) -> None:
    wire = msgspec.json.decode(INITIALIZE_PARAMS)
    mutate(wire)  # type: ignore[operator]
    with pytest.raises(InvalidParams) as excinfo:
        parse_initialize_params(wire)
    assert excinfo.value.code == ErrorCode.INVALID_PARAMS
    assert invalid_params_field(excinfo) == field


def test_an_unknown_capability_type_is_invalid_params_naming_the_type_field() -> None:
    wire = msgspec.json.decode(INITIALIZE_RESULT)
    wire["capabilities"].append({"type": "Teleporter"})
    with pytest.raises(InvalidParams) as excinfo:
        parse_initialize_result(wire)
    assert invalid_params_field(excinfo) == "capabilities[1].type"


def test_a_wrong_auth_method_is_invalid_params_naming_its_position() -> None:
    with pytest.raises(InvalidParams) as excinfo:
        validate_capability(LocationProvider(supported_protocols=["s3"], auth_methods=["Password"]))  # type: ignore[list-item]
    assert invalid_params_field(excinfo) == "auth_methods[0]"


def test_params_that_are_not_an_object_are_invalid_params() -> None:
    with pytest.raises(InvalidParams, match="Expected `object`"):
        parse_initialize_params([1, 2])


def test_each_capability_kind_is_tagged_with_its_name_on_the_wire() -> None:
    capabilities = [
        LocationProvider(supported_protocols=["sftp"], auth_methods=["ApiKey"]),
        FileTypeHandler(extensions=["raw"], mime_types=["image/x-raw"], processing_modes=["thumbnail"]),
        ContentProcessor(input_types=["text"], output_formats=["summary"]),
        SearchProvider(query_languages=["plain"], result_types=["file"]),
        ThumbnailGenerator(supported_formats=["pdf"], output_formats=["webp"]),
    ]
    for capability in capabilities:
        wire = to_wire(capability)
        assert wire["type"] == type(capability).__name__
        assert validate_capability(wire) == capability


def test_the_highest_common_version_is_negotiated() -> None:
    assert negotiate_version(VersionRange(1, 3), VersionRange(2, 5)) == 3
    assert negotiate_version(VersionRange(1, 1), VersionRange(1, 1)) == 1
    assert PROTOCOL_VERSION_MIN == PROTOCOL_VERSION_MAX == 1


def test_a_version_mismatch_names_both_ranges_in_its_message_and_data() -> None:
    with pytest.raises(ProtocolVersionMismatch) as excinfo:
        negotiate_version(VersionRange(1, 1), VersionRange(2, 3))
    error = excinfo.value
    assert error.code == -32012
    assert "1..1" in error.message and "2..3" in error.message
    assert error.data == {"core": {"min": 1, "max": 1}, "integration": {"min": 2, "max": 3}}


def test_negotiated_features_are_what_both_sides_support() -> None:
    offered = Features(
        streams=StreamsFeature(initial_window=1 << 20), compression=["zstd", "lz4"], fd_passing=True
    )
    supported = Features(
        streams=StreamsFeature(initial_window=1 << 16), compression=["lz4"], fd_passing=False
    )
    agreed = negotiate_features(offered, supported)
    assert agreed == Features(
        streams=StreamsFeature(initial_window=1 << 16), compression=["lz4"], fd_passing=False
    )
    check_accepted_features(offered, agreed)
    assert negotiate_features(offered, Features()) == Features()


@pytest.mark.parametrize(
    ("accepted", "field"),
    [
        (Features(streams=StreamsFeature(initial_window=1)), "features.streams"),
        (Features(compression=["brotli"]), "features.compression"),
        (Features(fd_passing=True), "features.fd_passing"),
    ],
)
def test_accepting_a_feature_that_was_not_offered_is_invalid_params_naming_it(
    accepted: Features, field: str
) -> None:
    with pytest.raises(InvalidParams) as excinfo:
        check_accepted_features(Features(), accepted)
    assert invalid_params_field(excinfo) == field


def test_initialize_params_encode_with_the_snake_case_keys_of_the_wire() -> None:
    params = InitializeParams(
        protocol_versions=VersionRange(1, 1), core=PeerInfo("spacedrive", "0"), integration_id="x"
    )
    wire = to_wire(params)
    assert set(wire) == {"protocol_versions", "core", "integration_id", "permissions", "config", "features"}
    assert set(wire["permissions"]) >= {
        "network_access",
        "file_system_access",
        "core_apis",
        "requires_credentials",
    }
    result = InitializeResult(protocol_version=1, info=PeerInfo("x", "1"), capabilities=[])
    assert to_wire(result)["features"] == {"streams": None, "compression": [], "fd_passing": False}


def test_required_methods_follow_the_declared_capability() -> None:
    storage = LocationProvider(supported_protocols=["file"], auth_methods=["None"])
    assert required_methods(storage) == ("storage.list", "storage.stat", "storage.read")
    handler = FileTypeHandler(extensions=["md"], mime_types=[], processing_modes=["validate", "metadata"])
    assert required_methods(handler) == ("filetype.validate", "filetype.extract_metadata")
    assert capability_of_method("search.suggest") == "SearchProvider"
    assert method_spec("storage.list") is not None
    assert method_spec("storage.teleport") is None
    assert set(CAPABILITY_METHODS) == {
        "LocationProvider",
        "FileTypeHandler",
        "ContentProcessor",
        "SearchProvider",
        "ThumbnailGenerator",
    }


def test_the_launch_environment_round_trips_through_environment_variables() -> None:
    for address in (
        IpcAddress("unix", path="/run/s"),
        IpcAddress("tcp", host="127.0.0.1", port=4000),
        IpcAddress("stdio"),
    ):
        env = LaunchEnvironment(address, new_secret(), "webdav", 1)
        assert LaunchEnvironment.from_environ(env.to_environ()) == env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (ENV_IPC, ""),
        (ENV_IPC, "unix:relative/path"),
        (ENV_IPC, "tcp:127.0.0.1:http"),
        (ENV_SECRET, "abc"),
        (ENV_PROTOCOL, "x"),
    ],
)
def test_a_missing_or_malformed_launch_variable_is_named_in_the_error(variable: str, value: str) -> None:
    environ = LaunchEnvironment(IpcAddress("stdio"), new_secret(), "webdav", 1).to_environ()
    environ[variable] = value
    with pytest.raises(ConfigurationError, match=variable):
        LaunchEnvironment.from_environ(environ)
