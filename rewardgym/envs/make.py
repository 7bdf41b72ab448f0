"""Entry points behind ``gym.make("rewardgym/...")`` and ``gym.make_vec("rewardgym/...")``.

``gym.make(id, reward=..., render_mode=..., trusted=False, **base_kwargs)`` builds the
task's real simulator env, wraps it in :class:`~rewardgym.envs.task.TaskEnv` and injects
the reward with :class:`~rewardgym.wrappers.inject.RewardInjection`; ``randomize=`` puts
:class:`~rewardgym.wrappers.randomize.DomainRandomization` between the two.

``gym.make_vec(id, num_envs, reward=..., asynchronous=False, ...)`` builds a
``SyncVectorEnv`` (or ``AsyncVectorEnv``) of task envs and injects the reward once per
batch with :class:`~rewardgym.wrappers.inject.VectorRewardInjection`. Passing
Gymnasium's own ``vectorization_mode="sync"|"async"`` also works: every sub-env then
injects its own reward (same ``info`` layout, one reward call per env).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym

from rewardgym.envs.registry import get_task
from rewardgym.envs.task import TaskEnv, TaskSpec, TaskUnavailableError
from rewardgym.rewards.shaping import with_shaping
from rewardgym.rewards.source import resolve_reward
from rewardgym.wrappers.inject import RewardInjection, VectorRewardInjection
from rewardgym.wrappers.randomize import DomainRandomization, RandomizationConfig


def _check_available(task: TaskSpec) -> None:
    ok, reason = task.available()
    if not ok:
        raise TaskUnavailableError(f"{task.id} is unavailable on this machine: {reason}")


def make_task_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
                  requires: dict[str, Any] | None = None, randomize: Any = None, **base_kwargs: Any) -> gym.Env:
    """The task's simulator env wrapped as a :class:`TaskEnv`, without reward injection.

    Args:
        requires: extra raw readings for the reward (:meth:`RewardSource.requires`:
            camera frames, the observation), passed to :meth:`TaskEnv.require`.
        randomize: domain randomisation (:mod:`rewardgym.wrappers.randomize`): the
            ``TaskEnv`` is returned inside a ``DomainRandomization`` wrapper.
    """
    task = get_task(task_id)
    _check_available(task)
    config = RandomizationConfig.resolve(randomize)  # a bad config fails before the simulator starts
    env = task.make_env(render_mode=render_mode, state_in_info=state_in_info, **base_kwargs)
    if requires:
        env.require(**requires)
    return DomainRandomization(env, config) if config else env


def make_env(task_id: str, reward: Any = "env", render_mode: str | None = None,
             trusted: bool = False, shaping: Any = None, gamma: float | None = None,
             randomize: Any = None, **base_kwargs: Any) -> gym.Env:
    """Single environment of ``task_id`` with ``reward`` injected (``gym.make`` entry point).

    Args:
        task_id: a ``rewardgym/...`` id (short forms accepted).
        reward: what :func:`~rewardgym.rewards.source.resolve_reward` accepts.
        render_mode: passed to the simulator (``"rgb_array"`` renders off-screen).
        trusted: run reward program files as trusted code (skip the sandbox).
        shaping: potential for potential-based shaping (``"expert"``, a program path with
            ``compute_potential``, or a callable); adds the term ``"shaping"``.
        gamma: the discount of the agent that will train on the env (required with ``shaping``).
        randomize: domain randomisation, a dict, a ``.toml``/``.json`` path or a
            :class:`~rewardgym.wrappers.randomize.RandomizationConfig` (MuJoCo tasks).
        **base_kwargs: passed to the simulator's constructor.
    """
    task = get_task(task_id)
    _check_available(task)
    source = with_shaping(resolve_reward(reward, task, trusted=trusted), shaping, gamma, task, trusted)
    env = make_task_env(task.id, render_mode=render_mode, requires=source.requires(), randomize=randomize,
                        **base_kwargs)
    return RewardInjection(env, source)


def make_vec_env(task_id: str, num_envs: int = 1, reward: Any = "env", asynchronous: bool = False,
                 render_mode: str | None = None, trusted: bool = False, shaping: Any = None,
                 gamma: float | None = None, randomize: Any = None, **base_kwargs: Any) -> gym.vector.VectorEnv:
    """Vector env of ``task_id`` with the reward computed once per batch (``gym.make_vec`` entry point).

    Args:
        task_id: a ``rewardgym/...`` id.
        num_envs: number of environments ``B``.
        reward: what :func:`~rewardgym.rewards.source.resolve_reward` accepts.
        asynchronous: one process per env (``AsyncVectorEnv``) instead of in-process.
        render_mode, trusted, shaping, gamma, randomize, **base_kwargs: as for :func:`make_env`
            (each env samples its own randomisation; ``reset(seed=s)`` seeds env ``i`` with ``s + i``).
    """
    base_kwargs.pop("max_episode_steps", None)  # gym.make_vec forwards the spec's (None) limit
    task = get_task(task_id)
    _check_available(task)
    source = with_shaping(resolve_reward(reward, task, trusted=trusted), shaping, gamma, task, trusted)
    env_fn = partial(make_task_env, task.id, render_mode=render_mode, state_in_info=asynchronous,
                     requires=source.requires(), randomize=RandomizationConfig.resolve(randomize), **base_kwargs)
    if asynchronous:
        venv = gym.vector.AsyncVectorEnv([env_fn] * num_envs)
    else:
        venv = gym.vector.SyncVectorEnv([env_fn] * num_envs)
    return VectorRewardInjection(venv, task, source)
