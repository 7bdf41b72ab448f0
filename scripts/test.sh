#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite: fast tests only, no GPU needed.
# Slow learning tests: scripts/test.sh -m slow ; GPU tests: scripts/test.sh -m gpu
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
exec .venv/bin/python -m pytest -q "$@"
