"""``spacedrive credential`` end to end: real processes, a real OAuth2 server, secrets searched for.

Every command runs as ``spacedrive`` does, in its own process. After each scenario the secrets
involved are searched for in every output (stdout and stderr, ``-vv`` debug logs included) and
in every file of the data dir: none may appear, except where the user typed one on the command
line on purpose.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import select
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from spacedrive.core.node import Core
from spacedrive.credentials import ApiKey, Basic, CredentialManager, Custom, OAuth2
from tests.conftest import CLI_CODE, run_cli
from tests.credentials._helpers import a_secret, files_holding, install_cloud
from tests.credentials._oauth_server import CLIENT_ID, OAuthServer
from tests.credentials.test_oauth2 import visit

pytestmark = pytest.mark.e2e

WAIT_S = 60.0


def sd(data_dir: Path, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data_dir, *args, stdin=stdin, check=check)


def sd_json(data_dir: Path, *args: str, stdin: str = "") -> Any:
    return json.loads(sd(data_dir, *args, "--json", stdin=stdin).stdout)


async def sd_async(data_dir: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI_CODE,
        "--data-dir",
        str(data_dir),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> str:
    """The first line of ``stream`` holding ``marker`` (lines read are kept in ``seen``)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the process ended before printing {marker!r}: {''.join(seen)}"
            seen.append(line)
            if marker in line:
                return line


@pytest.fixture
def cloud(core: Core, data_dir: Path, tmp_path: Path, oauth: OAuthServer) -> str:
    install_cloud(core.library.db, data_dir, tmp_path / "src", "cloud", {"api_url": oauth.api_url})
    return "cloud"


def secret_of(data_dir: Path, credential_id: str) -> object:
    with Core(data_dir) as core:
        manager = CredentialManager.for_core(core)
        info = manager.info(credential_id)
        return asyncio.run(manager.get_credential(info.integration_id, credential_id)).credential_type


def test_help_is_available_for_every_credential_command(data_dir: Path) -> None:
    assert "Usage" in sd(data_dir, "credential", "--help").stdout
    for command in ("add", "list", "remove", "login", "refresh", "rotate-key"):
        assert "Usage" in sd(data_dir, "credential", command, "--help").stdout, command


def test_secrets_from_standard_input_are_stored_and_never_printed(data_dir: Path, cloud: str) -> None:
    key, password, custom = a_secret("key"), a_secret("pw"), a_secret("custom")
    outputs = []
    added = sd(
        data_dir, "credential", "add", cloud, "--type", "api-key", "--key", "-", "--json", stdin=key + "\n"
    )
    outputs.append(added)
    api = json.loads(added.stdout)
    piped = sd(
        data_dir, "credential", "add", cloud, "-t", "basic", "--username", "ada", "--json", stdin=password
    )
    outputs.append(piped)
    basic = json.loads(piped.stdout)
    data_file = data_dir.parent / "custom.json"
    data_file.write_text(json.dumps({"token": custom}))
    outputs.append(
        sd(data_dir, "credential", "add", cloud, "-t", "custom", "--data", str(data_file), "--json")
    )
    data_file.unlink()
    listed = sd(data_dir, "credential", "list", "--json")
    table = sd(data_dir, "credential", "list")
    outputs += [listed, table]

    assert secret_of(data_dir, api["id"]) == ApiKey(key=key)
    assert secret_of(data_dir, basic["id"]) == Basic(username="ada", password=password)
    assert [(c["integration_id"], c["type"], c["state"]) for c in json.loads(listed.stdout)] == [
        ("cloud", "ApiKey", "valid"),
        ("cloud", "Basic", "valid"),
        ("cloud", "Custom", "valid"),
    ]
    assert api["id"] in table.stdout
    for result in outputs:
        assert not any(s in result.stdout + result.stderr for s in (key, password, custom))
        assert "warning" not in result.stderr
    assert files_holding(data_dir, key, password, custom) == []


def test_an_oauth2_credential_takes_its_tokens_from_standard_input_one_line_each(
    data_dir: Path, cloud: str, oauth: OAuthServer
) -> None:
    token = oauth.issue()
    assert token.refresh_token is not None
    info = sd_json(
        data_dir,
        "credential", "add", cloud, "-t", "oauth2", "--access-token", "-", "--refresh-token", "-",
        "--token-url", oauth.token_url, "--client-id", CLIENT_ID, "--scope", "files.read",
        "--expires-in", "3600",
        stdin=f"{token.access_token}\n{token.refresh_token}\n",
    )  # fmt: skip
    assert (info["type"], info["refreshable"], info["scopes"]) == ("OAuth2", True, ["files.read"])
    secret = secret_of(data_dir, info["id"])
    assert isinstance(secret, OAuth2)
    assert (secret.access_token, secret.refresh_token) == (token.access_token, token.refresh_token)


