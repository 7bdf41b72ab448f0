"""`rewardgym synthesize` end to end over real HTTP against the local OpenAI-compatible
TEST TOOLING server: bad replies are caught by the critic and repaired or rejected with
their reason recorded, the loop finishes, the best program is usable as a reward, and a
resumed run repeats neither LLM calls nor training."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import gymnasium as gym
import pytest

from rewardgym.testing.openai_server import ScriptedOpenAIServer, load_transcript_file

# Each test runs the real CLI (one or two processes, training included): on a busy 2-core machine
# that can take minutes, so these get a longer limit than the suite's default.
pytestmark = pytest.mark.timeout(900)

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
        {"kind": "reply", "text": "Sorry, I am not sure.", "match": repair},   # syntax error: prose
        {"kind": "drop", "match": repair},                              # import os: connection dropped, retried
        {"kind": "reply", "text": fixed_nan, "match": repair},          # ... and repaired
        {"kind": "reply", "text": "I cannot write that program.", "match": repair},   # infinite loop: prose
        {"kind": "reply", "text": fixed_nan, "match": repair},          # NaN: repaired
        {"kind": "reply", "text": blocks[4], "match": repair},          # unknown field: same mistake again
    ]
    with ScriptedOpenAIServer(script, hang_s=5) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "6", "--max-repairs", "1",
                      "--llm-timeout", "5", "--llm-retries", "1", "--name", "bad", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.remaining == 0
    run = tmp_path / "runs" / "bad"
    state = json.loads((run / "state.json").read_text())
    cands = {c["id"]: c for c in state["rounds"][0]["candidates"]}
    assert len(cands) == 6
    stages = {cid: [a["stage"] for a in c["attempts"]] for cid, c in cands.items()}
    assert stages["r0c0"] == ["validate", "extract"] and cands["r0c0"]["status"] == "rejected"
    assert "import" in cands["r0c1"]["attempts"][0]["reason"] and cands["r0c1"]["status"] == "trained"
    assert stages["r0c2"][0] == "timeout" and cands["r0c2"]["stage"] == "extract"
    assert stages["r0c3"][0] == "runtime" and cands["r0c3"]["status"] == "trained"
    assert stages["r0c4"] == ["validate", "validate"] and cands["r0c4"]["status"] == "rejected"
    assert cands["r0c5"]["status"] == "trained"
    report = (run / "report.md").read_text()
    assert "Status: complete." in report
    assert "| 0 | whole | r0c0 | rejected |" in report and "no Python code" in report  # why it failed
    assert "unknown field" in report or "forward_velocity" in report


def test_outage_during_a_repair_stops_the_run_and_resume_sends_the_repair(tmp_path):
    bad = _program("syntax_error")
    good = _program("good_programs").split("```python")[1].split("```")[0]
    script = [{"kind": "reply", "text": bad}, {"kind": "hang", "match": "repair request"},
              {"kind": "hang", "match": "repair request"}]
    with ScriptedOpenAIServer(script, hang_s=30) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "1", "--name", "o",
                      "--llm-timeout", "5", *TINY)  # a busy machine answers the non-hanging requests in time
        assert result.returncode == 1, result.stdout + result.stderr
        run = tmp_path / "runs" / "o"
        assert "Traceback" not in result.stderr
        assert f"resume with: rewardgym synthesize --resume {run}" in result.stderr
        state = json.loads((run / "state.json").read_text())
        cand = state["rounds"][0]["candidates"][0]
        assert cand["status"] == "pending" and len(cand["attempts"]) == 1  # not rejected by the outage
        assert state["stop"]["kind"] == "server" and not state["done"]
        report = (run / "report.md").read_text()
        # the resume command carries the larger time limit the time-out advises
        advised = re.search(rf"Resume with: `rewardgym synthesize --resume {re.escape(str(run))} --llm-timeout (\d+) "
                            rf"--model {server.model} --base-url {re.escape(server.base_url)}`", report)
        assert "**stopped** (server)" in report and advised and float(advised.group(1)) >= 10, report
        assert f"--llm-timeout {advised.group(1)}" in result.stderr
        assert "pending: waiting for a repair reply" in report

        server.add({"kind": "reply", "text": f"```python{good}```", "match": "repair request"})
        again = _cli(server, tmp_path, "--resume", str(run), "--llm-timeout", "7")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "re-sending the request a stop left without a reply" in again.stdout
    state = json.loads((run / "state.json").read_text())
    cand = state["rounds"][0]["candidates"][0]
    assert cand["status"] == "trained" and [a["stage"] for a in cand["attempts"]] == ["validate", "ok"]
    assert state["resumes"][0]["changed"] == {"llm_timeout_s": {"old": 5.0, "new": 7.0, "option": "--llm-timeout"}}
    assert json.loads((run / "config.json").read_text())["llm_timeout_s"] == 7.0
    assert "--llm-timeout 5.0 -> 7.0" in (run / "report.md").read_text()
    transcript = [json.loads(line) for line in (run / "llm_transcript.jsonl").read_text().splitlines()]
    assert [bool(r["error"]) for r in transcript] == [False, True, False]
    assert "3 request(s)" in (run / "report.md").read_text()  # the cost of the run, both processes


def test_budget_stop_reports_and_resume_counts_the_whole_run(tmp_path):
    bad = _program("syntax_error")
    good = _program("good_programs").split("```python")[1].split("```")[0]
    script = [{"kind": "reply", "text": bad}, {"kind": "reply", "text": f"```python{good}```"}]
    with ScriptedOpenAIServer(script) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "1", "--name", "b",
                      "--max-requests", "1", *TINY)
        run = tmp_path / "runs" / "b"
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "1 of max 1 requests" in result.stderr
        assert f"resume with: rewardgym synthesize --resume {run} --max-requests 2" in result.stderr
        report = (run / "report.md").read_text()
        assert "**stopped** (budget)" in report and "--max-requests 2 --model" in report
        assert "pending: waiting for a repair reply" in report
        assert "Traceback" not in result.stderr and server.chat_request_count == 1

        same = _cli(server, tmp_path, "--resume", str(run))  # the budget is the run's: still spent
        assert same.returncode == 1 and server.chat_request_count == 1, same.stderr
        more = _cli(server, tmp_path, "--resume", str(run), "--max-requests", "2")
        assert more.returncode == 0, more.stdout + more.stderr
        assert server.chat_request_count == 2
        assert "settings changed on resume: --max-requests 1 -> 2" in more.stdout  # the option, not a field
    report = (run / "report.md").read_text()
    assert "2 request(s)" in report and "Status: complete." in report
    # the report keeps the run's history: both stops and the resume that changed the budget
    assert "History (stops and resumes):" in report and report.count("stopped (budget)") == 2
    assert "resumed: --max-requests 1 -> 2" in report


def test_ctrl_c_during_a_request_exits_130_with_a_report(tmp_path):
    good = _program("good_programs")
    with ScriptedOpenAIServer([{"kind": "hang"}], hang_s=60) as server:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa",
               "REWARDGYM_LLM_CACHE": str(tmp_path / "llm-cache")}
        cmd = CLI + ["Hopper-Hop", "--base-url", server.base_url, "--model", server.model, "--api-key",
                     server.api_key, "--runs-dir", str(tmp_path / "runs"), "--name", "c", "--rounds", "1",
                     "--samples", "1", *TINY]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(1200):  # until the request is in flight (bounded: 120 s)
            if server.chat_request_count or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert server.chat_request_count == 1, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, errs = proc.communicate(timeout=120)
        assert proc.returncode == 130, out + errs
        run = tmp_path / "runs" / "c"
        assert f"interrupted; resume with: rewardgym synthesize --resume {run}" in errs
        assert "Traceback" not in errs
        assert "**stopped** (interrupted)" in (run / "report.md").read_text()
        server.add({"kind": "reply", "text": good})
        again = _cli(server, tmp_path, "--resume", str(run))
        assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((run / "state.json").read_text())["done"]


def test_context_refusal_is_learnt_and_the_prompt_fitted(tmp_path):
    with ScriptedOpenAIServer("good_programs", context_size=3400) as server:  # the full prompt needs ~3600
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "1", "--name", "ctx",
                      "--max-reply-tokens", "300", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.chat_request_count == 2  # refused once, then the fitted prompt
        first, second = (len(r.body["messages"][-1]["content"]) for r in server.chat_requests)
        assert second < first
    run = tmp_path / "runs" / "ctx"
    state = json.loads((run / "state.json").read_text())
    assert state["context"] == {"size": 3400, "source": "refusal"}
    assert "few-shot example" in " ".join(state["rounds"][0]["prompt"]["cuts"])
    report = (run / "report.md").read_text()
    assert "Context window: 3400 tokens (refusal)." in report and "shortened: few-shot example" in report


def test_a_prompt_that_cannot_fit_stops_with_the_option_to_change(tmp_path):
    with ScriptedOpenAIServer("good_programs") as server:
        result = _cli(server, tmp_path, "MetaWorld-Reach", "--rounds", "1", "--samples", "1", "--name", "small",
                      "--context-size", "1024", *TINY)
        assert result.returncode == 1 and server.chat_request_count == 0, result.stderr
    assert "--context-size" in result.stderr and "Traceback" not in result.stderr
    assert "**stopped** (context)" in (tmp_path / "runs" / "small" / "report.md").read_text()


def test_a_reply_cut_at_max_reply_tokens_is_reported(tmp_path):
    program = _program("good_programs").split("```python")[1].split("```")[0]
    text = f"```python{program}```\n\n" + " ".join(["More prose."] * 800)
    with ScriptedOpenAIServer([{"kind": "reply", "text": text}]) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "1", "--name", "long",
                      "--max-reply-tokens", "300", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.chat_requests[0].body["max_tokens"] == 300
    assert "the reply was cut at 300 tokens" in result.stdout
    report = (tmp_path / "runs" / "long" / "report.md").read_text()
    assert "the reply was cut at 300 tokens" in report


def test_edit_mode_yields_candidates_from_json_edits(tmp_path):
    edit = json.dumps({"idea": "reach harder", "set": {"W_REWARD": 3.0}, "remove_terms": [],
                       "add_terms": [{"name": "effort", "weight": 0.01, "expression": "-sum_sq(action)"}]})
    broken = json.dumps({"idea": "x", "set": {"NOT_A_CONSTANT": 1.0}, "remove_terms": [], "add_terms": []})
    script = [{"kind": "reply", "text": "I would reward reaching."},           # round 0 (whole): prose
              {"kind": "reply", "text": edit, "match": "Reward edit request"},    # round 1 (auto -> edit)
              {"kind": "reply", "text": broken, "match": "Reward edit request"},
              {"kind": "reply", "text": edit.replace("3.0", "2.5"), "match": "previous edit failed"}]
    with ScriptedOpenAIServer(script, structured=("json_schema",)) as server:
        result = _cli(server, tmp_path, "MetaWorld-Reach", "--rounds", "2", "--samples", "2", "--name", "e",
                      "--zero-shot", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        fmt = server.chat_requests[1].body["response_format"]
        endpoint = server.base_url.rstrip("/")
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert set(schema["properties"]["set"]["required"]) == {"W_REWARD", "UPPER"}  # MetaWorld-Reach's own program
    state = json.loads((tmp_path / "runs" / "e" / "state.json").read_text())
    assert [r["mode"] for r in state["rounds"]] == ["whole", "edit"]
    # the form the server accepted is kept for later processes (no refused probe on every resume)
    assert state["structured"] == {"mode": "json_schema", "endpoint": endpoint}
    assert "held no program" in state["rounds"][0]["note"]
    c0, c1 = state["rounds"][1]["candidates"]
    assert c0["status"] == "trained" and "W_REWARD=3" in c0["edit_summary"]
    assert c1["status"] == "trained" and [a["stage"] for a in c1["attempts"]] == ["edit", "ok"]
    program = (tmp_path / "runs" / "e" / "round_1" / "r1c0" / "program.py").read_text()
    assert "W_REWARD = 3.0" in program and "effort" in program
    assert program.startswith('"""Edit of MetaWorld-Reach:') and "MetaWorld-Push" not in program
    report = (tmp_path / "runs" / "e" / "report.md").read_text()
    assert "round 1 (edit, edits of the library program MetaWorld-Reach (rewardgym's expert reward for this " \
           "task))" in report and "held no program" in report
    best = (tmp_path / "runs" / "e" / "best_reward.py").read_text()
    assert "It is an edit of the library program MetaWorld-Reach" in best


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


