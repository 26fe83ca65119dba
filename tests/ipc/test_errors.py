import asyncio

import pytest

from spacedrive.ipc import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionClosed,
    ErrorCode,
    ErrorObject,
    IntegrationError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    NetworkError,
    NotFound,
    ParseError,
    PermissionDenied,
    ProcessCrashed,
    ProtocolError,
    ProtocolVersionMismatch,
    RateLimitExceeded,
    RequestCancelled,
    RequestTimeout,
    StreamReset,
    UsageError,
    error_from_wire,
    error_to_wire,
)

WIRE_CLASSES: list[type[IntegrationError]] = [
    IntegrationError,
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    NotFound,
    ProcessCrashed,
    AuthenticationFailed,
    RateLimitExceeded,
    NetworkError,
    PermissionDenied,
    ConfigurationError,
    RequestTimeout,
    RequestCancelled,
    ProtocolVersionMismatch,
    StreamReset,
]


def test_the_json_rpc_standard_errors_carry_the_standard_codes() -> None:
    assert [cls.default_code for cls in (ParseError, InvalidRequest, MethodNotFound, InvalidParams)] == [
        -32700,
        -32600,
        -32601,
        -32602,
    ]
    assert InternalError.default_code == -32603


def test_application_codes_are_distinct_and_in_the_server_error_range() -> None:
    standard = {-32700, -32600, -32601, -32602, -32603}
    application = [int(code) for code in ErrorCode if code not in standard]
    assert len(application) == len(set(application)) == len(ErrorCode) - len(standard)
    assert all(-32099 <= code <= -32000 for code in application)


@pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda cls: cls.__name__)
def test_every_wire_error_survives_the_round_trip(cls: type[IntegrationError]) -> None:
    original = cls("it went wrong", data={"retry_after": 3})
    wire = error_to_wire(original)
    assert wire == {"code": cls.default_code, "message": "it went wrong", "data": {"retry_after": 3}}
    back = error_from_wire(wire)
    assert type(back) is cls
    assert (back.code, back.message, back.data) == (original.code, "it went wrong", {"retry_after": 3})


def test_an_error_without_data_sends_no_data_member() -> None:
    assert error_to_wire(NotFound()) == {"code": -32001, "message": "Not found"}


def test_an_unknown_exception_becomes_a_generic_internal_error_without_details() -> None:
    wire = error_to_wire(KeyError("secret/path/of/the/user"))
    assert wire == {"code": -32603, "message": "Internal error"}


def test_a_cancelled_task_becomes_request_cancelled() -> None:
    assert error_to_wire(asyncio.CancelledError())["code"] == ErrorCode.REQUEST_CANCELLED


def test_an_unknown_code_keeps_code_message_and_data() -> None:
    back = error_from_wire({"code": 42, "message": "custom", "data": [1]})
    assert type(back) is IntegrationError
    assert (back.code, back.message, back.data) == (42, "custom", [1])
    assert error_to_wire(back) == {"code": 42, "message": "custom", "data": [1]}


@pytest.mark.parametrize("cls", [ConnectionClosed, ProtocolError])
def test_local_only_errors_are_never_rebuilt_from_the_wire(cls: type[IntegrationError]) -> None:
    back = error_from_wire(error_to_wire(cls("peer said so")))
    assert type(back) is IntegrationError
    assert back.code == cls.default_code


def test_an_error_object_struct_maps_back_like_a_dict() -> None:
    back = error_from_wire(ErrorObject(-32006, "no", {"api": "core.files.read"}))
    assert isinstance(back, PermissionDenied)
    assert back.data == {"api": "core.files.read"}


@pytest.mark.parametrize(
    "obj", [{}, {"code": "1", "message": "m"}, {"code": True, "message": "m"}, {"code": 1}]
)
def test_a_malformed_error_object_becomes_an_internal_error(obj: dict[str, object]) -> None:
    assert type(error_from_wire(obj)) is InternalError


def test_a_protocol_error_is_a_closed_connection_and_a_usage_error_is_not_a_wire_error() -> None:
    assert issubclass(ProtocolError, ConnectionClosed)
    assert issubclass(ConnectionClosed, IntegrationError)
    assert not issubclass(UsageError, IntegrationError)
    assert error_to_wire(UsageError("bug"))["message"] == "Internal error"


def test_an_error_shows_its_class_code_and_message() -> None:
    exc = RateLimitExceeded("slow down")
    assert str(exc) == "slow down"
    assert repr(exc) == "RateLimitExceeded(code=-32004, message='slow down', data=None)"
