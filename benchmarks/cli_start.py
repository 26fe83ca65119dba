"""CLI start benchmark: how long a ``spacedrive`` command takes from spawn to exit.

    python benchmarks/cli_start.py [--quick] [--rounds N] [--src DIR] [--env-bytecode]

Spawns, one of each per round (interleaved, so that drift in the machine's load touches all):

* ``spacedrive --help``;
* ``spacedrive search x`` on a small prepared data dir (``--data-dir`` on a temp dir,
  ``SPACEDRIVE_KEY_BACKEND=file``: the default library with a tiny folder added as a location
  and indexed once before measuring, not timed);
* ``spacedrive location list`` on the same data dir;
* the baseline ``python -c "import typer"``: what a bare typer app pays before doing anything;
* for reference, a minimal typer app running its one command with two parameters: typer's own
  floor for running a command (it coerces parameters through pydantic, imported on first use).

``spacedrive`` is the console script next to the interpreter (``.venv/bin/spacedrive``) when it
exists, else ``python -c`` calling ``spacedrive.cli.app:main``; ``PYTHONPATH`` is ``--src``
(default: this checkout's ``src``; an exported older commit measures "before"). Every command
must exit 0. Bytecode: the children get a private cache (``PYTHONPYCACHEPREFIX`` in the temp
dir, filled by a warm-up round), as an installed CLI has its ``.pyc`` files, whatever
``PYTHONDONTWRITEBYTECODE`` says here; ``--env-bytecode`` keeps the environment's settings
instead (with ``PYTHONDONTWRITEBYTECODE=1`` and no ``.pyc`` in ``src``, every ``spacedrive``
module is compiled on every start).

Printed: p50 and p99 of each over ``--rounds`` rounds (default 20, ``--quick`` 5) and the ratio
of each p50 to the baseline's. The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine_setup, percentile

SCRIPT = Path(sys.executable).parent / "spacedrive"


def spacedrive_argv() -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT)]
    code = "import sys; from spacedrive.cli.app import main; sys.argv[0] = 'spacedrive'; sys.exit(main())"
    return [sys.executable, "-c", code]


MINIMAL_TYPER_APP = """
from typing import Annotated
import typer
app = typer.Typer()
@app.command()
def hello(name: Annotated[str, typer.Argument()] = "x", n: Annotated[int, typer.Option()] = 1) -> None:
    print(name * n)
app()
"""


def environment(src: Path, pycache: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "SPACEDRIVE_KEY_BACKEND": "file"}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def spawn(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``argv`` until it has exited (its output discarded; it must exit 0)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def prepare(base: Path, env: dict[str, str]) -> Path:
    """A data dir whose default library has one tiny folder as a location, indexed once."""
    data_dir = base / "data"
    data_dir.mkdir(mode=0o700)
    files = base / "files"
    (files / "sub").mkdir(parents=True)
    for i in range(5):
        (files / f"note-{i}.txt").write_text(f"note {i}\n")
    (files / "sub" / "xray.md").write_text("# x\n")
    sd = [*spacedrive_argv(), "--data-dir", str(data_dir)]
    subprocess.run(
        [*sd, "location", "add", str(files), "--no-progress"], check=True, env=env, capture_output=True
    )
    return data_dir


def ms(seconds: list[float]) -> dict[str, float]:
    values = [s * 1000 for s in seconds]
    return {"p50": round(percentile(values, 50), 1), "p99": round(percentile(values, 99), 1)}


def measure(rounds: int, src: Path, env_bytecode: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp:
        env = environment(src, None if env_bytecode else Path(tmp) / "pycache")
        data_dir = prepare(Path(tmp), env)
        sd = [*spacedrive_argv(), "--data-dir", str(data_dir)]
        commands: dict[str, list[str]] = {
            "typer_import": [sys.executable, "-c", "import typer"],
            "typer_app": [sys.executable, "-c", MINIMAL_TYPER_APP],
            "help": [*spacedrive_argv(), "--help"],
            "search": [*sd, "search", "x"],
            "location_list": [*sd, "location", "list"],
        }
        for argv in commands.values():  # warm-up: page cache, .pyc files
            spawn(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, argv in commands.items():
                times[name].append(spawn(argv, env))
    result: dict[str, Any] = {name: ms(values) for name, values in times.items()}
    base = result["typer_import"]["p50"]
    result["over_typer_import_p50"] = {
        name: round(result[name]["p50"] / base, 2) for name in commands if name != "typer_import"
    }
    result["rounds"] = rounds
    result["src"] = str(src)
    result["bytecode"] = "environment" if env_bytecode else "private cache"
    return result


LABELS = {
    "typer_import": "`python -c 'import typer'` (baseline)",
    "typer_app": "a minimal typer app running its command (typer's floor)",
    "help": "`spacedrive --help`",
    "search": "`spacedrive search x`",
    "location_list": "`spacedrive location list`",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    parser.add_argument(
        "--env-bytecode", action="store_true", help="keep the environment's bytecode settings (see above)"
    )
    args = parser.parse_args()
    result = measure(5 if args.quick else args.rounds, args.src.resolve(), args.env_bytecode)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{result['rounds']} rounds, spawn -> exit (src {result['src']}, bytecode: {result['bytecode']}):")
    for name, label in LABELS.items():
        times = result[name]
        ratio = result["over_typer_import_p50"].get(name)
        suffix = f" ({ratio}x the baseline)" if ratio is not None else ""
        print(f"  {label}: p50 {times['p50']} ms, p99 {times['p99']} ms{suffix}")
    result["setup"] = machine_setup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