def test_a_crash_leaves_a_report_with_the_reason_and_the_resume_command(tmp_path):
    from rewardgym.llm.client import LLMClient
    from rewardgym.llm_rewards.synthesize import SynthesisSpec, Synthesizer, new_run_dir

    class Crashing(LLMClient):
        def complete(self, *args, **kwargs):
            raise RuntimeError("disk on fire")

    with ScriptedOpenAIServer([]) as server:
        spec = SynthesisSpec(task="rewardgym/Hopper-Hop-v0", rounds=1, samples=1)
        run = new_run_dir(spec, tmp_path / "runs", "crash")
        client = Crashing(model=server.model, base_url=server.base_url, api_key=server.api_key, cache_dir=False,
                          transcript_path=run / "llm_transcript.jsonl")
        with pytest.raises(RuntimeError, match="disk on fire"):
            Synthesizer(spec, run, client, log=lambda m: None).run_loop()
    state = json.loads((run / "state.json").read_text())
    assert state["stop"]["kind"] == "crash" and "RuntimeError: disk on fire" in state["stop"]["reason"]
    report = (run / "report.md").read_text()
    assert "**stopped** (crash): RuntimeError: disk on fire" in report
    assert f"rewardgym synthesize --resume {run}" in report


def test_resume_refuses_to_change_what_defines_the_run(tmp_path):
    with ScriptedOpenAIServer("good_programs") as server:
        first = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "1", "--samples", "1", "--name", "f", *TINY)
        assert first.returncode == 0, first.stderr
        run = tmp_path / "runs" / "f"
        bad = _cli(server, tmp_path, "--resume", str(run), "--steps", "999")
        assert bad.returncode == 2 and "--resume continues a run with its own steps" in bad.stderr
        more = _cli(server, tmp_path, "--resume", str(run), "--rounds", "1", "--max-reply-tokens", "64")
        assert more.returncode == 0, more.stderr  # a finished run resumed: nothing to do, nothing asked
        assert server.chat_request_count == 1
    assert json.loads((run / "config.json").read_text())["max_reply_tokens"] == 64


