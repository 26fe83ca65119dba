"""The credential types: validation that names fields, reprs that redact, the views handed out."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime

import pytest

from spacedrive.credentials import (
    AmbiguousCredential,
    ApiKey,
    Basic,
    CredentialAccessDenied,
    CredentialError,
    CredentialExpired,
    CredentialNotFound,
    CredentialUndecryptable,
    Custom,
    IntegrationCredential,
    InvalidCredential,
    LoginRequired,
    OAuth2,
    OAuth2Config,
    OAuth2Error,
    OAuth2Unavailable,
    TokenSet,
    WrongMasterKey,
    credential_from_wire,
    to_wire,
    to_wire_error,
)
from spacedrive.credentials._oauth2 import AuthorizationRequest, DeviceAuthorization
from spacedrive.ipc import ErrorCode, NotFound
from tests.credentials._helpers import a_secret

ACCESS, REFRESH, KEY, PASSWORD, CLIENT_SECRET = (a_secret(k) for k in ("at", "rt", "key", "pw", "cs"))


def every_secret_type() -> list[object]:
    oauth2 = OAuth2(
        access_token=ACCESS,
        refresh_token=REFRESH,
        scopes=("files.read",),
        token_endpoint="https://auth.example.com/token",
        client_id="client",
        client_secret=CLIENT_SECRET,
    )
    return [
        oauth2,
        ApiKey(key=KEY, header_name="X-Api-Key"),
        Basic(username="ada", password=PASSWORD),
        Custom(data={"token": KEY, "nested": [PASSWORD]}),
        IntegrationCredential(integration_id="cloud", credential_type=oauth2, id="c1"),
        OAuth2Config(
            client_id="client", token_endpoint="https://a.example/token", client_secret=CLIENT_SECRET
        ),
        TokenSet(access_token=ACCESS, refresh_token=REFRESH),
        AuthorizationRequest(
            url="https://a.example/authorize", state=KEY, code_verifier=PASSWORD, redirect_uri="x"
        ),
        DeviceAuthorization(
            device_code=PASSWORD,
            user_code="ABCD",
            verification_uri="https://a.example/device",
            verification_uri_complete=None,
            expires_in=60,
            interval=5,
        ),
    ]


@pytest.mark.parametrize("value", every_secret_type(), ids=lambda v: type(v).__name__)
def test_repr_and_str_show_no_secret(value: object) -> None:
    for text in (repr(value), str(value), f"{value}", repr([value]), repr({"x": value})):
        for secret in (ACCESS, REFRESH, KEY, PASSWORD, CLIENT_SECRET):
            assert secret not in text
    assert type(value).__name__ in repr(value)


def test_a_logged_credential_and_a_traceback_show_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    credential = every_secret_type()[4]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("got %s / %r", credential, credential)
    try:
        raise ValueError(credential)
    except ValueError:
        text = traceback.format_exc()
    for secret in (ACCESS, REFRESH, CLIENT_SECRET):
        assert secret not in caplog.text and secret not in text
    assert "<redacted>" in caplog.text


def test_input_is_validated_naming_the_field_and_never_quoting_a_secret() -> None:
    cases = [
        (None, "must be a JSON object"),
        ({"type": "Password"}, "type must be one of OAuth2, ApiKey, Basic, Custom"),
        ({"type": "ApiKey"}, "missing required field `key`"),
        ({"type": "ApiKey", "key": 12}, "Expected `str`, got `int` - at `$.key`"),
        ({"type": "ApiKey", "key": ""}, "credential.key must not be empty"),
        ({"type": "ApiKey", "key": KEY, "extra": KEY}, "unknown field `extra`"),
        ({"type": "Basic", "username": "", "password": PASSWORD}, "credential.username must not be empty"),
        ({"type": "OAuth2", "access_token": ACCESS, "token_endpoint": "http://evil.example/t"}, "https://"),
        ({"type": "OAuth2", "access_token": ACCESS, "scopes": "files.read"}, "at `$.scopes`"),
    ]
    for value, expected in cases:
        with pytest.raises(InvalidCredential) as caught:
            credential_from_wire(value)
        assert expected in str(caught.value), (value, str(caught.value))
        for secret in (ACCESS, KEY, PASSWORD):
            assert secret not in str(caught.value)


def test_loopback_http_endpoints_are_allowed_for_development() -> None:
    for url in ("http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/t", "https://a.b/t"):
        assert credential_from_wire({"type": "OAuth2", "access_token": "x", "token_endpoint": url})


def test_a_request_hands_over_the_access_token_but_never_the_refresh_token_or_client_secret() -> None:
    expiry = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    credential = IntegrationCredential(
        integration_id="cloud",
        credential_type=every_secret_type()[0],
        id="c1",
        expires_at=expiry,
        label="work",
    )
    handed = to_wire(credential)
    assert handed == {
        "id": "c1",
        "type": "OAuth2",
        "access_token": ACCESS,
        "token_type": "Bearer",
        "scopes": ["files.read"],
        "label": "work",
        "expires_at": "2030-01-02T03:04:05+00:00",
    }
    owner = to_wire(credential, owner=True)
    assert owner["refresh_token"] == REFRESH and owner["token_endpoint"] == "https://auth.example.com/token"
    assert CLIENT_SECRET not in repr(owner)


def test_other_types_are_handed_over_whole() -> None:
    for secret, fields in (
        (ApiKey(key=KEY, header_name="X-Key"), {"key": KEY, "header_name": "X-Key"}),
        (Basic(username="ada", password=PASSWORD), {"username": "ada", "password": PASSWORD}),
        (Custom(data={"a": [1, 2]}), {"data": {"a": [1, 2]}}),
    ):
        wire = to_wire(IntegrationCredential(integration_id="i", credential_type=secret, id="c"))
        assert wire == {"id": "c", "type": secret.type_name, **fields, "label": None, "expires_at": None}


def test_oauth2_is_refreshable_only_with_a_refresh_token_an_endpoint_and_a_client() -> None:
    full = every_secret_type()[0]
    assert isinstance(full, OAuth2) and full.refreshable
    assert not OAuth2(access_token="a", refresh_token="r", token_endpoint="https://a/t").refreshable
    assert not OAuth2(access_token="a", token_endpoint="https://a/t", client_id="c").refreshable
    assert not ApiKey(key="k").refreshable


def test_each_credential_error_becomes_its_protocol_error() -> None:
    cases = [
        (CredentialAccessDenied("x"), ErrorCode.PERMISSION_DENIED),
        (AmbiguousCredential("x"), ErrorCode.INVALID_PARAMS),
        (CredentialNotFound("x"), ErrorCode.AUTHENTICATION_FAILED),
        (InvalidCredential("x"), ErrorCode.INVALID_PARAMS),
        (OAuth2Unavailable("x"), ErrorCode.NETWORK_ERROR),
        (LoginRequired("x"), ErrorCode.AUTHENTICATION_FAILED),
        (CredentialExpired("x"), ErrorCode.AUTHENTICATION_FAILED),
        (OAuth2Error("x"), ErrorCode.AUTHENTICATION_FAILED),
        (CredentialUndecryptable("x"), ErrorCode.AUTHENTICATION_FAILED),
        (WrongMasterKey("x"), ErrorCode.AUTHENTICATION_FAILED),
        (CredentialError("x"), ErrorCode.INTEGRATION_ERROR),
    ]
    for exc, code in cases:
        wire = to_wire_error(exc)
        assert (wire.code, wire.message) == (code, "x"), exc
    assert to_wire_error(CredentialNotFound("x"), missing=NotFound).code == ErrorCode.NOT_FOUND
    assert to_wire_error(LoginRequired("x")).data == {"reason": "login required"}
