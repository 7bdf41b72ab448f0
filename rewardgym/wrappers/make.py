"""Entry points behind ``gym.make("rewardgym/...")`` and ``gym.make_vec("rewardgym/...")``.

This is where a task's environment, a reward source and the injection wrapper meet, so it
sits above all three (``envs`` -> ``rewards`` -> ``wrappers``).

``gym.make(id, reward=..., render_mode=..., trusted=False, **base_kwargs)`` builds the
task's real simulator env, wraps it in :class:`~rewardgym.envs.task.TaskEnv` and injects
the reward with :class:`~rewardgym.wrappers.inject.RewardInjection`; ``randomize=`` puts
:class:`~rewardgym.wrappers.randomize.DomainRandomization` between the two.

``gym.make_vec(id, num_envs, reward=..., asynchronous=False, autoreset_mode=..., ...)``
builds a ``SyncVectorEnv`` (or ``AsyncVectorEnv``) of task envs and injects the reward once
per batch with :class:`~rewardgym.wrappers.inject.VectorRewardInjection`.
:func:`make_vec` does the same and also takes Gymnasium's ``wrappers=`` (applied to each
sub-env) and ``vector_kwargs=`` (passed to the vector env). Gymnasium's own ``make_vec``
refuses those two arguments for any env with a vector entry point, so with ``gym.make_vec``
pass them with ``vectorization_mode="sync"|"async"``: each sub-env then injects its own
reward (same ``info`` layout, one reward call per env).

Multi-agent tasks (:class:`~rewardgym.envs.multiagent.MultiAgentTaskSpec`) are PettingZoo
envs: ``rewardgym.make_parallel`` builds them. Their ids are registered here too, with the
vector entry point of :mod:`rewardgym.multiagent` named as a string (that package sits
above this one), so ``gym.make_vec`` gives their parameter-sharing vector env of
``num_envs x n_agents`` agent slots; ``gym.make`` explains where to go.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import gymnasium as gym

from rewardgym.envs.frames import headless_gl_default
from rewardgym.envs.registry import add_task_listener, all_tasks, get_task
from rewardgym.envs.task import TaskEnv, TaskSpec, TaskUnavailableError
from rewardgym.rewards.spec import RewardSpec
from rewardgym.wrappers.inject import RewardInjection, VectorRewardInjection
from rewardgym.wrappers.randomize import DomainRandomization, RandomizationConfig


MULTIAGENT_VECTOR_ENTRY_POINT = "rewardgym.multiagent.vector:make_agent_vec_env"
"""``gym.make_vec``'s entry point for multi-agent ids (by name: it lives above this layer)."""


def check_available(task: TaskSpec) -> None:
    """Raise :class:`TaskUnavailableError` (with the reason) if ``task`` cannot run here."""
    ok, reason = task.available()
    if not ok:
        raise TaskUnavailableError(f"{task.id} is unavailable on this machine: {reason}")


def _check_single_agent(task: TaskSpec) -> None:
    if getattr(task, "agents", None):
        raise TypeError(f"{task.id} is a multi-agent task (PettingZoo): build it with rewardgym.make_parallel(id, "
                        f"reward=...) (a ParallelEnv), rewardgym.make_parallel_vec(id, num_envs, ...) (B copies, "
                        f"(B, N) rewards) or gym.make_vec(id, num_envs, ...) (one sub-env per agent, for "
                        f"shared-parameter learners)")


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
    check_available(task)
    config = RandomizationConfig.resolve(randomize)  # a bad config fails before the simulator starts
    headless_gl_default()
    env = task.make_env(render_mode=render_mode, state_in_info=state_in_info, **base_kwargs)
    if requires:
        env.require(**requires)
    return DomainRandomization(env, config) if config else env


def resolve_source(task: TaskSpec, reward: Any, trusted: bool = False, shaping: Any = None,
                   gamma: float | None = None, reward_limits: Any = None, reward_kwargs: Any = None):
    """The reward source of the entry points' reward arguments, through one
    :class:`~rewardgym.rewards.spec.RewardSpec` (``reward`` may already be one)."""
    return RewardSpec.of(reward, trusted=trusted, shaping=shaping, gamma=gamma, reward_limits=reward_limits,
                         reward_kwargs=reward_kwargs).resolve(task)


