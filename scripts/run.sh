#!/usr/bin/env bash
# The main job on the embedded default (SQLite, a local folder): set up, create the library,
# add FOLDER as a location, index it with a progress bar, search it for QUERY and show results.
# Usage: scripts/run.sh [FOLDER] [QUERY]   (defaults: this repository's src/ folder, "index")
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
folder="${1:-$PWD/src}"
query="${2:-index}"
export SPACEDRIVE_DATA_DIR="${SPACEDRIVE_DATA_DIR:-$PWD/.demo-data}"
sd=.venv/bin/spacedrive
$sd library show
$sd location add "$folder" --exist-ok --progress
$sd location list
$sd search "$query" --limit 20
