"""Fetch family: real gymnasium-robotics envs, the `fetch` view, success tests, expert programs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from rewardgym.envs.families import fetch as ff  # noqa: E402
from rewardgym.envs.view import StateView, stack_raw  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402

SPECS = {spec.short_name: spec for spec in ff.TASKS}
IDS = [spec.id for spec in ff.TASKS]


def _batch(spec, envs, prev=None):
    raw = stack_raw([e.raw_state() for e in envs])
    raw["success"] = spec.success(StateView(spec.view, raw))
    return raw, StateView(spec.view, raw, prev_raw=prev)


def _shape(text: str, batch: int) -> tuple[int, ...]:
    dims = [d.strip() for d in text.strip("()").split(",") if d.strip()]
    return tuple(batch if d == "B" else int(d) for d in dims)


def test_tasks_declared():
    assert IDS == ["rewardgym/Fetch-Reach-v0", "rewardgym/Fetch-Push-v0",
                   "rewardgym/Fetch-PickAndPlace-v0", "rewardgym/Fetch-Slide-v0"]
    for spec in ff.TASKS:
        assert spec.expert_path is not None and spec.expert_path.exists()
        pickle.loads(pickle.dumps(spec.make_env))


@pytest.mark.parametrize("task_id", IDS)
def test_task_view_obs_layout_and_expert(task_id):
    spec = next(s for s in ff.TASKS if s.id == task_id)
    envs = [spec.make_env() for _ in range(2)]
    has_object = "Reach" not in task_id
    try:
        for i, env in enumerate(envs):
            obs, _ = env.reset(seed=i)
            assert obs.shape == env.observation_space.shape == ((28,) if has_object else (13,))
        reset_raw, reset_state = _batch(spec, envs)
        assert reset_state.success.dtype == np.bool_ and not reset_state.success.any()
        np.testing.assert_allclose(reset_state.success, reset_state.obj_to_goal < 0.05)
        program = RewardProgram.from_file(spec.expert_path, view=spec.view)
        prev = reset_raw
        for _ in range(3):
            actions = np.stack([e.action_space.sample() for e in envs]).astype(np.float64)
            observations = []
            for env, action in zip(envs, actions):
                obs, _, _, _, info = env.step(action)
                observations.append(obs)
            raw, state = _batch(spec, envs, prev)
            obs = np.stack(observations)
            for name, field in spec.view.fields.items():
                value = np.asarray(getattr(state, name))
                assert value.shape == _shape(field.shape, 2), (name, value.shape)
                assert np.all(np.isfinite(value.astype(np.float64))), name
            # documented layout: observation ++ desired_goal, read back from the simulator
            np.testing.assert_allclose(obs[:, :3], state.grip_pos, atol=1e-9)
            np.testing.assert_allclose(obs[:, -3:], state.goal_pos, atol=1e-9)
            if has_object:
                np.testing.assert_allclose(obs[:, 3:6], state.obj_pos, atol=1e-9)
                np.testing.assert_allclose(obs[:, 11:14], state.obj_rot, atol=1e-9)
                np.testing.assert_allclose(obs[:, 20:23], state.grip_vel * 0.04, atol=1e-9)
            else:
                np.testing.assert_allclose(state.obj_pos, state.grip_pos)
                np.testing.assert_allclose(obs[:, 5:8], state.grip_vel * 0.04, atol=1e-9)
            np.testing.assert_allclose(state.prev.grip_pos, prev["grip_pos"])
            assert bool(state.task_success[1]) == bool(info["is_success"])
            reward, terms = program.compute_reward(state, actions)
            assert np.asarray(reward).shape == (2,) and np.all(np.isfinite(reward))
            assert terms and all(np.asarray(v).shape == (2,) for v in terms.values())
            prev = raw
    finally:
        for env in envs:
            env.close()


def test_reach_proportional_controller_succeeds():
    spec = SPECS["Fetch-Reach"]
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)
    env = spec.make_env()
    env.reset(seed=3)
    prev, state = _batch(spec, [env])
    assert not state.success[0]
    first_reward = None
    for _ in range(50):
        action = np.append(np.clip(10.0 * (state.goal_pos[0] - state.grip_pos[0]), -1, 1), 0.0)
        _, _, _, truncated, info = env.step(action)
        raw, state = _batch(spec, [env], prev)
        assert bool(state.success[0]) == bool(info["is_success"])
        reward, _ = program.compute_reward(state, action[None])
        first_reward = float(reward[0]) if first_reward is None else first_reward
        prev = raw
        if info["is_success"]:
            break
    assert state.success[0] and state.grip_to_goal[0] < 0.05
    assert float(reward[0]) > first_reward
    env.close()
