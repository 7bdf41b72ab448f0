"""Every registered task is a well-formed Gymnasium env (Gymnasium's checker and SB3's
check_env pass), reports the injection info, and is reachable through gym.make and
gym.make_vec alike; unknown ids and unavailable simulators give clear errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import rewardgym
from rewardgym.envs.registry import UnknownTaskError, get_task
from rewardgym.envs.task import TaskUnavailableError

TASKS = [t for t in rewardgym.all_tasks().values() if t.available()[0]]
SINGLE_AGENT = [t for t in TASKS if not getattr(t, "agents", None)]  # multi-agent ones: tests/test_multiagent.py
UNAVAILABLE = [t for t in rewardgym.all_tasks().values() if not t.available()[0]]


def test_required_tasks_are_registered():
    ids = set(rewardgym.all_tasks())
    required = [
        "HalfCheetah-Run", "Hopper-Hop", "Walker2d-Walk", "Ant-Run", "Humanoid-Run",
        "Hopper-Backflip", "Hopper-Frontflip", "HalfCheetah-Backflip", "Ant-LieDown", "Walker2d-Backward",
        "MetaWorld-Reach", "MetaWorld-Push", "MetaWorld-PickPlace", "MetaWorld-DoorOpen",
        "MetaWorld-DrawerOpen", "MetaWorld-DrawerClose", "MetaWorld-ButtonPressTopdown",
        "MetaWorld-PegInsertSide", "MetaWorld-WindowOpen", "MetaWorld-WindowClose",
        "Fetch-Reach", "Fetch-Push", "Fetch-PickAndPlace", "Fetch-Slide",
        "NetHack-Score", "NetHack-Staircase", "NetHack-StaircasePet", "NetHack-Oracle", "NetHack-Gold",
        "NetHack-Eat", "NetHack-Scout", "MiniHack-Room-5x5", "MiniHack-KeyRoom-S5", "MiniHack-River",
        "MiniHack-CorridorBattle", "MiniHack-MultiRoom-N2",
    ]
    missing = [name for name in required if f"rewardgym/{name}-v0" not in ids]
    assert not missing, missing
    for spec in rewardgym.all_tasks().values():
        assert spec.id in gym.registry
        assert spec.expert_path is not None and spec.expert_path.is_file(), spec.id


@pytest.mark.parametrize("task", SINGLE_AGENT, ids=lambda t: t.short_name)
def test_task_passes_gymnasium_and_sb3_checkers_with_expert_reward(task):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(task.id, reward="expert")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gym_check_env(env, skip_render_check=True)
            sb3_check_env(env, warn=False)
        obs, info = env.reset(seed=0)
        assert isinstance(info["success"], bool)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(reward, float) and np.isfinite(reward)
        assert set(info) >= {"env_reward", "reward_terms", "success"}
        assert info["reward_terms"], "expert programs report named terms"
        assert all(np.isfinite(v) for v in info["reward_terms"].values())
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.short_name)
def test_describe_lists_every_view_field(task):
    text = task.describe()
    assert task.instruction in text and task.success_doc in text
    for name, field in task.view.fields.items():
        assert name in text and field.doc in text


def test_make_vec_uses_batched_injection_and_matches_gym_make():
    task = get_task("HalfCheetah-Run")
    venv = gym.make_vec(task.id, num_envs=2, reward="expert")
    single = gym.make(task.id, reward="expert")
    try:
        from rewardgym.wrappers.inject import VectorRewardInjection

        assert isinstance(venv, VectorRewardInjection)
        venv.reset(seed=[5, 6])
        single.reset(seed=5)
        actions = np.random.default_rng(0).uniform(-1, 1, size=(10, 2, 6)).astype(np.float32)
        for a in actions:
            _, vr, _, _, vinfo = venv.step(a)
            _, r, _, _, info = single.step(a[0])
            assert vr[0] == pytest.approx(r)
            assert vinfo["env_reward"][0] == pytest.approx(info["env_reward"])
    finally:
        venv.close()
        single.close()


def test_unknown_task_id_lists_closest_ids():
    with pytest.raises(UnknownTaskError) as excinfo:
        get_task("Hoper-Backflip")
    assert "rewardgym/Hopper-Backflip-v0" in str(excinfo.value)


@pytest.mark.parametrize("task", UNAVAILABLE, ids=lambda t: t.short_name)
def test_unavailable_task_is_listed_with_reason_and_fails_clearly(task):
    ok, reason = task.available()
    assert not ok and reason
    with pytest.raises(TaskUnavailableError, match="unavailable on this machine"):
        (rewardgym.make_parallel if getattr(task, "agents", None) else gym.make)(task.id)


def test_sb3_ppo_trains_on_a_rewardgym_task_unchanged():
    from stable_baselines3 import PPO

    env = gym.make("rewardgym/Hopper-Hop-v0", reward="expert")
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)
