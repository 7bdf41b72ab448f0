"""rewardgym vector envs follow gymnasium.vector's conventions and compose with its wrappers.

Partial resets touch only the masked envs; nested info dicts carry ``_key`` masks
(DictInfoToList); RecordEpisodeStatistics agrees with our episode statistics; sub-envs may
be wrapped; SAME_STEP and DISABLED autoreset work; sources get every row, so a stateful
source keeps its per-env state by row across autoresets.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

import rewardgym
from rewardgym.envs.view import active_rows
from rewardgym.rewards.source import RewardSource
from rewardgym.wrappers.inject import VectorRewardInjection

HOPPER = "rewardgym/Hopper-Hop-v0"


def _actions(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    space = env.single_action_space
    return rng.uniform(space.low, space.high, size=(steps, env.num_envs, *space.shape)).astype(space.dtype)


def test_partial_reset_keeps_the_other_envs_statistics():
    env = gym.make_vec(HOPPER, num_envs=3, reward="expert")
    env.reset(seed=0)
    returns = np.zeros(3)
    reported = {}
    for t, action in enumerate(_actions(env, 400)):
        if t == 5:
            env.reset(options={"reset_mask": np.array([True, False, False])})
            returns[0] = 0.0
        _, reward, term, trunc, info = env.step(action)
        returns += reward
        done = term | trunc
        for i in np.flatnonzero(done):
            if i not in reported:
                reported[i] = (info["episode_stats"]["return"][i], returns[i])
        returns[done] = 0.0
        if len(reported) == 3:
            break
    env.close()
    assert len(reported) == 3
    for i, (theirs, ours) in reported.items():  # env 1 and 2 kept their first 5 steps; env 0 restarted
        assert theirs == pytest.approx(ours), i


def test_dict_info_to_list_composes():
    # (not over Gymnasium's own RecordEpisodeStatistics: its "episode" dict has no inner masks)
    env = DictInfoToList(gym.make_vec(HOPPER, num_envs=2, reward="expert"))
    env.reset(seed=1)
    seen_end = False
    for action in _actions(env, 300):
        _, reward, term, trunc, infos = env.step(action)
        assert isinstance(infos, list) and len(infos) == 2
        for i, info in enumerate(infos):
            assert set(info["reward_terms"]) == {"forward", "healthy", "ctrl"}
            assert info["reward_terms"]["forward"] + info["reward_terms"]["healthy"] + info["reward_terms"]["ctrl"] \
                == pytest.approx(reward[i])
            if term[i] or trunc[i]:
                seen_end = True
                assert set(info["episode_stats"]["terms"]) == {"forward", "healthy", "ctrl"}
    env.close()
    assert seen_end


def test_record_episode_statistics_agrees_with_episode_stats():
    env = RecordEpisodeStatistics(gym.make_vec(HOPPER, num_envs=2, reward="expert"))
    env.reset(seed=2)
    checked = 0
    for action in _actions(env, 300):
        _, _, term, trunc, info = env.step(action)
        if "episode" in info:
            for i in np.flatnonzero(info["_episode"]):
                assert info["episode"]["r"][i] == pytest.approx(info["episode_stats"]["return"][i], rel=1e-5)
                assert info["episode"]["l"][i] == info["episode_stats"]["length"][i]
                checked += 1
    env.close()
    assert checked >= 2


def _rollout(env, steps, seed):
    env.reset(seed=seed)
    out = []
    for action in _actions(env, steps, seed):
        _, reward, term, trunc, info = env.step(action)
        out.append((reward.copy(), term.copy(), trunc.copy()))
    env.close()
    return out


def test_wrapped_sub_envs_keep_the_batched_reward():
    plain = _rollout(rewardgym.make_vec(HOPPER, 2, reward="expert"), 60, seed=3)
    wrapped = rewardgym.make_vec(HOPPER, 2, reward="expert",
                                 wrappers=[gym.wrappers.RecordEpisodeStatistics, gym.wrappers.PassiveEnvChecker])
    assert isinstance(wrapped, VectorRewardInjection)
    for (r1, *_), (r2, *_) in zip(plain, _rollout(wrapped, 60, seed=3)):
        np.testing.assert_allclose(r1, r2)
    # Gymnasium's own sync path with wrappers: one reward call per env, the same rewards
    sync = gym.make_vec(HOPPER, 2, vectorization_mode="sync", reward="expert",
                        wrappers=[gym.wrappers.RecordEpisodeStatistics])
    for (r1, *_), (r2, *_) in zip(plain, _rollout(sync, 60, seed=3)):
        np.testing.assert_allclose(r1, r2)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_same_step_autoreset_rewards_the_final_transition(asynchronous):
    """SAME_STEP: the final transition's reward comes from the final state; compare with single envs."""
    n, steps = 2, 250
    venv = gym.make_vec(HOPPER, num_envs=n, reward="expert", asynchronous=asynchronous,
                        autoreset_mode=AutoresetMode.SAME_STEP)
    singles = [gym.make(HOPPER, reward="expert") for _ in range(n)]
    venv.reset(seed=[5, 6])
    for i, env in enumerate(singles):
        env.reset(seed=5 + i)
    ended = 0
    try:
        for action in _actions(venv, steps):
            _, vreward, vterm, vtrunc, vinfo = venv.step(action)
            for i, env in enumerate(singles):
                _, r, term, trunc, info = env.step(action[i])
                assert vreward[i] == pytest.approx(r) and (vterm[i], vtrunc[i]) == (term, trunc)
                assert vinfo["reward_terms"]["forward"][i] == pytest.approx(info["reward_terms"]["forward"])
                if term or trunc:
                    assert vinfo["_episode_stats"][i]
                    assert vinfo["episode_stats"]["return"][i] == pytest.approx(info["episode_stats"]["return"])
                    assert vinfo["episode_stats"]["length"][i] == info["episode_stats"]["length"]
                    env.reset(seed=None)  # the vector env reset itself in the same step
                    ended += 1
            if ended:
                break  # after a reset the seeds differ; one ended episode proves the final transition
    finally:
        venv.close()
        for env in singles:
            env.close()
    assert ended >= 1