def make_env(task_id: str, reward: Any = "env", render_mode: str | None = None,
             trusted: bool = False, shaping: Any = None, gamma: float | None = None,
             reward_limits: Any = None, reward_kwargs: dict[str, dict[str, Any]] | None = None,
             randomize: Any = None, **base_kwargs: Any) -> gym.Env:
    """Single environment of ``task_id`` with ``reward`` injected (``gym.make`` entry point).

    Args:
        task_id: a ``rewardgym/...`` id (short forms accepted).
        reward: what :func:`~rewardgym.rewards.resolve.resolve_reward` accepts, or a
            :class:`~rewardgym.rewards.spec.RewardSpec` (which then carries ``trusted``,
            ``shaping``, ``gamma``, ``reward_limits`` and ``reward_kwargs``).
        render_mode: passed to the simulator (``"rgb_array"`` renders off-screen).
        trusted: run reward program files as trusted code (skip the sandbox: no validation, no
            worker process, no limits; your own code only).
        shaping: potential for potential-based shaping (``"expert"``, a program path with
            ``compute_potential``, a perceptual model, a run directory, or a callable); adds
            the term ``"shaping"``.
        gamma: the discount of the agent that will train on the env (required with ``shaping``).
        reward_limits: per-call time and memory limits of untrusted reward programs
            (:class:`~rewardgym.rewards.worker.ProgramLimits` or ``{"timeout_s": .., "memory_mb": ..}``).
        reward_kwargs: options of registered reward kinds, e.g. ``{"oni": {"beta": 0.05}}``.
        randomize: domain randomisation, a dict, a ``.toml``/``.json`` path or a
            :class:`~rewardgym.wrappers.randomize.RandomizationConfig` (MuJoCo tasks).
        **base_kwargs: passed to the simulator's constructor.
    """
    task = get_task(task_id)
    _check_single_agent(task)
    check_available(task)
    config = RandomizationConfig.resolve(randomize)
    source = resolve_source(task, reward, trusted, shaping, gamma, reward_limits, reward_kwargs)
    try:
        env = make_task_env(task.id, render_mode=render_mode, requires=source.requires(), randomize=config,
                            **base_kwargs)
    except BaseException:
        source.close()
        raise
    return RewardInjection(env, source)


def make_vec_env(task_id: str, num_envs: int = 1, reward: Any = "env", asynchronous: bool = False,
                 render_mode: str | None = None, trusted: bool = False, shaping: Any = None,
                 gamma: float | None = None, reward_limits: Any = None,
                 reward_kwargs: dict[str, dict[str, Any]] | None = None,
                 wrappers: Sequence[Callable[[gym.Env], gym.Env]] | None = None,
                 vector_kwargs: dict[str, Any] | None = None, autoreset_mode: Any = None,
                 randomize: Any = None, **base_kwargs: Any) -> gym.vector.VectorEnv:
    """Vector env of ``task_id`` with the reward computed once per batch (``gym.make_vec`` entry point).

    Args:
        task_id: a ``rewardgym/...`` id.
        num_envs: number of environments ``B``.
        reward: what :func:`~rewardgym.rewards.resolve.resolve_reward` accepts, or a
            :class:`~rewardgym.rewards.spec.RewardSpec` (which then carries ``trusted``,
            ``shaping``, ``gamma``, ``reward_limits`` and ``reward_kwargs``).
        asynchronous: one process per env (``AsyncVectorEnv``) instead of in-process.
        wrappers: Gymnasium wrappers applied to each sub-env (a :class:`TaskEnv`), innermost first.
        vector_kwargs: passed to ``SyncVectorEnv``/``AsyncVectorEnv``.
        autoreset_mode: Gymnasium's ``AutoresetMode`` (``NEXT_STEP``, the default, or
            ``SAME_STEP``); the same as ``vector_kwargs={"autoreset_mode": ...}``.
        render_mode, trusted, shaping, gamma, reward_limits, reward_kwargs, randomize, **base_kwargs:
            as for :func:`make_env` (each env samples its own randomisation; ``reset(seed=s)``
            seeds env ``i`` with ``s + i``).
    """
    task = get_task(task_id)
    _check_single_agent(task)
    check_available(task)
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    config = RandomizationConfig.resolve(randomize)  # bad options fail before a reward worker starts
    source = resolve_source(task, reward, trusted, shaping, gamma, reward_limits, reward_kwargs)
    venv = task_vector_env(task, source, num_envs, asynchronous=asynchronous, render_mode=render_mode,
                           wrappers=wrappers, vector_kwargs=vector_kwargs, autoreset_mode=autoreset_mode,
                           randomize=config, **base_kwargs)
    return VectorRewardInjection(venv, task, source)


