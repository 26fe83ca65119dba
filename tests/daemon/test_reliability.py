"""Nothing the daemon started outlives it: ``kill -9`` of the daemon, and ``daemon stop``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from spacedrive.daemon import DaemonFiles
from spacedrive.sandbox import CgroupSupport, probe_platform
from tests.daemon.conftest import StartDaemon, alive, group_members, sd, sd_json, wait_all_exited

pytestmark = pytest.mark.e2e


def call(data_dir: Path, integration_id: str, path: str) -> Any:
    params = json.dumps({"path": path})
    return json.loads(
        sd(data_dir, "integration", "call", integration_id, "filetype.extract_metadata", "-p", params).stdout
    )


def started_processes(data_dir: Path, hello: str, spawner: str, notes: Path) -> dict[str, int]:
    """Make the daemon start both integrations (through the CLI); every pid that now runs."""
    assert call(data_dir, hello, str(notes))["metadata"]["words"] == 4
    spawned = call(data_dir, spawner, "x")
    live = {row["id"]: row["pid"] for row in sd_json(data_dir, "integration", "status")}
    assert live == {hello: live[hello], spawner: spawned["pid"]} and isinstance(live[hello], int)
    processes = {hello: live[hello], **spawned}
    assert sorted(alive(processes.values())) == sorted(processes.values())
    return processes


def test_after_a_kill_9_of_the_daemon_no_integration_process_or_child_is_left(
    data_dir: Path, start_daemon: StartDaemon, hello: str, spawner: str, notes: Path
) -> None:
    daemon = start_daemon()["pid"]
    processes = started_processes(data_dir, hello, spawner, notes)
    # the groups of both integrations; the `escaped` child made a session (and group) of its own
    groups = [processes[hello], processes["pid"], processes["escaped"]]
    assert set(group_members(groups)) == set(processes.values())

    cgroups = probe_platform().cgroup
    left = [] if cgroups is None else leaves_of(cgroups, daemon)
    assert cgroups is None or left  # the sandboxes' cgroups of the integrations that run

    os.kill(daemon, signal.SIGKILL)

    assert wait_all_exited([daemon, *processes.values()]) == []
    assert group_members(groups) == []
    assert DaemonFiles(data_dir).lock_held() is False
    if cgroups is not None:  # nobody removed them; the next daemon does, before it is ready
        assert leaves_of(cgroups, daemon) == left
        start_daemon()
        assert leaves_of(cgroups, daemon) == []


def leaves_of(cgroups: CgroupSupport, core_pid: int) -> list[str]:
    """The sandbox cgroups that the core ``core_pid`` made (``<base>/spacedrive/<id>-<pid>-<random>``)."""
    found = set()
    for base in cgroups.bases.values():
        folder = base / "spacedrive"
        if folder.is_dir():
            found |= {leaf.name for leaf in folder.iterdir() if f"-{core_pid}-" in leaf.name}
    return sorted(found)


def test_daemon_stop_stops_every_integration_and_its_children(
    data_dir: Path, start_daemon: StartDaemon, hello: str, spawner: str, notes: Path
) -> None:
    daemon = start_daemon()["pid"]
    processes = started_processes(data_dir, hello, spawner, notes)

    sd(data_dir, "daemon", "stop")

    assert wait_all_exited([daemon, *processes.values()]) == []
    assert group_members([processes[hello], processes["pid"], processes["escaped"]]) == []
    files = DaemonFiles(data_dir)
    assert not files.socket.exists() and not files.pid_file.exists()
    log = (data_dir / "logs" / f"{hello}.log").read_text()
    assert "stopped (stopped): it exited with status 0" in log  # shut down in steps, not killed