class PerRowCounter(RewardSource):
    """A stateful source: counts each env's steps by row, skipping inactive rows."""

    name = "counter"

    def __init__(self):
        self.counts: np.ndarray | None = None
        self.inactive_seen = 0

    def compute(self, state, action):
        active = active_rows(state)
        if self.counts is None:
            self.counts = np.zeros(state.batch_size)
        self.inactive_seen += int((~active).sum())
        self.counts += active
        return self.counts.copy(), {}

    def on_episode_start(self, env_indices):
        if self.counts is not None:
            self.counts[env_indices] = 0


def test_a_stateful_source_keeps_per_env_state_by_row_across_autoresets():
    source = PerRowCounter()
    env = gym.make_vec(HOPPER, num_envs=4, reward=source)
    env.reset(seed=4)
    ends = 0
    for action in _actions(env, 300):
        _, reward, term, trunc, info = env.step(action)
        done = term | trunc
        if done.any():
            # the source's count of an ended episode is its length, env by env
            np.testing.assert_array_equal(reward[done], info["episode_stats"]["length"][done])
            ends += int(done.sum())
    env.close()
    assert ends >= 4 and source.inactive_seen >= 4  # it saw (and skipped) the autoreset rows


def test_disabled_autoreset_resets_only_what_you_reset():
    env = gym.make_vec(HOPPER, num_envs=2, reward="expert", autoreset_mode=AutoresetMode.DISABLED)
    env.reset(seed=7)
    total = np.zeros(2)
    for action in _actions(env, 300):
        _, reward, term, trunc, info = env.step(action)
        total += reward
        done = term | trunc
        if done.any():
            np.testing.assert_allclose(info["episode_stats"]["return"][done], total[done])
            total[done] = 0.0
            env.reset(options={"reset_mask": done})
    env.close()


class _PrevSuccess(RewardSource):
    """Reads ``state.prev.success`` on every step (a reward for "stay successful")."""

    name = "prev_success"

    def __init__(self):
        self.seen = []

    def compute(self, state, action):
        prev = np.asarray(state.prev.success, dtype=bool)
        self.seen.append((prev.copy(), np.asarray(active_rows(state)).copy()))
        return prev.astype(np.float64), {}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_previous_success_exists_on_every_step_including_resets_of_every_env_at_once(mode):
    # Fetch-Reach episodes last 50 steps in every env, so all envs autoreset on the same step:
    # the previous state of the step after is a reset state, whose success must be its own.
    source = _PrevSuccess()
    env = gym.make_vec("rewardgym/Fetch-Reach-v0", num_envs=2, reward=source, autoreset_mode=mode)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(120):
        env.step(env.action_space.sample())
    env.close()
    assert len(source.seen) == 120
