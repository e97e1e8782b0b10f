#!/usr/bin/env bash
# The benchmark's own environment: jobline plus the peers, never in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv bench/.venv
bench/.venv/bin/pip install -q -e . -r bench/requirements.txt
