"""OAuth2 against a real authorization server on loopback (authlib's server parts, tests/_oauth_server).

Logins (authorization code with PKCE and a loopback redirect; device code), refresh before
expiry, refresh-token rotation, a revoked refresh token, and the single-flight refresh: in one
process, and across two managers that share nothing but the data dir (as two processes do).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from spacedrive.core.devices import DeviceManager
from spacedrive.core.library import LibraryManager
from spacedrive.credentials import (
    CredentialManager,
    DeviceAuthorization,
    IntegrationCredential,
    LoginRequired,
    OAuth2,
    OAuth2Config,
    OAuth2Error,
    OAuth2Unavailable,
    TokenSet,
)
from spacedrive.credentials._loopback import parse_request_target
from tests.credentials._oauth_server import CLIENT_ID, OAuthServer

WAIT_S = 30.0
"""Bound of every wait of these tests."""


def config(oauth: OAuthServer, **changes: object) -> OAuth2Config:
    values: dict[str, object] = {
        "client_id": CLIENT_ID,
        "token_endpoint": oauth.token_url,
        "authorization_endpoint": oauth.authorize_url,
        "device_authorization_endpoint": oauth.device_url,
        "scopes": ("files.read",),
        **changes,
    }
    return OAuth2Config(**values)


async def store_issued(
    credentials: CredentialManager,
    oauth: OAuthServer,
    *,
    expires_in: int = 3600,
    integration_id: str = "cloud",
) -> str:
    """Store tokens the server issued (as a finished login would)."""
    token = oauth.issue(expires_in=expires_in)
    tokens = TokenSet(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        scopes=("files.read",),
    )
    credential = IntegrationCredential(
        integration_id=integration_id,
        credential_type=config(oauth).credential(tokens),
        expires_at=tokens.expires_at,
    )
    return await credentials.store_credential(integration_id, credential)


async def visit(url: str) -> httpx.Response:
    """What the browser does: open the URL and follow the redirect to the loopback listener."""
    async with httpx.AsyncClient(timeout=WAIT_S) as browser:
        return await browser.get(url, follow_redirects=True)


async def oauth2(credentials: CredentialManager, credential_id: str) -> OAuth2:
    secret = (await credentials.get_credential("cloud", credential_id)).credential_type
    assert isinstance(secret, OAuth2)
    return secret


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


# -- logins ------------------------------------------------------------------------------------


async def test_a_browser_login_with_pkce_stores_working_tokens(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    opened: list[str] = []
    async with asyncio.TaskGroup() as tg:

        def on_url(url: str) -> None:
            opened.append(url)
            tg.create_task(visit(url))

        info = await credentials.login("cloud", config(oauth), on_url=on_url)
    [url] = opened
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert urlsplit(query["redirect_uri"]).hostname == "127.0.0.1"
    assert (info.integration_id, info.type, info.state, info.refreshable) == (
        "cloud",
        "OAuth2",
        "valid",
        True,
    )
    assert info.scopes == ("files.read",) and info.expires_at is not None
    secret = await oauth2(credentials, info.id)
    assert oauth.is_valid(secret.access_token)
    assert secret.refresh_token and secret.token_endpoint == oauth.token_url
    assert oauth.grants("authorization_code") == 1


async def test_a_redirect_with_another_state_is_refused_and_nothing_is_stored(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    async with asyncio.TaskGroup() as tg:

        def on_url(url: str) -> None:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query)) | {"state": "forged-state"}
            tg.create_task(visit(parts._replace(query=urlencode(query)).geturl()))

        with pytest.raises(OAuth2Error, match="state does not match") as caught:
            await credentials.login("cloud", config(oauth), on_url=on_url)
    assert caught.value.error == "mismatching_state"
    assert credentials.list() == [] and oauth.grants("authorization_code") == 0


async def test_a_denied_login_says_so(credentials: CredentialManager, oauth: OAuthServer) -> None:
    oauth.state.deny = True
    async with asyncio.TaskGroup() as tg:
        with pytest.raises(OAuth2Error, match="did not authorize the login: access_denied"):
            await credentials.login(
                "cloud", config(oauth), on_url=lambda url: tg.create_task(visit(url)) and None
            )
    assert credentials.list() == []


async def test_a_login_without_an_answer_times_out(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    with pytest.raises(OAuth2Error, match=r"no answer from the browser within 0\.05 s"):
        await credentials.login("cloud", config(oauth), on_url=lambda url: None, timeout_s=0.05)


async def test_the_device_code_flow_stores_tokens_once_the_user_approves(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    shown: list[DeviceAuthorization] = []

    def on_code(device: DeviceAuthorization) -> None:
        shown.append(device)
        oauth.approve_device(device.user_code)  # the user, on their phone

    info = await credentials.login_with_device_code("cloud", config(oauth), on_code=on_code, sleep=no_wait)
    [device] = shown
    assert device.verification_uri == f"{oauth.url}/device" and device.interval == 1
    assert oauth.is_valid((await oauth2(credentials, info.id)).access_token)
    assert oauth.grants("urn:ietf:params:oauth:grant-type:device_code") >= 1


async def test_the_device_code_flow_polls_while_pending_and_stops_when_denied(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    polls = 0
    codes: list[str] = []

    async def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            oauth.approve_device(codes[0], approved=False)
        await asyncio.sleep(0)

    with pytest.raises(OAuth2Error, match="denied"):
        await credentials.login_with_device_code(
            "cloud", config(oauth), on_code=lambda d: codes.append(d.user_code), sleep=sleep
        )
    assert polls == 3 and credentials.list() == []


async def test_logging_in_again_replaces_the_tokens_of_the_same_credential(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth)
    old = await oauth2(credentials, credential_id)

    def on_code(device: DeviceAuthorization) -> None:
        oauth.approve_device(device.user_code)

    stored = await credentials.oauth2_config("cloud", credential_id)
    assert stored is not None and stored.token_endpoint == oauth.token_url
    info = await credentials.login_with_device_code(
        "cloud", stored, on_code=on_code, credential_id=credential_id, sleep=no_wait
    )
    assert info.id == credential_id and info.generation == 2
    assert (await oauth2(credentials, credential_id)).access_token != old.access_token


# -- refresh -----------------------------------------------------------------------------------


async def test_a_token_about_to_expire_is_refreshed_before_use_and_the_rotated_refresh_token_stored(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth, expires_in=30)  # inside the 60 s margin
    old = await oauth2(credentials, credential_id)
    fresh = await credentials.fresh_credential("cloud", credential_id)
    new = fresh.credential_type
    assert isinstance(new, OAuth2)
    assert new.access_token != old.access_token and oauth.is_valid(new.access_token)
    assert new.refresh_token != old.refresh_token  # the server rotated it...
    stored = await oauth2(credentials, credential_id)
    assert (stored.access_token, stored.refresh_token) == (
        new.access_token,
        new.refresh_token,
    )  # ...and it is kept
    assert fresh.expires_at is not None and fresh.expires_at > datetime.now(UTC) + timedelta(minutes=30)
    assert fresh.generation == 2 and oauth.grants("refresh_token") == 1
    # The new refresh token works, the old one was spent.
    assert (await credentials.refresh_oauth2_token(credential_id)).generation == 3
    assert oauth.state.reuse_detected == 0


async def test_a_valid_token_is_used_as_it_is(credentials: CredentialManager, oauth: OAuthServer) -> None:
    credential_id = await store_issued(credentials, oauth, expires_in=3600)
    await credentials.fresh_credential("cloud", credential_id)
    assert oauth.grants("refresh_token") == 0 and credentials.token_requests == 0


async def test_a_revoked_refresh_token_puts_the_credential_in_a_log_in_again_state(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth, expires_in=5)
    oauth.revoke_everything()
    with pytest.raises(LoginRequired, match=r"must log in again.*spacedrive credential login cloud"):
        await credentials.fresh_credential("cloud", credential_id)
    [info] = credentials.list()
    assert info.state == "login_required" and "invalid_grant" in (info.state_reason or "")
    # From now on it fails fast, without asking the server again.
    with pytest.raises(LoginRequired, match="needs a new login"):
        await credentials.fresh_credential("cloud", credential_id)
    with pytest.raises(LoginRequired):
        await credentials.refresh_oauth2_token(credential_id)
    assert oauth.grants("refresh_token") == 1

    def on_code(device: DeviceAuthorization) -> None:
        oauth.approve_device(device.user_code)

    await credentials.login_with_device_code(
        "cloud", config(oauth), on_code=on_code, credential_id=credential_id, sleep=no_wait
    )
    assert credentials.info(credential_id).state == "valid"
    assert oauth.is_valid(
        (await credentials.fresh_credential("cloud", credential_id)).credential_type.access_token
    )


async def test_an_unreachable_server_is_a_transient_error_that_keeps_the_credential(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth, expires_in=5)
    with OAuthServer() as gone:
        closed_url = gone.token_url
    secret = await oauth2(credentials, credential_id)
    moved = IntegrationCredential(
        integration_id="cloud",
        credential_type=OAuth2(
            access_token=secret.access_token,
            refresh_token=secret.refresh_token,
            token_endpoint=closed_url,
            client_id=CLIENT_ID,
        ),
        id=credential_id,
        expires_at=datetime.now(UTC),
    )
    await credentials.store_credential("cloud", moved)
    with pytest.raises(OAuth2Unavailable, match="cannot reach the authorization server"):
        await credentials.fresh_credential("cloud", credential_id)
    assert credentials.info(credential_id).state == "valid"


async def test_two_concurrent_refreshes_in_one_process_make_one_token_request(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth)
    seen = await credentials.get_credential("cloud", credential_id)  # what both requests were sent with
    with oauth.hold_refreshes() as release:
        async with asyncio.TaskGroup() as tg:
            first = tg.create_task(credentials.refresh_after_rejection(seen))
            second = tg.create_task(credentials.refresh_after_rejection(seen))
            assert await asyncio.to_thread(oauth.refresh_arrived.wait, WAIT_S)
            release.set()
    assert oauth.grants("refresh_token") == 1 and credentials.token_requests == 1
    assert first.result().credential_type == second.result().credential_type
    assert first.result().generation == second.result().generation == seen.generation + 1
    assert oauth.state.reuse_detected == 0


async def test_two_managers_sharing_only_the_data_dir_make_one_token_request(
    data_dir: Path, credentials: CredentialManager, oauth: OAuthServer
) -> None:
    credential_id = await store_issued(credentials, oauth)
    seen = await credentials.get_credential("cloud", credential_id)
    other_library = LibraryManager(data_dir).open()  # its own connection, its own locks: "another process"
    try:
        other = CredentialManager(other_library, DeviceManager(data_dir))
        with oauth.hold_refreshes() as release:
            async with asyncio.TaskGroup() as tg:
                first = tg.create_task(credentials.refresh_after_rejection(seen))
                assert await asyncio.to_thread(oauth.refresh_arrived.wait, WAIT_S)
                second = tg.create_task(other.refresh_after_rejection(seen))  # waits on the file lock
                release.set()
    finally:
        other_library.close()
    assert oauth.grants("refresh_token") == 1
    assert credentials.token_requests + other.token_requests == 1
    assert first.result().credential_type == second.result().credential_type
    assert oauth.state.reuse_detected == 0


async def test_without_single_flight_the_server_would_have_revoked_everything(
    credentials: CredentialManager, oauth: OAuthServer
) -> None:
    """The race the lock prevents is real: spending a rotated refresh token twice kills the login."""
    credential_id = await store_issued(credentials, oauth)
    secret = await oauth2(credentials, credential_id)
    assert secret.refresh_token is not None
    cfg = OAuth2Config.of(secret)
    assert cfg is not None
    from spacedrive.credentials import OAuth2Client

    async with httpx.AsyncClient() as http:
        client = OAuth2Client(cfg, http)
        await client.refresh(secret.refresh_token)
        with pytest.raises(LoginRequired):
            await client.refresh(secret.refresh_token)
    assert oauth.state.reuse_detected == 1


# -- the loopback listener -----------------------------------------------------------------------


def test_request_heads_are_parsed_strictly() -> None:
    assert parse_request_target(b"GET /callback?code=x&state=y HTTP/1.1\r\nHost: h\r\n\r\n") == (
        "GET",
        "/callback?code=x&state=y",
    )
    for head in (
        b"",
        b"GET /x\r\n\r\n",
        b"GET x HTTP/1.1\r\n",
        b"GET /x SPDY/3\r\n",
        b"G\xffT /x HTTP/1.1\r\n",
    ):
        assert parse_request_target(head) is None


async def test_the_listener_ignores_other_paths_and_answers_the_callback() -> None:
    from spacedrive.credentials._loopback import LoopbackRedirect

    async with LoopbackRedirect() as receiver, httpx.AsyncClient(timeout=WAIT_S) as browser:
        base = receiver.redirect_uri.rsplit("/", 1)[0]
        assert (await browser.get(f"{base}/favicon.ico")).status_code == 404
        answer = await browser.get(f"{receiver.redirect_uri}?code=c&state=s")
        assert answer.status_code == 200 and "go back to the terminal" in answer.text
        async with asyncio.timeout(WAIT_S):
            assert await receiver.wait() == f"{receiver.redirect_uri}?code=c&state=s"
