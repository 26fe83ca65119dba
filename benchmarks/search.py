"""Search benchmark: FTS5 prefix queries with a filter over N entries, against a LIKE scan, same run.

    python benchmarks/search.py [--entries 1000000] [--queries 200] [--quick]

Builds a library of synthetic entries (realistic names from a word list, spread over four
locations and several kinds), then times prefix queries with a location filter through
``spacedrive.core.search`` and the same queries as an indexed ``name LIKE 'prefix%'`` scan
(the baseline: what a database without full-text search does). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile

WORDS = [
    "holiday",
    "report",
    "invoice",
    "photo",
    "scan",
    "draft",
    "final",
    "summary",
    "budget",
    "meeting",
    "notes",
    "project",
    "design",
    "backup",
    "family",
    "concert",
    "travel",
    "receipt",
    "contract",
    "letter",
    "thesis",
    "chapter",
    "music",
    "album",
    "track",
    "video",
    "clip",
    "screen",
    "shot",
    "export",
    "import",
    "archive",
    "release",
    "build",
    "config",
    "schema",
    "diagram",
    "sketch",
    "portrait",
    "landscape",
    "beach",
    "mountain",
    "city",
    "night",
    "winter",
    "summer",
    "spring",
    "autumn",
    "birthday",
    "wedding",
    "party",
    "garden",
    "kitchen",
    "recipe",
]
KINDS = {
    "jpg": "Image",
    "png": "Image",
    "pdf": "Document",
    "docx": "Document",
    "mp3": "Audio",
    "mp4": "Video",
    "txt": "Text",
    "py": "Code",
    "zip": "Archive",
    "csv": "Text",
}
LOCATIONS = 4


def build(db_path: Path, entries: int, seed: int = 7) -> None:
    from spacedrive.core.db import open_database, transaction
    from spacedrive.core.entries import insert_entries

    rng = random.Random(seed)
    conn = open_database(db_path)
    exts = list(KINDS)
    with transaction(conn):
        conn.execute("INSERT INTO devices (id, name, kind, created_at) VALUES ('d', 'bench', 'physical', 0)")
        for loc in range(1, LOCATIONS + 1):
            conn.execute(
                "INSERT INTO locations (id, uuid, name, device_id, path, created_at)"
                " VALUES (?, ?, ?, 'd', ?, 0)",
                (loc, f"u{loc}", f"loc{loc}", f"/data/loc{loc}"),
            )
    batch = []
    for i in range(entries):
        ext = exts[i % len(exts)]
        name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.randrange(10_000)}.{ext}"
        rel = f"{rng.choice(WORDS)}/{rng.choice(WORDS)}/{name}"
        batch.append(
            (
                i % LOCATIONS + 1,
                f"{rel}#{i}",
                name,
                ext,
                0,
                rng.randrange(10**7),
                1_700_000_000_000_000_000 + i,
                i,
                KINDS[ext],
                None,
            )
        )
        if len(batch) == 50_000 or i == entries - 1:
            with transaction(conn):
                insert_entries(conn, batch)
            batch.clear()
    conn.execute("CREATE INDEX IF NOT EXISTS bench_name ON entries (name COLLATE NOCASE, location_id)")
    conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('optimize')")
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100,000 entries")
    args = parser.parse_args()
    entries = 100_000 if args.quick else args.entries

    from spacedrive.core.db import connect
    from spacedrive.core.search import SearchQuery, search

    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "library.db"
        start = time.perf_counter()
        build(db_path, entries)
        build_s = time.perf_counter() - start
        conn = connect(db_path)
        rng = random.Random(11)
        queries = [
            (rng.choice(WORDS)[: rng.randint(3, 5)], rng.randint(1, LOCATIONS)) for _ in range(args.queries)
        ]
        ours, baseline, hits = [], [], []
        for prefix, loc in queries:
            t0 = time.perf_counter()
            found = search(conn, SearchQuery(text=prefix, location_ids=(loc,), limit=50))
            t1 = time.perf_counter()
            conn.execute(
                "SELECT id, name FROM entries WHERE name LIKE ? || '%' AND location_id = ?"
                " ORDER BY name COLLATE NOCASE LIMIT 50",
                (prefix, loc),
            ).fetchall()
            t2 = time.perf_counter()
            ours.append((t1 - t0) * 1000)
            baseline.append((t2 - t1) * 1000)
            hits.append(len(found))
        conn.close()
    summary = {
        "entries": entries,
        "build_s": round(build_s, 1),
        "queries": len(queries),
        "mean_hits": round(sum(hits) / len(hits), 1),
        "ours_p50_ms": round(percentile(ours, 50), 2),
        "ours_p99_ms": round(percentile(ours, 99), 2),
        "like_scan_p50_ms": round(percentile(baseline, 50), 2),
        "like_scan_p99_ms": round(percentile(baseline, 99), 2),
        "speedup_p50": round(percentile(baseline, 50) / percentile(ours, 50), 1),
    }
    for key, value in summary.items():
        print(f"{key:>18}: {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
