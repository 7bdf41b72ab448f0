"""Occupancy-regularised PPO (ORPO, issue 22 §3): the discriminator's penalty is near zero when
the agent acts like the reference and grows when its occupancy departs; it is folded into the
reward and logged as ``terms/occupancy_penalty``; a checkpoint resumes bit-identically, without
the reference run; bad references and coefficients are one-line errors naming them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewardgym.learners.occupancy import OccupancyConfig, OccupancyError, OccupancyRegularizer
from rewardgym.learners.ppo import PPO, PPOConfig
from rewardgym.runs.directory import RunError
from rewardgym.runs.train import TrainSpec, TrainingInterrupted, load_ppo_checkpoint, resume, train

CLI = [sys.executable, "-m", "rewardgym.cli.main"]
TASK = "rewardgym/Fetch-Reach-v0"


def _pendulum_pairs(mean: float, seed: int, steps: int = 400, num_envs: int = 4):
    """``(obs (T, B, 3), actions (T, B, 1))`` of Pendulum under Gaussian actions N(mean, 0.5) (clipped)."""
    env = gym.make_vec("Pendulum-v1", num_envs=num_envs)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    all_obs, all_act = [], []
    for _ in range(steps):
        action = np.clip(rng.normal(mean, 0.5, size=(num_envs, 1)), -2, 2).astype(np.float32)
        all_obs.append(obs.astype(np.float32))
        all_act.append(action)
        obs, *_ = env.step(action)
    env.close()
    return np.stack(all_obs), np.stack(all_act)


def _train_on(reg: OccupancyRegularizer, obs: np.ndarray, act: np.ndarray, chunk: int = 200) -> list[float]:
    """Feed ``(T, B, ...)`` pairs to the regulariser rollout by rollout, as PPO does (a rollout of
    whole 200-step episodes); returns each rollout's divergence estimate, taken before the
    discriminator trained on it (held out)."""
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    reg.bind(space, gym.spaces.Box(-2, 2, (1,), np.float32), chunk, obs.shape[1], torch.device("cpu"))
    valid = torch.ones(obs.shape[1], dtype=torch.bool)
    done = torch.zeros(obs.shape[1], dtype=torch.bool)
    estimates = []
    for start in range(0, len(obs) - chunk + 1, chunk):
        for t in range(chunk):
            reg.penalty(t, torch.from_numpy(obs[start + t]), torch.from_numpy(act[start + t]), valid, done)
        estimates.append(reg.update()["occupancy/divergence"])
    return estimates


@pytest.mark.parametrize("divergence", ["chi2", "kl"])
def test_penalty_is_small_for_the_reference_policy_and_grows_when_the_agent_departs(divergence):
    ref_obs, ref_act = _pendulum_pairs(0.0, seed=0, steps=1000)
    config = OccupancyConfig(coef=1.0, divergence=divergence)
    same_obs, same_act = _pendulum_pairs(0.0, seed=1, steps=1000)  # the reference policy, other episodes
    far_obs, far_act = _pendulum_pairs(1.2, seed=1, steps=1000)  # pushes one way: actions and states depart

    same = OccupancyRegularizer(ref_obs.reshape(-1, 3), ref_act.reshape(-1, 1), config, seed=0)
    same_estimates = _train_on(same, same_obs, same_act)
    far = OccupancyRegularizer(ref_obs.reshape(-1, 3), ref_act.reshape(-1, 1), config, seed=0)
    far_estimates = _train_on(far, far_obs, far_act)
    # held-out rollouts of a trained discriminator: ~0 for the reference policy, large once departed
    assert max(abs(e) for e in same_estimates[-2:]) < 0.1, same_estimates
    assert min(far_estimates[-2:]) > 0.4, far_estimates
    assert same.metrics()["occupancy/disc_accuracy"] < 0.55 < 0.65 < far.metrics()["occupancy/disc_accuracy"]

    test_same_obs, test_same_act = _pendulum_pairs(0.0, seed=2, steps=200)  # fresh episodes of each
    test_far_obs, test_far_act = _pendulum_pairs(1.2, seed=2, steps=200)
    on_reference = same.penalties(test_same_obs.reshape(-1, 3), test_same_act.reshape(-1, 1))
    departed = far.penalties(test_far_obs.reshape(-1, 3), test_far_act.reshape(-1, 1))
    assert abs(on_reference.mean()) < 0.2 and np.abs(on_reference).mean() < 0.25, on_reference.mean()
    assert departed.mean() > 0.5 and departed.mean() > 4 * abs(on_reference.mean()), departed.mean()


def _ppo(reg_seed: int | None, cfg: PPOConfig, bank) -> PPO:
    reg = None if reg_seed is None else OccupancyRegularizer(*bank, OccupancyConfig(coef=0.5), seed=reg_seed)
    return PPO(gym.make_vec("Pendulum-v1", num_envs=2), cfg, regularizer=reg)


def test_ppo_folds_the_penalty_into_the_reward_and_resumes_exactly():
    """As tests/test_ppo.py::test_exact_resume, with the regulariser: N updates straight == N/2,
    checkpoint, fresh PPO, envs and regulariser rebuilt from the checkpoint, resume to N."""
    ref_obs, ref_act = _pendulum_pairs(0.0, seed=0, steps=100)
    bank = (ref_obs.reshape(-1, 3), ref_act.reshape(-1, 1))
    total_updates, half = 6, 3
    cfg = PPOConfig(num_envs=2, num_steps=128, num_minibatches=4, update_epochs=2, seed=3, reset_interval=half,
                    compile=False)
    total = total_updates * cfg.batch_size
    rows = []
    straight = _ppo(0, cfg, bank).learn(total, callback=rows.append)
    assert "terms/occupancy_penalty" in rows[-1] and np.isfinite(rows[-1]["terms/occupancy_penalty"])
    assert {"occupancy/penalty", "occupancy/divergence", "occupancy/disc_loss", "occupancy/disc_accuracy"} <= set(rows[-1])
    plain = PPO(gym.make_vec("Pendulum-v1", num_envs=2), cfg).learn(total)  # same seed, no penalty
    assert not all(torch.equal(a, b) for a, b in zip(plain.policy.parameters(), straight.policy.parameters()))

    first = _ppo(0, cfg, bank)
    first.learn(total, callback=lambda m: m["update"] < half)
    blob = io.BytesIO()
    torch.save(first.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    reg = OccupancyRegularizer.from_state_dict(state["occupancy"])  # the bank comes from the checkpoint
    resumed = PPO(gym.make_vec("Pendulum-v1", num_envs=2), PPOConfig.from_dict(state["config"]), regularizer=reg)
    resumed.load_state_dict(state)
    resumed.learn(total)

    for a, b in zip(resumed.policy.parameters(), straight.policy.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.regularizer.discriminator.parameters(), straight.regularizer.discriminator.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(resumed.regularizer.generator.get_state(), straight.regularizer.generator.get_state())
    assert list(resumed.regularizer.window) == list(straight.regularizer.window)

    with pytest.raises(ValueError, match="occupancy regulariser"):  # a plain PPO refuses a regularised state
        PPO(gym.make_vec("Pendulum-v1", num_envs=2), PPOConfig.from_dict(state["config"])).load_state_dict(state)


def test_a_tampered_reference_bank_in_a_checkpoint_is_refused():
    ref_obs, ref_act = _pendulum_pairs(0.0, seed=0, steps=20)
    state = OccupancyRegularizer(ref_obs.reshape(-1, 3), ref_act.reshape(-1, 1), OccupancyConfig()).state_dict()
    bad = dict(state, reference_obs=state["reference_obs"].clone())
    bad["reference_obs"][0, 0] = float("nan")
    with pytest.raises(OccupancyError, match="reference observations: holds non-finite"):
        OccupancyRegularizer.from_state_dict(bad)
    with pytest.raises(OccupancyError, match="reference actions"):
        OccupancyRegularizer.from_state_dict(dict(state, reference_actions=torch.zeros(3, 1, 1)))
    with pytest.raises(OccupancyError, match="differ from this run"):
        OccupancyRegularizer.from_state_dict(state, OccupancyConfig(divergence="kl"))
    reg = OccupancyRegularizer.from_state_dict(state)
    with pytest.raises(OccupancyError, match="another task"):  # 3 + 1 features, not Fetch-Reach's 13 + 4
        reg.bind(gym.spaces.Box(-1, 1, (13,)), gym.spaces.Box(-1, 1, (4,)), 8, 2, torch.device("cpu"))


# ----------------------------------------------------------------------------- runs
SMALL = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 2, "reset_interval": 2, "compile": False}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    return train(TrainSpec(task=TASK, reward="expert", steps=512, num_envs=2, seed=0, hyperparams=SMALL),
                 runs_root=root, run_name="ref")


def _regularised(reference, steps: int = 1024, **extra) -> TrainSpec:
    return TrainSpec(task=TASK, reward="expert", steps=steps, num_envs=2, seed=1, hyperparams=SMALL,
                     regularize="occupancy", reference=str(reference), reg_coef=0.5,
                     occupancy={"reference_transitions": 300}, **extra)


def test_a_regularised_run_logs_the_term_and_resumes_exactly_without_its_reference(tmp_path, reference_run):
    straight = train(_regularised(reference_run.path), runs_root=tmp_path, run_name="straight")
    rows = straight.metrics()
    assert all("occupancy/penalty" in row for row in rows)
    assert any("terms/occupancy_penalty" in row for row in rows)  # 50-step episodes end within the run
    assert json.loads(straight.config_path.read_text())["regularize"] == "occupancy"

    # interrupted after update 2 (a multiple of reset_interval), then resumed: the reference run
    # is gone by then, so the resumed run can only use the bank its checkpoint holds
    reference_copy = tmp_path / "reference"
    shutil.copytree(reference_run.path, reference_copy)

    def stop(row):
        if row["update"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(_regularised(reference_copy), runs_root=tmp_path, run_name="cut", on_update=stop)
    shutil.rmtree(reference_copy)
    cut = resume(tmp_path / "cut")

    a = load_ppo_checkpoint(straight.checkpoint_dir / "final.pt", TASK)["agent"]
    b = load_ppo_checkpoint(cut.checkpoint_dir / "final.pt", TASK)["agent"]
    assert a["global_step"] == b["global_step"] == 1024
    for key in a["policy"]:
        assert torch.equal(a["policy"][key], b["policy"][key]), key
    for key in a["occupancy"]["discriminator"]:
        assert torch.equal(a["occupancy"]["discriminator"][key], b["occupancy"]["discriminator"][key]), key
    assert torch.equal(a["occupancy"]["generator"], b["occupancy"]["generator"])
    assert [r["occupancy/penalty"] for r in straight.metrics()] == [r["occupancy/penalty"] for r in cut.metrics()]


def test_python_options_are_checked_before_anything_is_written(tmp_path, reference_run):
    for coef in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--reg-coef"):
            train(TrainSpec(task=TASK, regularize="occupancy", reference=str(reference_run.path), reg_coef=coef),
                  runs_root=tmp_path)
    with pytest.raises(ValueError, match="need --regularize occupancy"):
        train(TrainSpec(task=TASK, reference=str(reference_run.path)), runs_root=tmp_path)
    with pytest.raises(ValueError, match="sb3-ppo"):
        train(TrainSpec(task=TASK, algo="sb3-ppo", regularize="occupancy", reference=str(reference_run.path),
                        reg_coef=1.0), runs_root=tmp_path)
    with pytest.raises(ValueError, match="occupancy option 'divergance'"):
        train(TrainSpec(task=TASK, regularize="occupancy", reference=str(reference_run.path), reg_coef=1.0,
                        occupancy={"divergance": "kl"}), runs_root=tmp_path)
    with pytest.raises(RunError, match="reference run not found"):
        train(_regularised(tmp_path / "nowhere"), runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def _cli_error(args, tmp_path):
    result = subprocess.run(CLI + ["train", TASK, "--steps", "256", "--runs-dir", str(tmp_path / "runs"), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (tmp_path / "runs").exists()
    return lines[0]


def test_cli_errors_name_the_reference_and_the_coefficient(tmp_path, reference_run):
    missing = tmp_path / "no-such-run"
    line = _cli_error(["--regularize", "occupancy", "--reference", str(missing), "--reg-coef", "1"], tmp_path)
    assert str(missing) in line and "not found" in line
    other = tmp_path / "hopper-run"  # a run of another task: refused from its config.json, before any load
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"run_format": 1, "task": "rewardgym/Hopper-Hop-v0",
                                                   "algo": "ppo", "reward": "expert", "seed": 0}))
    line = _cli_error(["--regularize", "occupancy", "--reference", str(other), "--reg-coef", "1"], tmp_path)
    assert str(other) in line and "Hopper-Hop" in line and "not 'rewardgym/Fetch-Reach-v0'" in line
    for coef in ("0", "nan"):
        line = _cli_error(["--regularize", "occupancy", "--reference", str(reference_run.path), "--reg-coef", coef],
                          tmp_path)
        assert "--reg-coef" in line


# ----------------------------------------------------------------------------- starting from the reference
def test_init_from_reference_starts_from_the_reference_policy(tmp_path, reference_run, monkeypatch):
    """The first rollout runs the reference's policy: same weights, and the same actions as the
    reference run's own policy on the same observations (the unregularised baseline may start
    there too: --reference with --init-from-reference alone)."""
    from rewardgym.runs.evaluate import RunPolicy

    seen = {}
    original = PPO._collect_rollout

    def first_rollout(self):
        if not seen:
            seen["policy"] = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
            seen["agent"] = self
            env = gym.make_vec(TASK, num_envs=4)
            obs, _ = env.reset(seed=7)
            env.close()
            seen["obs"], seen["actions"] = obs, self.predict(obs, deterministic=True)[0]
        return original(self)

    monkeypatch.setattr(PPO, "_collect_rollout", first_rollout)
    spec = TrainSpec(task=TASK, reward="examples/hackable/fetch_reach_approach.py", steps=256, num_envs=2, seed=3,
                     hyperparams={**SMALL, "learning_rate": 1e-3}, reference=str(reference_run.path),
                     init_from_reference=True)
    run = train(spec, runs_root=tmp_path, run_name="init")
    assert run.config()["init_from_reference"] is True and run.config()["regularize"] is None

    ref = load_ppo_checkpoint(reference_run.checkpoint_dir / "final.pt", TASK)["agent"]
    for key, value in ref["policy"].items():
        assert torch.equal(seen["policy"][key], value), key
    env = gym.make_vec(TASK, num_envs=1)
    reference_policy = RunPolicy(reference_run, env)
    env.close()
    expected = reference_policy(seen["obs"])  # deterministic, as `rewardgym eval` runs it
    # equal up to the first reset's 2 observations folded into the running statistics
    np.testing.assert_allclose(seen["actions"], expected, atol=2e-2)
    assert not np.allclose(seen["actions"], 0.0, atol=1e-3)  # a trained policy, not a fresh network's ~0 mean


def test_init_from_reference_is_the_default_with_the_regulariser_and_can_be_turned_off(reference_run):
    from rewardgym.runs.occupancy import init_from_reference

    assert init_from_reference(None, "occupancy") is True and init_from_reference(None, None) is False
    assert init_from_reference(False, "occupancy") is False
    with pytest.raises(ValueError, match="init-from-reference needs --reference"):
        TrainSpec(task=TASK, init_from_reference=True).validate()
    with pytest.raises(ValueError, match="init_from_reference='yes'"):
        TrainSpec(task=TASK, reference=str(reference_run.path), init_from_reference="yes").validate()


def test_a_reference_whose_shapes_do_not_fit_is_a_one_line_error(tmp_path, reference_run):
    bad = tmp_path / "bad-reference"
    shutil.copytree(reference_run.path, bad)
    payload = torch.load(bad / "checkpoints" / "final.pt", weights_only=True)
    policy = payload["agent"]["policy"]
    first = next(k for k, v in policy.items() if v.ndim == 2)  # the first layer: another observation size
    policy[first] = torch.zeros(policy[first].shape[0], policy[first].shape[1] + 3)
    torch.save(payload, bad / "checkpoints" / "final.pt")
    spec = TrainSpec(task=TASK, reward="expert", steps=256, num_envs=2, seed=0, hyperparams=SMALL,
                     reference=str(bad), init_from_reference=True)
    with pytest.raises(RunError) as info:
        train(spec, runs_root=tmp_path / "runs", run_name="x")
    message = str(info.value)
    assert "\n" not in message and str(bad) in message and first in message and "does not fit" in message
    assert not (tmp_path / "runs" / "x").exists()

    line = _cli_error(["--reference", str(bad), "--init-from-reference", "--num-envs", "2"], tmp_path)
    assert str(bad) in line and "does not fit" in line
    spec = TrainSpec(task=TASK, reward="expert", steps=256, num_envs=2, seed=0, hyperparams={**SMALL,
                     "hidden_sizes": [32]}, reference=str(reference_run.path), init_from_reference=True)
    with pytest.raises(RunError, match="hidden_sizes=\\[32\\] differs"):
        train(spec, runs_root=tmp_path / "runs")
