#!/usr/bin/env bash
# Set up rewardgym on a fresh Debian/Ubuntu machine: system libraries, a virtual
# environment in .venv, and the package with its test extras. Idempotent.
#   TORCH_SPEC   torch requirement to install first (default torch==2.13.0; on a machine
#                without a local CPU wheel, pass e.g. "torch --index-url .../cpu" or a CUDA build)
#   PYTHON       interpreter to create the venv with (default python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

# OSMesa: off-screen MuJoCo rendering on machines without a GPU (videos, demos).
# libseccomp: the system-call allow-list of reward workers (docs/SECURITY.md).
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa || ! ldconfig -p 2>/dev/null | grep -q libseccomp.so.2; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libosmesa6 libseccomp2 >/dev/null
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools<81" wheel
# torch first, so that the dependency resolver keeps this build instead of fetching another.
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[test]"
echo "rewardgym set up in .venv ($(.venv/bin/python -c 'import rewardgym, torch; print(len(rewardgym.all_tasks()), "tasks, torch", torch.__version__)'))"
