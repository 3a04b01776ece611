#!/usr/bin/env bash
# One command: install into .venv/ with the test extras and run the whole test suite.
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# No path here: pyproject's testpaths run the tiers in order (unit first); paths in "$@" replace them.
exec .venv/bin/python -m pytest -q "$@"
