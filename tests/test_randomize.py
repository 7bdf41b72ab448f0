"""Domain randomisation: validated configs, per-episode physics from the seeded RNG, noise,
a true action delay, pushes, and the training/vector paths."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from rewardgym.envs.observation import observation_layout
from rewardgym.wrappers.randomize import DomainRandomization, RandomizationConfig, RandomizationError

HOPPER = "rewardgym/Hopper-Hop-v0"


@pytest.mark.parametrize("config, message", [
    ({"frction": 1.0}, "unknown randomisation parameter 'frction'; did you mean 'friction'"),
    ({"mass": [-0.5, 1.0]}, "mass = -0.5 is outside physical sense: must be > 0"),
    ({"friction": 0.0}, "friction = 0.0 is outside physical sense"),
    ({"gravity": 9.81}, "gravity = 9.81 is outside physical sense: must be <= 0"),
    ({"latency": [0, 1.5]}, "latency = 1.5: must be a whole number"),
    ({"obs_noise": -0.1}, "obs_noise = -0.1 is outside physical sense"),
    ({"friction": [1.5, 0.5]}, "low 1.5 is above high 0.5"),
    ({"friction": [0.5, 1.0, 2.0]}, "expected a number or a range"),
    ({"mass": float("nan")}, "must be finite"),
    ({"push_interval": 1.0}, "push_interval needs push_velocity"),
])
def test_bad_configs_name_the_key(config, message):
    with pytest.raises(RandomizationError, match=message.replace("[", r"\[").replace("(", r"\(")):
        RandomizationConfig.from_dict(config)
    with pytest.raises(RandomizationError):  # and gym.make refuses before starting a simulator
        gym.make(HOPPER, randomize=config)


def test_config_files_are_named_in_errors(tmp_path):
    good = tmp_path / "dr.toml"
    good.write_text("# training ranges\nfriction = [0.5, 1.5]\nlatency = [0, 2]\nobs_noise = 0.01\n")
    assert RandomizationConfig.load(good).to_dict() == {"friction": [0.5, 1.5], "latency": [0, 2],
                                                        "obs_noise": 0.01}
    nested = tmp_path / "robot.toml"
    nested.write_text("[randomize]\nmass = 1.1\n")
    assert RandomizationConfig.load(nested).ranges == {"mass": (1.1, 1.1)}
    bad = tmp_path / "bad.toml"
    bad.write_text("friction = [0.5, 1.5]\nmas = 1.2\n")
    with pytest.raises(RandomizationError, match=f"{bad}: unknown randomisation parameter 'mas'"):
        RandomizationConfig.load(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("friction = [0.5,\n")
    with pytest.raises(RandomizationError, match="invalid TOML"):
        RandomizationConfig.load(broken)


def test_physics_sampled_per_episode_from_the_seed():
    cfg = {"friction": [0.5, 1.5], "mass": [0.8, 1.2], "com_offset": [-0.02, 0.02], "joint_damping": [0.5, 2.0],
           "armature": [0.5, 1.5], "actuator_gain": [0.8, 1.2], "gravity": [-11.0, -8.0]}
    env = gym.make(HOPPER, randomize=cfg)
    model = env.unwrapped.model
    nominal_mass = gym.make(HOPPER).unwrapped.model.body_mass.copy()
    _, info = env.reset(seed=7)
    first = info["randomization"]
    assert set(first) == set(cfg)
    for key, (low, high) in [(k, v) for k, v in cfg.items() if k != "com_offset"]:
        assert low <= first[key] <= high
    assert first["com_offset"].shape == (3,) and np.all(np.abs(first["com_offset"]) <= 0.02)
    np.testing.assert_allclose(model.body_mass, nominal_mass * first["mass"])
    assert model.opt.gravity[2] == pytest.approx(first["gravity"])
    assert model.actuator_gainprm[0, 0] == pytest.approx(first["actuator_gain"])
    assert model.dof_damping[3] == pytest.approx(first["joint_damping"])  # Hopper's joints: damping 1
    assert model.body_subtreemass[1] == pytest.approx(nominal_mass[1:].sum() * first["mass"])  # mj_setConst
    _, info = env.reset()
    assert info["randomization"]["friction"] != first["friction"]  # a new episode, new physics
    _, info = env.reset(seed=7)
    assert info["randomization"]["friction"] == first["friction"]  # same seed, same physics
    np.testing.assert_array_equal(info["randomization"]["com_offset"], first["com_offset"])
    # a fixed value is exact, and keys left out stay nominal
    env2 = gym.make(HOPPER, randomize={"mass": 1.5})
    _, info = env2.reset(seed=0)
    assert info["randomization"] == {"mass": 1.5}
    assert env2.unwrapped.model.opt.gravity[2] == pytest.approx(-9.81)


def test_latency_is_a_true_delay_and_action_noise_is_clipped():
    env = gym.make(HOPPER, randomize={"latency": 2})
    env.reset(seed=0)
    ctrl = env.unwrapped.data.ctrl
    actions = np.random.default_rng(0).uniform(-1, 1, size=(6, 3))
    applied = []
    for a in actions:
        env.step(a)
        applied.append(ctrl.copy())
    np.testing.assert_array_equal(applied[0], 0.0)
    np.testing.assert_array_equal(applied[1], 0.0)
    np.testing.assert_array_equal(np.array(applied[2:]), actions[:4])

    noisy = gym.make(HOPPER, randomize={"action_noise": 0.5})
    noisy.reset(seed=0)
    diffs = []
    for _ in range(20):
        noisy.step(np.full(3, 0.9))
        c = noisy.unwrapped.data.ctrl.copy()
        assert np.all(np.abs(c) <= 1.0)
        diffs.append(c - 0.9)
    assert np.std(diffs) > 0.1


def test_obs_noise_has_the_configured_std():
    env = gym.make(HOPPER, randomize={"obs_noise": 0.05})
    layout = observation_layout(HOPPER)
    obs, _ = env.reset(seed=0)
    errors = []
    for _ in range(60):
        errors.append(obs - layout.build(layout.read(env.unwrapped.data)))
        obs, _, term, trunc, _ = env.step(np.zeros(3))
        if term or trunc:
            obs, _ = env.reset()
    assert np.std(errors) == pytest.approx(0.05, rel=0.15)


def test_pushes_kick_the_root():
    env = gym.make(HOPPER, randomize={"push_velocity": 0.5, "push_interval": 0.04})  # every 5 steps of 8 ms
    env.reset(seed=0)
    data = env.unwrapped.data
    pushes = []
    for step in range(1, 16):
        before = data.qvel[0]
        _, _, term, _, info = env.step(np.zeros(3))
        if "push_velocity" in info:
            pushes.append(step)
            assert abs(info["push_velocity"][0]) == pytest.approx(0.5)
            assert before != data.qvel[0]
    assert pushes == [5, 10, 15]


def test_root_keys_need_a_moving_root():
    pytest.importorskip("metaworld")
    with pytest.raises(RandomizationError, match="com_offset needs a floating or planar root"):
        gym.make("rewardgym/MetaWorld-Reach-v0", randomize={"com_offset": 0.01})
    env = gym.make("rewardgym/MetaWorld-Reach-v0", randomize={"friction": [0.5, 1.5], "mass": [0.9, 1.1]})
    _, info = env.reset(seed=0)
    assert set(info["randomization"]) == {"friction", "mass"}
    env.step(env.action_space.sample())


def test_vector_env_keeps_the_fast_path_and_samples_per_env():
    venv = gym.make_vec(HOPPER, num_envs=3, randomize={"friction": [0.5, 1.5], "obs_noise": 0.01}, reward="expert")
    _, info = venv.reset(seed=0)
    assert venv._task_envs is not None  # rows still read straight from the TaskEnvs
    assert len(set(info["randomization"]["friction"].tolist())) == 3
    single = gym.make(HOPPER, randomize={"friction": [0.5, 1.5], "obs_noise": 0.01})
    _, one = single.reset(seed=2)
    assert one["randomization"]["friction"] == info["randomization"]["friction"][2]
    _, _, _, _, step_info = venv.step(np.zeros((3, 3)))
    assert "reward_terms" in step_info
    assert isinstance(single.unwrapped, gym.Env) and isinstance(single.env.env.env, DomainRandomization)


def test_train_with_randomize(tmp_path):
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    dr = tmp_path / "dr.toml"
    dr.write_text("friction = [0.7, 1.3]\nlatency = [0, 1]\n")

    def train(name):
        return CliRunner().invoke(app, ["train", "Hopper-Hop", "--reward", "env", "--steps", "256", "--num-envs", "2",
                                        "--runs-dir", str(tmp_path / "runs"), "--name", name, "--randomize", str(dr),
                                        "--config", str(_small_ppo(tmp_path))], terminal_width=400)

    result = train("dr")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "runs" / "dr" / "config.json").read_text())
    assert config["randomize"] == {"friction": [0.7, 1.3], "latency": [0, 1]}
    dr.write_text("friction = [0.7, 1.3]\nlatncy = 1\n")
    result = train("bad")
    assert result.exit_code == 2
    assert f"{dr}: unknown randomisation parameter 'latncy'; did you mean 'latency'" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "runs" / "bad").exists()


def _small_ppo(tmp_path):
    path = tmp_path / "ppo.toml"
    path.write_text("num_steps = 64\nnum_minibatches = 2\nupdate_epochs = 1\n")
    return path
