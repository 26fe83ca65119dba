"""Integrations get their own credentials, and only theirs: real processes under the real manager.

* ``requires_credentials``: ``apps/cloud.py`` receives ``params.credential`` with each request,
  calls the test OAuth2 server's API with it, and answers ``AuthenticationFailed`` when the API
  refuses the token; the core then refreshes once and retries once.
* ``ManageCredentials``: ``tests/integrations/apps/core_client.py`` calls ``core.credentials.*``
  as told; another integration's credential or id is answered ``PermissionDenied``.
* Secrets stay secret: not in the integration's argv or environment, not in its log, not in
  any file of the data dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spacedrive.core.node import Core
from spacedrive.credentials import (
    ApiKey,
    CredentialManager,
    IntegrationCredential,
    OAuth2,
    TokenSet,
)
from spacedrive.integrations import IntegrationManager, IntegrationRequest, IntegrationResponse, Policy
from spacedrive.ipc import ErrorCode
from tests.credentials._helpers import a_secret, files_holding, install_cloud
from tests.credentials._oauth_server import OAuthServer
from tests.credentials.test_oauth2 import config
from tests.integrations._apps import install_client

pytestmark = pytest.mark.e2e

WAIT_S = 30.0
_ids = itertools.count(1)


def list_locations(integration_id: str, **params: Any) -> IntegrationRequest:
    return IntegrationRequest(str(next(_ids)), integration_id, "location.list_locations", params or None)


def core_call(integration_id: str, method: str, params: Any = None) -> IntegrationRequest:
    options = {"method": method, "params": params}
    return IntegrationRequest(
        str(next(_ids)),
        integration_id,
        "content.process",
        {"path": "", "input_type": "call", "output_format": "json", "options": options},
    )


def facts(response: IntegrationResponse) -> dict[str, Any]:
    assert response.success, response.error
    [location] = response.data
    found: dict[str, Any] = location["facts"]
    return found


def error(response: IntegrationResponse) -> tuple[int, str, Any]:
    assert not response.success, response
    assert response.error is not None
    return response.error.code, response.error.message, response.error.data


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def manager(core: Core) -> IntegrationManager:
    return IntegrationManager(core, policy=Policy(idle_timeout=None))


@pytest.fixture
def clouds(core: Core, data_dir: Path, tmp_path: Path, oauth: OAuthServer) -> Iterator[None]:
    """``cloud`` and ``other-cloud`` (requires_credentials), ``manager-app`` (ManageCredentials) and
    ``no-manage`` (no core API), installed and enabled."""
    for integration_id in ("cloud", "other-cloud"):
        install_cloud(core.library.db, data_dir, tmp_path / "src", integration_id, {"api_url": oauth.api_url})
    for integration_id, apis in (("manager-app", ["ManageCredentials"]), ("no-manage", [])):
        install_client(data_dir, tmp_path / "src", integration_id, apis)
        from spacedrive.integrations import enable
        from spacedrive.integrations.registry import Registry

        enable(core.library.db, Registry.discover(data_dir).get(integration_id).manifest, {})
    yield


async def store_api_key(credentials: CredentialManager, integration_id: str, key: str) -> str:
    credential = IntegrationCredential(integration_id=integration_id, credential_type=ApiKey(key=key))
    return await credentials.store_credential(integration_id, credential)


async def store_issued(credentials: CredentialManager, oauth: OAuthServer, expires_in: int = 3600) -> str:
    token = oauth.issue(expires_in=expires_in)
    expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
    tokens = TokenSet(access_token=token.access_token, refresh_token=token.refresh_token, expires_at=expiry)
    credential = IntegrationCredential(
        integration_id="cloud", credential_type=config(oauth).credential(tokens), expires_at=expiry
    )
    return await credentials.store_credential("cloud", credential)


async def access_token(credentials: CredentialManager, credential_id: str) -> str:
    secret = (await credentials.get_credential("cloud", credential_id)).credential_type
    assert isinstance(secret, OAuth2)
    return secret.access_token


# -- handed over with the request ----------------------------------------------------------------


async def test_an_api_key_is_handed_over_with_each_request_and_leaks_nowhere(
    manager: IntegrationManager, clouds: None, data_dir: Path
) -> None:
    key = a_secret("key")
    credential_id = await store_api_key(manager.credentials, "cloud", key)
    async with manager as m:
        first = facts(await m.handle_request(list_locations("cloud")))
        second = facts(await m.handle_request(list_locations("cloud", credential_id=credential_id)))
    assert first == second
    assert (first["type"], first["id"], first["sha256"]) == ("ApiKey", credential_id, sha256(key))
    assert first["fields"] == ["expires_at", "header_name", "id", "key", "label", "type"]
    assert (first["in_argv"], first["in_environ"]) == (False, False)
    log = data_dir / "logs" / "cloud.log"
    assert f"listing with ApiKey credential {credential_id}" in log.read_text()  # it did log, without the key
    assert files_holding(data_dir, key) == []


async def test_a_handler_whose_method_has_no_credential_param_reads_ctx_credential(
    manager: IntegrationManager, clouds: None
) -> None:
    credential_id = await store_api_key(manager.credentials, "cloud", a_secret("key"))
    async with manager as m:
        response = await m.handle_request(IntegrationRequest("1", "cloud", "storage.list", {"path": "/"}))
    assert response.success, response.error
    assert response.data == {
        "entries": [],
        "cursor": None,
        "credential": {"type": "ApiKey", "id": credential_id},
    }


async def test_an_integration_without_a_credential_is_told_how_to_get_one(
    manager: IntegrationManager, clouds: None
) -> None:
    async with manager as m:
        code, message, details = error(await m.handle_request(list_locations("cloud")))
    assert code == ErrorCode.AUTHENTICATION_FAILED
    assert "has no credential" in message and "spacedrive credential add cloud" in message
    assert details == {"reason": "no credential"}


async def test_naming_another_integrations_credential_is_permission_denied(
    manager: IntegrationManager, clouds: None
) -> None:
    theirs = await store_api_key(manager.credentials, "other-cloud", a_secret("key"))
    await store_api_key(manager.credentials, "cloud", a_secret("key"))
    async with manager as m:
        code, message, details = error(await m.handle_request(list_locations("cloud", credential_id=theirs)))
    assert code == ErrorCode.PERMISSION_DENIED
    assert "may use only its own credentials" in message and "other-cloud" not in message
    assert details["reason"] == "not its own credential"


async def test_with_several_credentials_the_request_must_name_one(
    manager: IntegrationManager, clouds: None
) -> None:
    await store_api_key(manager.credentials, "cloud", a_secret("key"))
    second = await store_api_key(manager.credentials, "cloud", a_secret("key"))
    async with manager as m:
        code, _message, details = error(await m.handle_request(list_locations("cloud")))
        named = facts(await m.handle_request(list_locations("cloud", credential_id=second)))
    assert (code, details["field"]) == (ErrorCode.INVALID_PARAMS, "credential_id")
    assert named["id"] == second


async def test_a_token_the_service_refuses_is_refreshed_once_and_the_request_retried_once(
    manager: IntegrationManager, clouds: None, oauth: OAuthServer, data_dir: Path
) -> None:
    credential_id = await store_issued(manager.credentials, oauth)
    old = await access_token(manager.credentials, credential_id)
    oauth.revoke_access_tokens()  # the service stopped accepting it (a server-side expiry)
    async with manager as m:
        got = facts(await m.handle_request(list_locations("cloud")))
    new = await access_token(manager.credentials, credential_id)
    assert new != old and got["sha256"] == sha256(new)
    assert oauth.grants("refresh_token") == 1 and oauth.api_rejections == 1
    tokens = [t.access_token for t in oauth.state.tokens] + [
        t.refresh_token or "" for t in oauth.state.tokens
    ]
    assert files_holding(data_dir, *tokens) == []  # the database, the integration's log: nowhere


async def test_a_token_about_to_expire_is_refreshed_before_it_is_handed_over(
    manager: IntegrationManager, clouds: None, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(manager.credentials, oauth, expires_in=20)
    async with manager as m:
        got = facts(await m.handle_request(list_locations("cloud")))
    assert got["sha256"] == sha256(await access_token(manager.credentials, credential_id))
    assert oauth.grants("refresh_token") == 1 and oauth.api_rejections == 0  # never sent stale


async def test_a_request_refused_again_after_the_refresh_is_not_retried_twice(
    manager: IntegrationManager, clouds: None, oauth: OAuthServer
) -> None:
    await store_issued(manager.credentials, oauth)
    oauth.revoke_access_tokens()
    original = oauth.is_valid
    oauth.is_valid = lambda token: False  # the service refuses every token
    try:
        async with manager as m:
            code, message, _ = error(await m.handle_request(list_locations("cloud")))
    finally:
        oauth.is_valid = original
    assert (code, message) == (ErrorCode.AUTHENTICATION_FAILED, "the cloud refused the access token")
    assert oauth.api_rejections == 2 and oauth.grants("refresh_token") == 1


async def test_two_requests_refused_at_once_trigger_one_refresh(
    manager: IntegrationManager, clouds: None, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(manager.credentials, oauth)
    oauth.revoke_access_tokens()
    async with manager as m:
        await m.start_integration("cloud")
        with oauth.hold_refreshes() as release:
            batch = asyncio.ensure_future(m.handle_batch([list_locations("cloud"), list_locations("cloud")]))
            assert await asyncio.to_thread(oauth.wait_for_rejections, 2)  # both were refused...
            assert await asyncio.to_thread(oauth.refresh_arrived.wait, WAIT_S)  # ...and one refresh is out
            release.set()
            async with asyncio.timeout(WAIT_S):
                responses = await batch
    new = sha256(await access_token(manager.credentials, credential_id))
    assert [facts(response)["sha256"] for response in responses] == [new, new]
    assert oauth.grants("refresh_token") == 1 and manager.credentials.token_requests == 1
    assert oauth.state.reuse_detected == 0


async def test_a_revoked_refresh_token_answers_log_in_again_and_then_fails_fast(
    manager: IntegrationManager, clouds: None, oauth: OAuthServer
) -> None:
    await store_issued(manager.credentials, oauth)
    oauth.revoke_everything()  # the user revoked the app at the provider
    async with manager as m:
        code, message, details = error(await m.handle_request(list_locations("cloud")))
        again = error(await m.handle_request(list_locations("cloud")))
    assert code == again[0] == ErrorCode.AUTHENTICATION_FAILED
    assert "spacedrive credential login cloud" in message and details == {"reason": "login required"}
    assert "needs a new login" in again[1]
    assert oauth.grants("refresh_token") == 1 and oauth.api_rejections == 1  # the second never reached it
    [info] = manager.credentials.list("cloud")
    assert info.state == "login_required"


# -- through the core API (ManageCredentials) -----------------------------------------------------


async def test_an_integration_manages_its_own_credentials_through_the_core_api(
    manager: IntegrationManager, clouds: None, data_dir: Path
) -> None:
    key = a_secret("key")
    credential = {"type": "ApiKey", "key": key, "header_name": "X-Key"}
    async with manager as m:
        stored = await m.handle_request(
            core_call("manager-app", "core.credentials.store", {"credential": credential, "label": "main"})
        )
        assert stored.success, stored.error
        credential_id = stored.data["result"]["credential_id"]
        listed = (await m.handle_request(core_call("manager-app", "core.credentials.list"))).data["result"]
        got = (await m.handle_request(core_call("manager-app", "core.credentials.get"))).data["result"]
        again = await m.handle_request(  # what get answered can be stored back, in place
            core_call(
                "manager-app", "core.credentials.store", {"credential": got, "credential_id": credential_id}
            )
        )
        assert again.success and again.data["result"] == {"credential_id": credential_id}, again.error
        deleted = await m.handle_request(
            core_call("manager-app", "core.credentials.delete", {"credential_id": credential_id})
        )
    assert [(c["id"], c["type"], c["label"]) for c in listed] == [(credential_id, "ApiKey", "main")]
    assert key not in repr(listed)
    assert got == {
        "id": credential_id,
        "type": "ApiKey",
        "key": key,
        "header_name": "X-Key",
        "label": "main",
        "expires_at": None,
    }
    assert deleted.data["result"] == {"deleted": True}
    assert manager.credentials.list() == []
    assert files_holding(data_dir, key) == []


async def test_asking_the_core_api_for_another_integrations_credential_is_permission_denied(
    manager: IntegrationManager, clouds: None
) -> None:
    theirs = await store_api_key(manager.credentials, "cloud", a_secret("key"))
    calls = [
        ("core.credentials.get", {"credential_id": theirs}),
        ("core.credentials.get", {"integration_id": "cloud"}),
        ("core.credentials.list", {"integration_id": "cloud"}),
        ("core.credentials.delete", {"credential_id": theirs}),
        ("core.credentials.store", {"credential": {"type": "ApiKey", "key": "x"}, "credential_id": theirs}),
        ("core.credentials.store", {"credential": {"type": "ApiKey", "key": "x"}, "integration_id": "cloud"}),
    ]
    async with manager as m:
        responses = [
            await m.handle_request(core_call("manager-app", method, params)) for method, params in calls
        ]
    for (method, _params), response in zip(calls, responses, strict=True):
        code, _message, details = error(response)
        assert code == ErrorCode.PERMISSION_DENIED, method
        assert details["permission"] == "ManageCredentials"
    assert len(manager.credentials.list("cloud")) == 1  # untouched
    assert manager.credentials.list("manager-app") == []


async def test_without_manage_credentials_the_core_api_is_refused(
    manager: IntegrationManager, clouds: None
) -> None:
    await store_api_key(manager.credentials, "no-manage", a_secret("key"))
    async with manager as m:
        code, _message, details = error(
            await m.handle_request(core_call("no-manage", "core.credentials.get"))
        )
    assert code == ErrorCode.PERMISSION_DENIED
    assert details == {"permission": "ManageCredentials", "method": "core.credentials.get"}


async def test_the_core_api_answers_an_unknown_credential_with_not_found(
    manager: IntegrationManager, clouds: None
) -> None:
    async with manager as m:
        response = await m.handle_request(
            core_call(
                "manager-app",
                "core.credentials.get",
                {"credential_id": "0b5b8c9e-0000-4000-8000-000000000000"},
            )
        )
    assert error(response)[0] == ErrorCode.NOT_FOUND
