import pytest

from spacedrive.ipc import (
    ErrorObject,
    ErrorResponse,
    InvalidMessage,
    Notification,
    Request,
    Response,
    UsageError,
    decode_message,
    encode_message,
)


def error_code(payload: bytes) -> tuple[object, int]:
    decoded = decode_message(payload)
    assert isinstance(decoded, InvalidMessage), decoded
    return decoded.id, decoded.error.code


def test_a_request_encodes_with_jsonrpc_first_and_without_absent_params() -> None:
    assert encode_message(Request(1, "ping")) == b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert encode_message(Notification("x", {"a": 1})) == b'{"jsonrpc":"2.0","method":"x","params":{"a":1}}'


def test_a_null_result_is_sent_and_an_absent_error_data_is_not() -> None:
    assert encode_message(Response(1, None)) == b'{"jsonrpc":"2.0","id":1,"result":null}'
    assert encode_message(ErrorResponse(None, ErrorObject(-1, "m"))) == (
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m"}}'
    )


def test_a_request_with_a_null_id_is_a_request_not_a_notification() -> None:
    assert decode_message(b'{"jsonrpc":"2.0","method":"m","id":null}') == Request(None, "m")


def test_an_error_response_keeps_its_data() -> None:
    payload = b'{"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"gone","data":{"path":"/x"}}}'
    assert decode_message(payload) == ErrorResponse("a", ErrorObject(-32001, "gone", {"path": "/x"}))


def test_unknown_members_are_ignored() -> None:
    assert decode_message(b'{"jsonrpc":"2.0","method":"m","id":1,"extra":[1]}') == Request(1, "m")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"jsonrpc":"2.0","method":"m","id":1.5}',
        b'{"jsonrpc":"2.0","method":"m","id":1.0}',
        b'{"jsonrpc":"2.0","method":"m","id":true}',
        b'{"jsonrpc":"2.0","method":"m","id":{}}',
        b'{"jsonrpc":"2.0","method":"m","id":[1]}',
    ],
)
def test_an_id_that_is_not_a_string_an_integer_or_null_is_an_invalid_request(payload: bytes) -> None:
    assert error_code(payload) == (None, -32600)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"method":"m","id":1}',
        b'{"jsonrpc":"1.0","method":"m","id":1}',
        b'{"jsonrpc":2.0,"method":"m","id":1}',
        b'{"jsonrpc":"2.0","method":"m","id":1,"params":"text"}',
        b'{"jsonrpc":"2.0","method":"m","id":1,"params":null}',
        b'{"jsonrpc":"2.0","method":"m","id":1,"result":1}',
    ],
)
def test_a_request_of_the_wrong_shape_is_answered_with_its_own_id(payload: bytes) -> None:
    assert error_code(payload) == (1, -32600)


@pytest.mark.parametrize(
    "payload",
    [
        b"1",
        b'"text"',
        b"null",
        b"{}",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","id":1}',
        b'{"jsonrpc":"2.0","result":1}',
        b'{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}',
        b'{"jsonrpc":"2.0","id":1,"result":1,"params":[]}',
        b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}',
        b'{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}',
    ],
)
def test_something_that_is_not_a_request_is_answered_with_a_null_id(payload: bytes) -> None:
    assert error_code(payload) == (None, -32600)


@pytest.mark.parametrize(
    "payload",
    [b"", b" ", b"{", b"NaN", b'{"a":1} x', b'"\xff"', b'{"jsonrpc":"2.0","x":"\xc3"}', b'"\\ud800"'],
)
def test_invalid_json_or_invalid_utf8_is_a_parse_error(payload: bytes) -> None:
    assert error_code(payload) == (None, -32700)


def test_nesting_too_deep_to_decode_is_a_parse_error() -> None:
    assert error_code(b"[" * 100_000 + b"]" * 100_000) == (None, -32700)
    assert error_code(
        b'{"jsonrpc":"2.0","method":"m","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    ) == (
        None,
        -32700,
    )


def test_a_batch_may_mix_requests_responses_and_invalid_elements() -> None:
    decoded = decode_message(b'[{"jsonrpc":"2.0","id":1,"result":2},{"jsonrpc":"2.0","method":"n"},[]]')
    assert isinstance(decoded, list)
    assert decoded[:2] == [Response(1, 2), Notification("n")]
    assert isinstance(decoded[2], InvalidMessage)


def test_a_batch_encodes_as_an_array() -> None:
    assert encode_message([Request(1, "a"), Notification("b")]) == (
        b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]'
    )


def test_encoding_an_empty_batch_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encode_message([])


def test_encoding_a_value_json_cannot_hold_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encode_message(Response(1, object()))
    with pytest.raises(UsageError):
        encode_message(Response(1, "\ud800"))


def test_an_invalid_message_answers_with_an_error_response() -> None:
    invalid = decode_message(b"{")
    assert isinstance(invalid, InvalidMessage)
    assert invalid.response() == ErrorResponse(None, invalid.error)
