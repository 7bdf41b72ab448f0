"""Slow learning tests (``scripts/test.sh -m slow``): PPO with the expert reward reaches the
success rates the agents issue asks for, within stated budgets, on the real simulators."""

from __future__ import annotations

import pytest

from rewardgym.runs.evaluate import evaluate
from rewardgym.runs.train import TrainSpec, train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task, steps, hyper", [
    ("rewardgym/Fetch-Reach-v0", 60_000, {"num_steps": 128, "gamma": 0.98}),
    ("rewardgym/MetaWorld-Reach-v0", 150_000, {"num_steps": 256}),
])
def test_expert_reward_reaches_80_percent_success(tmp_path, task, steps, hyper):
    run = train(TrainSpec(task=task, reward="expert", steps=steps, num_envs=8, seed=0, device="cpu",
                          hyperparams=hyper), runs_root=tmp_path, run_name="r")
    rows = [r for r in run.metrics() if r.get("success_rate") is not None]
    assert rows[-1]["success_rate"] > rows[0]["success_rate"]  # the learning curve rises
    assert evaluate(run.path, episodes=20)["success_rate"] >= 0.8
