#!/usr/bin/env bash
# One command: install into .venv/ and start the whole system on embedded defaults
# (SQLite under var/, clips in var/clips, an embedded broker: no server to install).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hearo run "$@"
