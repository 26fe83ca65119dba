"""The examples of the JSON-RPC 2.0 specification, section 7, as golden tests of the codec.

Each request is decoded and must be classified exactly as the specification says; a tiny
server written with nothing but the codec then answers it, and its answer must equal the
specification's (error objects compared on code, message and id; our ``data`` is extra).
"""

from typing import Any

import msgspec
import pytest

from spacedrive.ipc import (
    ErrorCode,
    ErrorObject,
    ErrorResponse,
    InvalidMessage,
    Message,
    Notification,
    Request,
    Response,
    decode_message,
    encode_message,
)


def spec_method(method: str, params: Any) -> Any:
    if method == "subtract":
        if isinstance(params, dict):
            return params["minuend"] - params["subtrahend"]
        return params[0] - params[1]
    if method == "sum":
        return sum(params)
    if method == "get_data":
        return ["hello", 5]
    raise LookupError(method)


def answer(message: Message | InvalidMessage) -> Message | None:
    if isinstance(message, InvalidMessage):
        return message.response()
    if not isinstance(message, Request):
        return None
    try:
        return Response(message.id, spec_method(message.method, message.params))
    except LookupError:
        return ErrorResponse(message.id, ErrorObject(ErrorCode.METHOD_NOT_FOUND, "Method not found"))


def spec_server(payload: bytes) -> bytes | None:
    decoded = decode_message(payload)
    if not isinstance(decoded, list):
        reply = answer(decoded)
        return None if reply is None else encode_message(reply)
    replies = [reply for reply in map(answer, decoded) if reply is not None]
    return encode_message(replies) if replies else None


def without_data(value: Any) -> Any:
    if isinstance(value, list):
        return [without_data(item) for item in value]
    if isinstance(value, dict) and "error" in value:
        value["error"].pop("data", None)
    return value


def assert_answers(payload: bytes, expected: str | None) -> None:
    reply = spec_server(payload)
    if expected is None:
        assert reply is None
    else:
        assert reply is not None
        assert without_data(msgspec.json.decode(reply)) == msgspec.json.decode(expected)


SUBTRACT_EXAMPLES = [
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        Request(1, "subtract", [42, 23]),
        '{"jsonrpc": "2.0", "result": 19, "id": 1}',
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        Request(2, "subtract", [23, 42]),
        '{"jsonrpc": "2.0", "result": -19, "id": 2}',
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        Request(3, "subtract", {"subtrahend": 23, "minuend": 42}),
        '{"jsonrpc": "2.0", "result": 19, "id": 3}',
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        Request(4, "subtract", {"minuend": 42, "subtrahend": 23}),
        '{"jsonrpc": "2.0", "result": 19, "id": 4}',
    ),
]


@pytest.mark.parametrize(("payload", "request_", "expected"), SUBTRACT_EXAMPLES)
def test_rpc_calls_with_positional_and_named_parameters(
    payload: bytes, request_: Request, expected: str
) -> None:
    assert decode_message(payload) == request_
    assert_answers(payload, expected)
    assert decode_message(expected.encode()) == Response(request_.id, msgspec.json.decode(expected)["result"])


def test_notifications_are_classified_and_never_answered() -> None:
    update = b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}'
    foobar = b'{"jsonrpc": "2.0", "method": "foobar"}'
    assert decode_message(update) == Notification("update", [1, 2, 3, 4, 5])
    assert decode_message(foobar) == Notification("foobar")
    assert_answers(update, None)
    assert_answers(foobar, None)


def test_a_call_of_a_non_existent_method() -> None:
    payload = b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}'
    assert decode_message(payload) == Request("1", "foobar")
    expected = '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}'
    assert_answers(payload, expected)
    reply = decode_message(expected.encode())
    assert isinstance(reply, ErrorResponse)
    assert (reply.id, reply.error.code) == ("1", -32601)


def test_a_call_with_invalid_json_is_a_parse_error_with_a_null_id() -> None:
    payload = b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'
    decoded = decode_message(payload)
    assert isinstance(decoded, InvalidMessage)
    assert (decoded.id, decoded.error.code, decoded.error.message) == (None, -32700, "Parse error")
    assert_answers(
        payload, '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
    )


def test_a_call_with_an_invalid_request_object() -> None:
    payload = b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}'
    decoded = decode_message(payload)
    assert isinstance(decoded, InvalidMessage)
    assert (decoded.id, decoded.error.code, decoded.error.message) == (None, -32600, "Invalid Request")
    expected = '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    assert_answers(payload, expected)


def test_a_batch_with_invalid_json_is_one_parse_error() -> None:
    payload = b"""[
      {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
      {"jsonrpc": "2.0", "method"
    ]"""
    decoded = decode_message(payload)
    assert isinstance(decoded, InvalidMessage)
    assert decoded.error.code == -32700
    assert_answers(
        payload, '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
    )


def test_an_empty_batch_is_one_invalid_request() -> None:
    decoded = decode_message(b"[]")
    assert isinstance(decoded, InvalidMessage)
    assert (decoded.id, decoded.error.code) == (None, -32600)
    expected = '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    assert_answers(b"[]", expected)


def test_an_invalid_batch_of_one_is_answered_with_a_batch_of_one_error() -> None:
    decoded = decode_message(b"[1]")
    assert isinstance(decoded, list)
    [element] = decoded
    assert isinstance(element, InvalidMessage)
    assert (element.id, element.error.code) == (None, -32600)
    expected = '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]'
    assert_answers(b"[1]", expected)


def test_an_invalid_batch_of_three_is_answered_with_three_errors() -> None:
    decoded = decode_message(b"[1,2,3]")
    assert isinstance(decoded, list)
    assert [(e.id, e.error.code) for e in decoded if isinstance(e, InvalidMessage)] == [(None, -32600)] * 3
    error = '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    assert_answers(b"[1,2,3]", f"[{error}, {error}, {error}]")


def test_a_batch_of_calls_is_answered_element_by_element() -> None:
    payload = b"""[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"""
    decoded = decode_message(payload)
    assert isinstance(decoded, list)
    assert decoded[:3] == [
        Request("1", "sum", [1, 2, 4]),
        Notification("notify_hello", [7]),
        Request("2", "subtract", [42, 23]),
    ]
    assert isinstance(decoded[3], InvalidMessage)
    assert (decoded[3].id, decoded[3].error.code) == (None, -32600)
    assert decoded[4:] == [Request("5", "foo.get", {"name": "myself"}), Request("9", "get_data")]
    expected = """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]"""
    assert_answers(payload, expected)
    assert [type(reply) for reply in decode_message(expected.encode())] == [  # type: ignore[union-attr]
        Response,
        Response,
        ErrorResponse,
        ErrorResponse,
        Response,
    ]


def test_a_batch_of_notifications_only_gets_no_answer_at_all() -> None:
    payload = b"""[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"""
    assert decode_message(payload) == [
        Notification("notify_sum", [1, 2, 4]),
        Notification("notify_hello", [7]),
    ]
    assert_answers(payload, None)
