#!/usr/bin/env bash
# The test suite: sets up .venv if needed, then runs pytest (CPU only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
