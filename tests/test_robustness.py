"""Robustness sweeps (DrEureka's RAPP): one parameter at a time on the same seeds, kept ranges,
report files, and LLM-proposed randomisation ranges from the local OpenAI-compatible test server."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from rewardgym.deploy import robustness as rb
from rewardgym.testing.openai_server import ScriptedOpenAIServer
from rewardgym.wrappers.randomize import RandomizationConfig, RandomizationError


def test_kept_range_is_contiguous_around_nominal():
    values = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    assert rb.kept_range(values, [False, True, True, True, False, True], 1.0) == [0.5, 1.0]
    assert rb.kept_range(values, [True] * 6, 1.0) == [0.25, 2.0]
    assert rb.kept_range(values, [True, True, True, False, True, True], 1.0) is None
    assert rb.kept_range([0, 1, 2, 3], [True, True, False, True], 0.0) == [0, 1]


def test_parse_values_names_bad_input():
    assert rb.parse_values("friction", "1,0.5, 2") == [0.5, 1.0, 2.0]
    assert rb.parse_values("latency", None) == [0, 1, 2, 3, 4]
    with pytest.raises(RandomizationError, match="unknown randomisation parameter 'frction'; did you mean 'friction'"):
        rb.parse_values("frction", "1")
    with pytest.raises(RandomizationError, match="latency = 0.5: must be a whole number"):
        rb.parse_values("latency", "0,0.5")
    with pytest.raises(RandomizationError, match="mass = -1.0 is outside physical sense"):
        rb.parse_values("mass", "-1,1")
    with pytest.raises(RandomizationError, match="expected numbers separated by commas"):
        rb.parse_values("mass", "1;2")


def test_sweep_measures_each_parameter_alone(tiny_hopper_run, tiny_hopper_exports, tmp_path):
    policy, task, _ = rb.load_batch_policy(tiny_hopper_run)
    result = rb.sweep(policy, task, {"friction": [1.0, 3.0], "gravity": [-9.81, -4.0]}, episodes=2,
                      criterion="return", keep_return=0.9)
    nominal = result.nominal
    rows = {(r.param, r.value): r for r in result.rows}
    # the nominal value of a parameter is the unperturbed simulator: same seeds, same numbers
    assert rows[("friction", 1.0)].return_mean == pytest.approx(nominal.return_mean, rel=1e-12)
    assert rows[("gravity", -9.81)].return_mean == pytest.approx(nominal.return_mean, rel=1e-12)
    # a real perturbation changes the outcome
    assert rows[("gravity", -4.0)].return_mean != pytest.approx(nominal.return_mean, rel=1e-3)
    assert result.threshold == pytest.approx(0.9 * nominal.return_mean)
    for param in ("friction", "gravity"):
        kept = [r.kept for r in result.rows if r.param == param]
        assert result.ranges[param] == rb.kept_range([r.value for r in result.rows if r.param == param], kept,
                                                     {"friction": 1.0, "gravity": -9.81}[param])
    out = rb.write_report(result, tmp_path / "rob")
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["criterion"] == "return" and len(saved["rows"]) == 4
    assert "| friction | 3 |" in (out / "robustness.md").read_text()
    assert (out / "robustness.png").stat().st_size > 5_000
    # the exported file gives the same sweep as the run it came from
    exported, _, label = rb.load_batch_policy(tiny_hopper_exports["onnx"])
    again = rb.sweep(exported, task, {"gravity": [-4.0]}, episodes=2, criterion="return")
    assert again.rows[0].return_mean == pytest.approx(rows[("gravity", -4.0)].return_mean, rel=1e-4)
    assert label.endswith("policy.onnx")


GOOD = "Given the sweep:\n\n```toml\nfriction = [0.6, 1.6]\nmass = [0.85, 1.15]\nlatency = [0, 1]\n```\nFriction..."
BAD = "```toml\nfriction = [0.6, 1.6]\nfrction = 2\n```"


def test_cli_robustness_with_llm_ranges_from_the_test_server(tiny_hopper_run, tmp_path):
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    runner = CliRunner()
    out = tmp_path / "rob"
    with ScriptedOpenAIServer([{"kind": "reply", "text": BAD}, {"kind": "reply", "text": GOOD,
                                                                 "match": "Randomisation repair request"}]) as server:
        result = runner.invoke(app, [
            "robustness", str(tiny_hopper_run), "--param", "friction", "--values", "0.5,1,2", "--param", "latency",
            "--values", "0,3", "--episodes", "2", "--out", str(out), "--llm", "--model", server.model,
            "--base-url", server.base_url, "--api-key", server.api_key,
            # the client options every LLM command takes (a time-out message names them)
            "--llm-timeout", "600", "--llm-retries", "1", "--max-reply-tokens", "777", "--context-size", "8192"],
            env={"REWARDGYM_LLM_CACHE": str(tmp_path / "cache")}, terminal_width=400)
        assert result.exit_code == 0, result.output
        assert server.chat_request_count == 2  # the invalid table was repaired once
        assert server.requests[-1].body["max_tokens"] <= 777
        prompt = server.requests[0].body["messages"][1]["content"]
    assert "| friction | 0.5 |" in prompt and "| latency | 3 |" in prompt and "Kept ranges" in prompt
    assert "unknown randomisation parameter 'frction'" in server.requests[1].body["messages"][-1]["content"]
    config = RandomizationConfig.load(out / "randomize_llm.toml")
    assert config.to_dict() == {"friction": [0.6, 1.6], "mass": [0.85, 1.15], "latency": [0, 1]}
    gym.make("rewardgym/Hopper-Hop-v0", randomize=out / "randomize_llm.toml").reset(seed=0)  # usable as is
    transcript = (out / "llm_transcript.jsonl").read_text().splitlines()
    assert len(transcript) == 2 and json.loads(transcript[1])["reply"] == GOOD
    assert (out / "robustness.md").is_file() and "kept from" in result.output

    bad = runner.invoke(app, ["robustness", str(tiny_hopper_run), "--param", "fricton"], terminal_width=400)
    assert bad.exit_code == 2 and "did you mean 'friction'" in " ".join(bad.output.split())
    assert "Traceback" not in bad.output