def test_a_secret_on_the_command_line_works_with_a_warning(data_dir: Path, cloud: str) -> None:
    key = a_secret("key")
    result = sd(data_dir, "credential", "add", cloud, "-t", "api-key", "--key", key, "--header", "X-Key")
    assert "warning: a secret given with --key can end up in your shell history" in result.stderr
    assert key not in result.stdout + result.stderr


def test_remove_and_the_exit_codes_of_mistakes(data_dir: Path, cloud: str) -> None:
    info = sd_json(data_dir, "credential", "add", cloud, "-t", "api-key", stdin="k\n")
    assert sd_json(data_dir, "credential", "remove", info["id"]) == {
        "id": info["id"],
        "integration_id": "cloud",
        "removed": True,
    }
    assert sd_json(data_dir, "credential", "list") == []
    cases = [
        (["remove", info["id"]], 3, "no credential"),
        (["add", "nope", "-t", "api-key"], 3, "nope"),
        (
            ["add", cloud, "-t", "api-key", "--username", "x"],
            2,
            "--username does not apply to --type api-key",
        ),
        (["add", cloud, "-t", "basic"], 2, "--type basic needs --username"),
        (["add", cloud, "-t", "custom", "--data", "-"], 2, "standard input is not valid JSON"),
        (["add", cloud, "-t", "api-key", "--expires-at", "tomorrow"], 2, "not an ISO 8601 date-time"),
        (["add", cloud, "-t", "oauth2", "--token-url", "http://evil.example/t"], 2, "https://"),
        (["add", cloud, "-t", "api-key"], 2, "no secret on standard input"),
        (["login", cloud], 2, "give --client-id and --token-url"),
        (["refresh", "3f2c2fd6-0000-4000-8000-000000000000"], 3, "no credential"),
    ]
    for args, code, message in cases:
        result = sd(data_dir, "credential", *args, stdin="{oops" if "custom" in args else "", check=False)
        assert (result.returncode, message in result.stderr) == (code, True), (args, result.stderr)


async def test_login_in_a_browser_stores_tokens_that_refresh_and_never_shows_them(
    data_dir: Path, cloud: str, oauth: OAuthServer
) -> None:
    login = await sd_async(
        data_dir, "-vv", "credential", "login", cloud, "--no-browser", "--json",
        "--client-id", CLIENT_ID, "--authorize-url", oauth.authorize_url, "--token-url", oauth.token_url,
        "--device-url", oauth.device_url, "--scope", "files.read", "--label", "me",
    )  # fmt: skip
    assert login.stderr is not None
    seen: list[str] = []
    await read_until(login.stderr, "Open this URL", seen)
    url = (await read_until(login.stderr, oauth.authorize_url, seen)).strip()
    assert (await visit(url)).status_code == 200  # the browser lands on the loopback listener
    async with asyncio.timeout(WAIT_S):
        stdout, stderr = await login.communicate()
    assert login.returncode == 0, stderr
    info = json.loads(stdout)
    assert (info["integration_id"], info["type"], info["label"], info["state"]) == (
        "cloud",
        "OAuth2",
        "me",
        "valid",
    )
    secret = await asyncio.to_thread(secret_of, data_dir, info["id"])
    assert isinstance(secret, OAuth2) and oauth.is_valid(secret.access_token)

    refreshed = await asyncio.to_thread(sd, data_dir, "-vv", "credential", "refresh", info["id"], "--json")
    assert json.loads(refreshed.stdout)["id"] == info["id"] and oauth.grants("refresh_token") == 1
    rotated = await asyncio.to_thread(sd, data_dir, "credential", "rotate-key", "--json")
    assert json.loads(rotated.stdout)["resealed"] == 1
    again = await asyncio.to_thread(secret_of, data_dir, info["id"])
    assert isinstance(again, OAuth2) and oauth.is_valid(again.access_token)

    every_token = [t.access_token for t in oauth.state.tokens] + [
        t.refresh_token or "" for t in oauth.state.tokens
    ]
    printed = "".join(seen) + stderr.decode() + stdout.decode()
    printed += refreshed.stdout + refreshed.stderr + rotated.stdout + rotated.stderr
    assert "DEBUG" in printed  # -vv did log
    assert not [token for token in every_token if token in printed]
    assert files_holding(data_dir, *every_token) == []