def test_candidates_are_judged_before_training_and_prescreen_trains_the_best_aligned(tmp_path):
    with ScriptedOpenAIServer("synthesis_hopper") as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "2", "--samples", "2", "--name", "p",
                      "--prescreen", "1", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        run = tmp_path / "runs" / "p"
        state = json.loads((run / "state.json").read_text())
        first = state["rounds"][0]["candidates"]
        assert all(set(c["judgement"]) >= {"epic", "epic_to_sparse", "alignment", "flags"} for c in first)
        assert sorted(c["status"] for c in first) == ["screened", "trained"]  # one of two kept for training
        screened = next(c for c in first if c["status"] == "screened")
        assert "--prescreen 1" in screened["reason"] and "eval" not in screened
        assert not (run / "round_0" / f"{screened['id']}_run").exists()  # no compute spent on it
        report = (run / "report.md").read_text()
        assert "| EPIC to ref | EPIC to sparse | alignment |" in report and "| screened |" in report
        assert "Before training (reward analysis" in result.stdout
        reflection = server.chat_requests[-1].body["messages"][-1]["content"]
        assert "Before training (reward analysis" in reflection  # the evidence reaches the reflection prompt


def test_a_2048_token_context_is_fitted_and_the_run_completes(tmp_path):
    """Issue 27, item 1: a server with a 2,048-token context (llama-cpp-python's and older
    Ollama's default) gets fitted prompts and adapted reply caps, and the report says what was
    shortened."""
    good = _program("good_programs").split("```python")[1].split("```")[0]
    script = [{"kind": "reply", "text": f"```python{good}```", "match": "Reward design request"},
              {"kind": "reply", "text": f"```python{good}```", "match": "Reward reflection request"}]
    with ScriptedOpenAIServer(script, context_size=2048, advertise_context=True) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "2", "--samples", "1", "--name", "k2", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.chat_request_count == 2 and server.remaining == 0  # nothing refused
        caps = [r.body["max_tokens"] for r in server.chat_requests]
    assert all(512 <= cap < 2048 for cap in caps), caps
    assert "prompt fitted to the 2048-token context" in result.stdout and "reply cap lowered to" in result.stdout
    run = tmp_path / "runs" / "k2"
    state = json.loads((run / "state.json").read_text())
    assert state["done"] and state["context"] == {"size": 2048, "source": "server"}
    for rnd in state["rounds"]:
        prompt = rnd["prompt"]
        assert prompt["tokens"] + prompt["reply_cap"] <= 2048 and prompt["reply_cap"] in caps
    report = (run / "report.md").read_text()
    assert "prompt fitted to a 2048-token context" in report and "rules and requests in short form (every rule kept)" \
        in report and "reply cap lowered to" in report


