#!/usr/bin/env bash
# Creates .venv/ at the repo root and installs Hear-o into it (offline-capable: torch's CPU
# wheel is found through PIP_FIND_LINKS on this machine; everything else comes from PyPI).
# Usage: scripts/setup.sh [extras], e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
