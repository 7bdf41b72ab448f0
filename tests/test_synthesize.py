"""`rewardgym synthesize` end to end over real HTTP against the local OpenAI-compatible
TEST TOOLING server: bad replies are caught by the critic and repaired or rejected with
their reason recorded, the loop finishes, the best program is usable as a reward, and a
resumed run repeats neither LLM calls nor training."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest

from rewardgym.testing.openai_server import ScriptedOpenAIServer, load_transcript_file

CLI = [sys.executable, "-m", "rewardgym.cli.main", "synthesize"]
TINY = ["--steps", "256", "--num-envs", "1", "--eval-episodes", "1", "--check-timeout", "5"]


def _program(name: str) -> str:
    return load_transcript_file(name)["responses"][-1]["text"]


def _cli(server, tmp_path, *args, env_cache=True):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa",
           "REWARDGYM_LLM_CACHE": str(tmp_path / "llm-cache")}
    cmd = CLI + ["--base-url", server.base_url, "--model", server.model, "--api-key", server.api_key,
                 "--runs-dir", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_two_rounds_repair_train_reflect_and_resume_without_repeating(tmp_path):
    with ScriptedOpenAIServer("synthesis_hopper") as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "2", "--samples", "2", "--name", "s", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.chat_request_count == 3  # design, repair, reflection
        run = tmp_path / "runs" / "s"
        state = json.loads((run / "state.json").read_text())
        first = state["rounds"][0]["candidates"]
        assert first[0]["attempts"][0]["stage"] == "validate" and "forward_velocity" in first[0]["attempts"][0]["reason"]
        assert first[0]["status"] == "trained" and len(first[0]["attempts"]) == 2  # repaired, then trained
        assert all(c["status"] == "trained" for r in state["rounds"] for c in r["candidates"])
        assert len((run / "llm_transcript.jsonl").read_text().splitlines()) == 3
        for name in ("best_reward.py", "report.md", "report.png"):
            assert (run / name).is_file(), name
        env = gym.make("rewardgym/Hopper-Hop-v0", reward=str(run / "best_reward.py"))
        env.reset(seed=0)
        assert set(env.step(env.action_space.sample())[4]["reward_terms"])  # usable as reward=PATH
        evals = {c["id"]: (run / f"round_{c['id'][1]}" / f"{c['id']}_run" / "eval.json").stat().st_mtime
                 for r in state["rounds"] for c in r["candidates"]}

        again = _cli(server, tmp_path, "--resume", str(run))
        assert again.returncode == 0, again.stdout + again.stderr
        assert server.chat_request_count == 3  # nothing asked twice
        for cid, mtime in evals.items():  # nothing trained twice
            assert (run / f"round_{cid[1]}" / f"{cid}_run" / "eval.json").stat().st_mtime == mtime


def test_every_bad_reply_is_caught_and_the_loop_finishes(tmp_path):
    blocks = [_program(n) for n in ("syntax_error", "import_os", "infinite_loop", "nan_reward", "unknown_field")]
    good = _program("good_programs").split("```python")[1].split("```")[0]
    design = "Here are my programs.\n\n" + "\n\n".join(blocks) + f"\n\n```python{good}```\n"
    fixed_nan = "```python\ndef compute_reward(state, action):\n    forward = state.torso_lin_vel[:, 0]\n" \
                "    return forward, {'forward': forward}\n```"
    repair = "Reward program repair request"
    script = [
        {"kind": "error", "status": 429, "retry_after": 0.1},          # design: rate limited, then answered
        {"kind": "reply", "text": design},
        {"kind": "error", "status": 500, "match": repair},             # syntax error's repair: server errors
        {"kind": "error", "status": 500, "match": repair},
        {"kind": "hang", "match": repair},                              # import os's repair: hung connection
        {"kind": "hang", "match": repair},
        {"kind": "reply", "text": "I cannot write that program.", "match": repair},   # infinite loop: prose
        {"kind": "reply", "text": fixed_nan, "match": repair},          # NaN: repaired
        {"kind": "reply", "text": blocks[4], "match": repair},          # unknown field: same mistake again
    ]
    with ScriptedOpenAIServer(script, hang_s=5) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "6", "--max-repairs", "1",
                      "--llm-timeout", "1", "--llm-retries", "1", "--name", "bad", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((tmp_path / "runs" / "bad" / "state.json").read_text())
    cands = {c["id"]: c for c in state["rounds"][0]["candidates"]}
    assert len(cands) == 6
    stages = {cid: [a["stage"] for a in c["attempts"]] for cid, c in cands.items()}
    assert stages["r0c0"][0] == "validate" and "repair request failed" in cands["r0c0"]["reason"]
    assert "import" in cands["r0c1"]["attempts"][0]["reason"] and cands["r0c1"]["stage"] == "llm"
    assert stages["r0c2"][0] == "timeout" and cands["r0c2"]["stage"] == "extract"
    assert stages["r0c3"][0] == "runtime" and cands["r0c3"]["status"] == "trained"
    assert stages["r0c4"] == ["validate", "validate"] and cands["r0c4"]["status"] == "rejected"
    assert cands["r0c5"]["status"] == "trained"
    assert state["best"]["id"] in ("r0c3", "r0c5")


def test_no_endpoint_is_a_clear_error_and_creates_nothing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(CLI + ["Hopper-Hop", "--runs-dir", str(tmp_path / "runs")], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 2 and "OPENAI_BASE_URL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad, message", [("wrong-key", "OPENAI_API_KEY"), ("wrong-model", "model")])
def test_wrong_key_or_model_is_a_clear_error(tmp_path, bad, message):
    with ScriptedOpenAIServer("good_programs") as server:
        args = ["--base-url", server.base_url, "--runs-dir", str(tmp_path / "runs"), "--name", "x"]
        args += ["--api-key", "nope" if bad == "wrong-key" else server.api_key]
        args += ["--model", "no-such-model" if bad == "wrong-model" else server.model]
        result = subprocess.run(CLI + ["Hopper-Hop", *args], capture_output=True, text=True, timeout=120,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert "--resume" in result.stderr


def test_feedback_file_joins_the_reflection_prompt(tmp_path):
    feedback = tmp_path / "feedback.txt"
    feedback.write_text("The hopper leans too far forward; reward a level torso.")
    with ScriptedOpenAIServer("synthesis_hopper") as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "2", "--samples", "2", "--name", "fb",
                      "--feedback", str(feedback), *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        reflection = server.chat_requests[-1].body["messages"][-1]["content"]
    assert "Reward reflection request" in reflection and "reward a level torso" in reflection
    assert "success rate" in reflection  # the trajectory analysis is in the prompt too


def test_ray_executor_trains_candidates_on_a_local_ray(tmp_path):
    pytest.importorskip("ray", reason="--executor ray needs `pip install rewardgym[ray]`")
    with ScriptedOpenAIServer("good_programs") as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "2", "--name", "ray",
                      "--executor", "ray", "--workers", "2", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((tmp_path / "runs" / "ray" / "state.json").read_text())
    assert [c["status"] for c in state["rounds"][0]["candidates"]] == ["trained", "trained"]


def test_interactive_feedback_is_read_after_each_round(tmp_path):
    with ScriptedOpenAIServer("synthesis_hopper") as server:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MUJOCO_GL": "osmesa",
               "PYOPENGL_PLATFORM": "osmesa", "REWARDGYM_LLM_CACHE": str(tmp_path / "llm-cache")}
        cmd = CLI + ["Hopper-Hop", "--rounds", "2", "--samples", "2", "--name", "i", "--feedback", "interactive",
                     "--base-url", server.base_url, "--model", server.model, "--api-key", server.api_key,
                     "--runs-dir", str(tmp_path / "runs"), *TINY]
        result = subprocess.run(cmd, input="hop higher, not further\n", capture_output=True, text=True,
                                timeout=600, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        reflection = server.chat_requests[-1].body["messages"][-1]["content"]
    assert "| r0c0 |" in result.stdout  # the round's table was shown before asking
    assert "hop higher, not further" in reflection