def test_a_reflection_that_cannot_fit_becomes_a_round_of_edits_of_the_best(tmp_path):
    """At 1,450 tokens the designer prompt fits Hopper-Hop, but a whole program beside this best
    one does not (an edit of it does): the round asks for an edit of the best instead, and says so."""
    good = _program("good_programs").split("```python")[1].split("```")[0]
    good = good.replace('def compute_reward', 'def level(state):\n    pitch = state.torso_euler[:, 1]\n'
                        '    roll = state.torso_euler[:, 0]\n    tilt = np.sqrt(pitch * pitch + roll * roll)\n'
                        '    return tolerance(tilt, 0.0, 0.2, margin=0.5)\n\n\ndef compute_reward', 1)
    good = good.replace('    reward = forward + upright + alive + ctrl\n',
                        '    steady = 0.2 * level(state)\n'
                        '    still = -1e-3 * np.sum(state.joint_vel * state.joint_vel, axis=-1)\n'
                        '    reward = forward + upright + steady + alive + still + ctrl\n', 1)
    assert "steady" in good and "def level" in good
    edit = json.dumps({"idea": "less effort", "set": {}, "remove_terms": [],
                       "add_terms": [{"name": "effort", "weight": 0.01, "expression": "-sum_sq(action)"}]})
    script = [{"kind": "reply", "text": f"```python{good}```", "match": "Reward design request"},
              {"kind": "reply", "text": edit, "match": "Reward edit request"}]
    with ScriptedOpenAIServer(script, structured=("json_schema",)) as server:
        result = _cli(server, tmp_path, "Hopper-Hop", "--rounds", "2", "--samples", "1", "--name", "fb",
                      "--context-size", "1450", *TINY)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.remaining == 0 and "Reward reflection request" not in str(server.chat_requests[-1].body)
    assert "the reflection prompt does not fit the 1450-token context" in result.stdout
    state = json.loads((tmp_path / "runs" / "fb" / "state.json").read_text())
    assert [r["mode"] for r in state["rounds"]] == ["whole", "edit"]
    assert state["rounds"][1]["base_origin"] == "the best candidate so far, r0c0"
    assert state["rounds"][1]["candidates"][0]["status"] == "trained"
    report = (tmp_path / "runs" / "fb" / "report.md").read_text()
    assert "round 1 (edit, edits of the best candidate so far, r0c0)" in report
    assert "the reflection prompt does not fit" in report
    # after the first reply, prompts are estimated at the server's own characters per token (less 5%)
    assert state["rounds"][1]["prompt"]["chars_per_token"] > 3.0 and "characters per token" in report
