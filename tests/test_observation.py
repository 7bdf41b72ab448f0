"""The robot observation layout is the simulator task's observation, bit for bit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rewardgym.envs.observation import NotDeployableError, ReadingsError, observation_layout

LOCOMOTION = ["Hopper-Hop", "HalfCheetah-Run", "Walker2d-Walk", "Ant-Run", "Humanoid-Run"]


@pytest.mark.parametrize("task", LOCOMOTION)
def test_layout_builds_the_simulator_observation(task):
    layout = observation_layout(task)
    env = gym.make(f"rewardgym/{task}-v0")
    try:
        obs, _ = env.reset(seed=1)
        data = env.unwrapped.data
        assert layout.size == obs.shape[0] == len(layout.entries)
        assert np.array_equal(layout.build(layout.read(data)), obs)
        env.action_space.seed(1)
        for _ in range(40):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert np.array_equal(layout.build(layout.read(data)), obs)
            if terminated or truncated:
                obs, _ = env.reset()
                assert np.array_equal(layout.build(layout.read(data)), obs)
    finally:
        env.close()


def test_layout_describes_hopper():
    layout = observation_layout("rewardgym/Hopper-Hop-v0")
    names = [e["name"] for e in layout.entries]
    units = [e["unit"] for e in layout.entries]
    assert names[:5] == ["rootz", "rooty", "thigh_joint", "leg_joint", "foot_joint"]
    assert units[:2] == ["m", "rad"] and units[5] == "m/s" and units[7] == "rad/s"
    assert layout.action_names == ("thigh_joint", "leg_joint", "foot_joint")
    assert layout.action_gear == (200.0, 200.0, 200.0)
    assert layout.control_period_s == pytest.approx(0.008)
    # same model and options -> same digest; another model -> another
    assert observation_layout("Hopper-Backflip").digest == layout.digest
    assert observation_layout("Walker2d-Walk").digest != layout.digest
    readings = {"qpos": np.array([0.0, 1.25, 0.3, -0.1, -0.2, 0.1]), "qvel": np.zeros(6)}
    assert layout.torso_tilt(readings) == pytest.approx(0.3)
    assert layout.torso_height(readings) == pytest.approx(1.25)
    np.testing.assert_allclose(layout.joint_pos(readings), [-0.1, -0.2, 0.1])


def test_bad_readings_are_named():
    layout = observation_layout("Hopper-Hop")
    with pytest.raises(ReadingsError, match="lack 'qvel'"):
        layout.build({"qpos": np.zeros(6)})
    with pytest.raises(ReadingsError, match="'qpos' has 5 values"):
        layout.build({"qpos": np.zeros(5), "qvel": np.zeros(6)})
    with pytest.raises(ReadingsError, match="'qvel' is not finite"):
        layout.build({"qpos": np.zeros(6), "qvel": np.full(6, np.nan)})


def test_only_deployable_families_have_a_layout():
    with pytest.raises(NotDeployableError, match="family metaworld.*deployable families: locomotion"):
        observation_layout("MetaWorld-Reach")
