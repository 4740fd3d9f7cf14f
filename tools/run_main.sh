#!/usr/bin/env bash
# The main job: sets up .venv if needed, then runs the MonoASD workflow
# (tools/run_main.py; pass --help for options).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" tools/run_main.py "$@"
