"""Reward injection: single env and vector env report the same rewards and info, the
vector path calls the source once per batch, and nothing crosses an episode boundary."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rewardgym.rewards.program import RewardProgram
from rewardgym.rewards.source import EnvReward, RewardSource, SparseReward
from rewardgym.wrappers.inject import RewardInjection, VectorRewardInjection

DELTA_PROGRAM = '''
def compute_reward(state, action):
    moved = state.x - state.prev.x
    upright = 1.0 - np.abs(state.theta)
    return upright + moved, {"upright": upright, "moved": moved}
'''


class CountingSource(RewardSource):
    """Counts calls and batch sizes (to prove one call per batch)."""

    name = "count"

    def __init__(self):
        self.calls = []

    def compute(self, state, action):
        self.calls.append(state.batch_size)
        return np.asarray(state.x, dtype=float), {}


def _vector(task, source, n, asynchronous=False):
    fns = [lambda: task.make_env(state_in_info=asynchronous) for _ in range(n)]
    venv = gym.vector.AsyncVectorEnv(fns) if asynchronous else gym.vector.SyncVectorEnv(fns)
    return VectorRewardInjection(venv, task, source)


def test_single_env_reports_env_reward_terms_success_and_episode_stats(cartpole_task, write_program):
    program = RewardProgram.from_file(write_program(DELTA_PROGRAM), view=cartpole_task.view)
    env = RewardInjection(cartpole_task.make_env(), program)
    obs, info = env.reset(seed=0)
    assert isinstance(info["success"], bool)
    x_prev = env.task_env.env.unwrapped.state[0]
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        x, _, theta, _ = env.task_env.env.unwrapped.state
        assert reward == pytest.approx((1 - abs(theta)) + (x - x_prev))
        assert info["reward_terms"]["moved"] == pytest.approx(x - x_prev)
        assert info["env_reward"] == 1.0  # CartPole's own reward
        x_prev = x
        total += reward
        steps += 1
        if terminated or truncated:
            break
    stats = info["episode_stats"]
    assert stats["length"] == steps and stats["return"] == pytest.approx(total)
    assert stats["env_return"] == pytest.approx(steps)
    assert stats["terms"]["upright"] + stats["terms"]["moved"] == pytest.approx(total)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_rewards_equal_single_env_rewards_across_autoresets(cartpole_task, write_program, asynchronous):
    n, steps = 3, 80
    program = RewardProgram.from_file(write_program(DELTA_PROGRAM), view=cartpole_task.view)
    venv = _vector(cartpole_task, program, n, asynchronous)
    singles = [RewardInjection(cartpole_task.make_env(), program) for _ in range(n)]
    venv.reset(seed=[10, 11, 12])
    for i, env in enumerate(singles):
        env.reset(seed=10 + i)
    rng = np.random.default_rng(0)
    needs_reset = [False] * n
    episodes_ended = 0
    try:
        for _ in range(steps):
            actions = rng.integers(0, 2, size=n)
            _, vreward, vterm, vtrunc, vinfo = venv.step(actions)
            for i, env in enumerate(singles):
                if needs_reset[i]:  # next-step autoreset: reward 0, no terms, env reward 0
                    env.reset()
                    assert vreward[i] == 0.0 and vinfo["env_reward"][i] == 0.0
                    assert all(v[i] == 0.0 for k, v in vinfo["reward_terms"].items() if not k.startswith("_"))
                    needs_reset[i] = False
                    continue
                _, r, term, trunc, info = env.step(int(actions[i]))
                assert vreward[i] == pytest.approx(r)
                assert vinfo["success"][i] == info["success"]
                for name, value in info["reward_terms"].items():
                    assert vinfo["reward_terms"][name][i] == pytest.approx(value)
                assert (vterm[i], vtrunc[i]) == (term, trunc)
                if term or trunc:
                    assert vinfo["_episode_stats"][i]
                    assert vinfo["episode_stats"]["return"][i] == pytest.approx(info["episode_stats"]["return"])
                    assert vinfo["episode_stats"]["length"][i] == info["episode_stats"]["length"]
                    needs_reset[i] = True
                    episodes_ended += 1
    finally:
        venv.close()
    assert episodes_ended >= 3  # the comparison really crossed autoresets


def test_vector_path_calls_the_source_once_per_batch_with_every_row(cartpole_task):
    source = CountingSource()
    venv = _vector(cartpole_task, source, 4)
    venv.reset(seed=0)
    for _ in range(30):
        venv.step(np.zeros(4, dtype=np.int64))
    # One call per step, always with all B rows (row i = env i), autoreset steps included.
    assert source.calls == [4] * 30


def test_first_step_after_reset_differences_from_reset_state(cartpole_task, write_program):
    program = RewardProgram.from_file(write_program(DELTA_PROGRAM), view=cartpole_task.view)
    venv = _vector(cartpole_task, program, 2)
    venv.reset(seed=3)
    reset_x = venv.state.x.copy()
    _, _, _, _, info = venv.step(np.array([1, 0]))
    assert np.allclose(info["reward_terms"]["moved"], venv.state.x - reset_x)
    assert np.allclose(venv.state.prev.x, reset_x)


def test_env_and_sparse_sources(cartpole_task):
    env = RewardInjection(cartpole_task.make_env(), EnvReward())
    env.reset(seed=1)
    _, r, *_ = env.step(0)
    assert r == 1.0
    env = RewardInjection(cartpole_task.make_env(), SparseReward())
    env.reset(seed=1)
    _, r, _, _, info = env.step(0)
    assert r == float(info["success"])