async def test_login_with_a_device_code_on_a_machine_without_a_browser(
    data_dir: Path, cloud: str, oauth: OAuthServer
) -> None:
    login = await sd_async(
        data_dir, "credential", "login", cloud, "--device-code", "--json",
        "--client-id", CLIENT_ID, "--token-url", oauth.token_url, "--device-url", oauth.device_url,
    )  # fmt: skip
    assert login.stderr is not None
    line = await read_until(login.stderr, "enter the code:", [])
    assert f"{oauth.url}/device" in line
    oauth.approve_device(line.rsplit(":", 1)[1].strip())
    async with asyncio.timeout(WAIT_S):
        stdout, stderr = await login.communicate()
    assert login.returncode == 0, stderr
    info = json.loads(stdout)
    secret = await asyncio.to_thread(secret_of, data_dir, info["id"])
    assert isinstance(secret, OAuth2) and oauth.is_valid(secret.access_token)
    # Logging in again reuses the stored endpoints: no options needed, and the same credential.
    relogin = await sd_async(data_dir, "credential", "login", cloud, "--device-code", "--json")
    assert relogin.stderr is not None
    line = await read_until(relogin.stderr, "enter the code:", [])
    oauth.approve_device(line.rsplit(":", 1)[1].strip())
    async with asyncio.timeout(WAIT_S):
        stdout, stderr = await relogin.communicate()
    assert relogin.returncode == 0, stderr
    assert json.loads(stdout)["id"] == info["id"]


def test_a_refresh_that_needs_a_new_login_says_so(data_dir: Path, cloud: str, oauth: OAuthServer) -> None:
    token = oauth.issue()
    info = sd_json(
        data_dir,
        "credential", "add", cloud, "-t", "oauth2", "--token-url", oauth.token_url, "--client-id", CLIENT_ID,
        stdin=f"{token.access_token}\n{token.refresh_token}\n",
    )  # fmt: skip
    oauth.revoke_everything()
    result = sd(data_dir, "credential", "refresh", info["id"], check=False)
    assert result.returncode == 1 and "spacedrive credential login cloud" in result.stderr
    [listed] = sd_json(data_dir, "credential", "list")
    assert listed["state"] == "login_required"


def test_custom_data_is_read_from_standard_input_by_default(data_dir: Path, cloud: str) -> None:
    info = sd_json(data_dir, "credential", "add", cloud, "-t", "custom", stdin='{"tenant": "acme", "n": [1]}')
    assert secret_of(data_dir, info["id"]) == Custom(data={"tenant": "acme", "n": [1]})


def test_integration_call_hands_the_stored_credential_over(data_dir: Path, cloud: str) -> None:
    key = a_secret("key")
    info = sd_json(data_dir, "credential", "add", cloud, "-t", "api-key", stdin=key + "\n")
    called = sd(data_dir, "integration", "call", cloud, "location.list_locations")
    [location] = json.loads(called.stdout)
    facts = location["facts"]
    assert (facts["id"], facts["sha256"]) == (info["id"], hashlib.sha256(key.encode()).hexdigest())
    assert key not in called.stdout + called.stderr
    assert files_holding(data_dir, key) == []


def run_in_terminal(data_dir: Path, args: list[str], answers: dict[str, str]) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (its controlling terminal), answering each prompt; status, screen."""
    master, slave = os.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-c", CLI_CODE, "--data-dir", str(data_dir), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,  # the child owns the terminal, as under a shell
        env=dict(os.environ),
    )
    os.close(slave)
    screen = b""
    pending = dict(answers)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], WAIT_S)
            assert ready, f"no output within {WAIT_S} s: {screen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            for prompt in list(pending):
                # Exactly at the prompt: getpass writes it once echo is off (an earlier answer is flushed).
                if screen.decode(errors="replace").endswith(prompt):
                    os.write(master, pending.pop(prompt).encode() + b"\n")
        return process.wait(WAIT_S), screen.decode(errors="replace")
    finally:
        os.close(master)


def test_a_secret_typed_at_the_prompt_is_not_echoed(data_dir: Path, cloud: str) -> None:
    key = a_secret("key")
    status, screen = run_in_terminal(
        data_dir, ["credential", "add", cloud, "-t", "api-key"], {"API key: ": key}
    )
    assert status == 0, screen
    assert "API key:" in screen and "stored ApiKey credential" in screen
    assert key not in screen  # typed with echo off
    [info] = sd_json(data_dir, "credential", "list")
    assert secret_of(data_dir, info["id"]) == ApiKey(key=key)
