"""Helpers shared by the benchmarks: child processes with peak memory, and result printing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_child(script: Path, *args: str) -> dict[str, Any]:
    """Run ``script --child ARGS`` in a fresh interpreter; it prints one JSON object last."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SPACEDRIVE_KEY_BACKEND": "file"}
    out = subprocess.run(
        [sys.executable, str(script), "--child", *args], check=True, capture_output=True, text=True, env=env
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


MIB = 1024 * 1024


def rss_now_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_rss_mib() -> float:
    """Peak RSS of this process image: ``VmHWM`` (``ru_maxrss`` also counts the parent's RSS
    at ``fork``, as the kernel folds the forked copy's peak in at ``exec``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def machine_setup() -> dict[str, Any]:
    """What the numbers were measured on (the last JSON line's ``setup``)."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
