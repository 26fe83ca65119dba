"""Indexing benchmark: ours against a bare os.walk + os.stat loop over the same tree, same run.

    python benchmarks/index.py [--files 100000] [--tree DIR] [--quick]

Builds (or reuses) a tree of small files, then measures, each in a fresh process so that peak
memory is its own: the bare walk (the baseline), a shallow index (walk, stat, type, database),
a content index (also content identity; file contents read once beforehand so the page cache
is warm), and a re-index of the unchanged tree.
The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, run_child

EXTENSIONS = ("txt", "jpg", "png", "md", "py", "json", "pdf", "mp3", "rs", "csv")
FILES_PER_DIR = 100


def build_tree(root: Path, files: int) -> None:
    marker = root / f".complete-{files}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    for i in range(files):
        folder = root / f"group{i // (FILES_PER_DIR * 10)}" / f"dir{i // FILES_PER_DIR}"
        if i % FILES_PER_DIR == 0:
            folder.mkdir(parents=True)
        (folder / f"file{i}.{EXTENSIONS[i % len(EXTENSIONS)]}").write_bytes(b"x" * (50 + i % 200))
    marker.touch()


def bare_walk(root: Path) -> int:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.stat(os.path.join(dirpath, name), follow_symlinks=False)
            count += 1
    return count


def warm_contents(root: Path) -> None:
    """Read every file once, so the content index is measured on a warm page cache."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                f.read()


def child_walk(tree: Path) -> dict[str, float]:
    bare_walk(tree)  # warm the cache the same way for every measurement
    start = time.perf_counter()
    count = bare_walk(tree)
    return {"seconds": time.perf_counter() - start, "entries": count, "peak_rss_mib": peak_rss_mib()}


def child_index(tree: Path, data_dir: Path, mode: str) -> dict[str, float]:
    from spacedrive.core.indexer import index_location
    from spacedrive.core.node import Core

    bare_walk(tree)
    if mode == "content":
        warm_contents(tree)
    with Core(data_dir) as core:
        location = core.locations.find_by_path(tree) or core.locations.add(tree, index_mode=mode)
        _ = core.registry

        async def run() -> dict[str, float]:
            async with core.job_system() as jobs:
                start = time.perf_counter()
                record = await jobs.wait(index_location(jobs, location))
                elapsed = time.perf_counter() - start
            assert record.status == "completed", record.error
            return {
                "seconds": elapsed,
                "entries": record.output["scanned"],
                **{k: record.output[k] for k in ("added", "modified", "identified")},
            }

        result = asyncio.run(run())
    return {**result, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "sd-bench-tree")
    parser.add_argument("--quick", action="store_true", help="10,000 files")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, tree, *rest = args.child
        result = child_walk(Path(tree)) if kind == "walk" else child_index(Path(tree), Path(rest[0]), kind)
        print(json.dumps(result))
        return

    files = 10_000 if args.quick else args.files
    tree = args.tree.with_name(f"{args.tree.name}-{files}")
    build_tree(tree, files)
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        walk = run_child(script, "walk", str(tree))
        shallow = run_child(script, "shallow", str(tree), f"{tmp}/shallow")
        content = run_child(script, "content", str(tree), f"{tmp}/content")
        reindex = run_child(script, "content", str(tree), f"{tmp}/content")
    rate = {
        name: r["entries"] / r["seconds"]
        for name, r in (("walk", walk), ("shallow", shallow), ("content", content), ("reindex", reindex))
    }
    summary = {
        "files": files,
        "entries": walk["entries"],
        "bare_walk_entries_per_s": round(rate["walk"]),
        "shallow_entries_per_s": round(rate["shallow"]),
        "shallow_ratio_to_bare_walk": round(rate["shallow"] / rate["walk"], 3),
        "content_entries_per_s": round(rate["content"]),
        "content_ratio_to_bare_walk": round(rate["content"] / rate["walk"], 3),
        "reindex_entries_per_s": round(rate["reindex"]),
        "reindex_speedup_vs_content_index": round(content["seconds"] / reindex["seconds"], 2),
        "reindex_speedup_vs_shallow_index": round(shallow["seconds"] / reindex["seconds"], 2),
        "peak_rss_mib": {
            "bare_walk": round(walk["peak_rss_mib"], 1),
            "shallow": round(shallow["peak_rss_mib"], 1),
            "content": round(content["peak_rss_mib"], 1),
            "reindex": round(reindex["peak_rss_mib"], 1),
        },
    }
    for key, value in summary.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