def task_vector_env(task: TaskSpec, source: Any, num_envs: int, asynchronous: bool = False,
                    render_mode: str | None = None, wrappers: Sequence[Callable[[gym.Env], gym.Env]] | None = None,
                    vector_kwargs: dict[str, Any] | None = None, autoreset_mode: Any = None,
                    requires: dict[str, Any] | None = None, randomize: Any = None,
                    **base_kwargs: Any) -> gym.vector.VectorEnv:
    """The ``SyncVectorEnv`` (or ``AsyncVectorEnv``) of ``num_envs`` task envs under ``wrappers``,
    reading what ``source`` requires (plus ``requires``), before reward injection, each under
    ``randomize`` (a resolved :class:`~rewardgym.wrappers.randomize.RandomizationConfig` or
    None). Closes ``source`` if the envs cannot be built."""
    base_kwargs.pop("max_episode_steps", None)  # gym.make_vec forwards the spec's (None) limit
    try:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        vector_kwargs = dict(vector_kwargs or {})
        if autoreset_mode is not None:
            vector_kwargs["autoreset_mode"] = gym.vector.AutoresetMode(autoreset_mode)
        env_fn = partial(_wrapped_task_env, task.id, list(wrappers or []), render_mode=render_mode,
                         state_in_info=asynchronous, requires={**source.requires(), **(requires or {})},
                         randomize=randomize, **base_kwargs)
        if asynchronous:
            return gym.vector.AsyncVectorEnv([env_fn] * num_envs, **vector_kwargs)
        return gym.vector.SyncVectorEnv([env_fn] * num_envs, **vector_kwargs)
    except BaseException:
        source.close()
        raise


def _wrapped_task_env(task_id: str, wrappers: list[Callable[[gym.Env], gym.Env]], **kwargs: Any) -> gym.Env:
    env: gym.Env = make_task_env(task_id, **kwargs)
    for wrapper in wrappers:
        env = wrapper(env)
    return env


def make_vec(task_id: str, num_envs: int = 1, *, wrappers: Sequence[Callable[[gym.Env], gym.Env]] | None = None,
             vector_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """``gym.make_vec`` for rewardgym ids that also takes ``wrappers=`` and ``vector_kwargs=`` (batched reward).

    Example::

        venv = rewardgym.make_vec("rewardgym/Hopper-Hop-v0", 8, reward="expert",
                                  wrappers=[gym.wrappers.ClipAction],
                                  vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    """
    return make_vec_env(get_task(task_id).id, num_envs, wrappers=wrappers, vector_kwargs=vector_kwargs, **kwargs)


def register_gym_id(spec: TaskSpec) -> None:
    """Register ``spec.id`` with Gymnasium (``gym.make`` / ``gym.make_vec``); idempotent."""
    if spec.id in gym.registry:
        return
    gym.register(
        id=spec.id,
        entry_point=make_env,
        vector_entry_point=MULTIAGENT_VECTOR_ENTRY_POINT if getattr(spec, "agents", None) else make_vec_env,
        kwargs={"task_id": spec.id},
        # The base env applies its own time limit beneath the reward wrapper, so the
        # wrapper sees truncations; gym.make must not add a second TimeLimit on top.
        max_episode_steps=None,
    )


def register_gym_ids() -> None:
    """Register every task id, and every task declared later, with Gymnasium."""
    for spec in all_tasks().values():
        register_gym_id(spec)
    add_task_listener(register_gym_id)
