"""Batched multi-agent envs: ``B`` copies of a task, the reward computed once per batch.

:class:`ParallelVectorEnv` (``rewardgym.make_parallel_vec``) keeps the agent axis::

    venv = rewardgym.make_parallel_vec("rewardgym/MaMuJoCo-HalfCheetah-2x3-v0", 8, reward="expert")
    obs, info = venv.reset(seed=0)                      # (B, N, d): agent i's observation in [:, i]
    obs, rewards, terminated, truncated, info = venv.step(actions)   # actions (B, N, 3); rewards (B, N)
    info["env_reward"], info["reward_terms"]["forward"]  # (B, N) each; info["success"] (B,)
    venv.global_state()                                  # (B, S) global states (global_state=True)
    venv.state                                           # the StateView of the last step, as for every vector env

It is :class:`~rewardgym.wrappers.inject.VectorRewardInjection` over Gymnasium's
``SyncVectorEnv``/``AsyncVectorEnv`` of the task's joint envs, so every autoreset mode,
``reset_mask`` and the ``_key`` masks work as for single-agent tasks; the differences are
that rewards, ``env_reward``, terms and the episode sums of ``return``, ``env_return`` and
``terms`` are ``(B, N)``, and that ``terminated``/``truncated`` are the copies' ``(B,)``
(episodes end for all agents together).

:class:`AgentVectorEnv` is the parameter-sharing view that ``gym.make_vec`` returns for
multi-agent ids: a standard Gymnasium ``VectorEnv`` with one sub-env per agent of each copy,
``B x N`` of them, row ``b * N + i`` being agent ``i`` of copy ``b`` (SuperSuit's
``pettingzoo_env_to_vec_env`` layout). Each row observes its own observation, the one-hot
agent id and, with ``global_state=True``, the copy's global state (for a centralised critic),
and receives its own reward. Any single-agent learner trains a shared policy on it: the
project's PPO then *is* IPPO (de Witt et al., 2020), and MAPPO (Yu et al., 2022) is the same
PPO with a critic on the global state (:mod:`rewardgym.learners.mappo`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rewardgym.envs.multiagent import MultiAgentTaskSpec
from rewardgym.envs.view import raw_batch
from rewardgym.multiagent.parallel import multiagent_task
from rewardgym.wrappers.inject import VectorRewardInjection
from rewardgym.wrappers.make import resolve_source, task_vector_env


class ParallelVectorEnv(VectorRewardInjection):
    """``B`` copies of a multi-agent task with ``(B, N)`` rewards (module docstring).

    Args:
        env: a ``SyncVectorEnv``/``AsyncVectorEnv`` of the task's
            :class:`~rewardgym.envs.multiagent.MultiAgentTaskEnv` s (``make_parallel_vec`` builds it).
        task: the multi-agent task.
        source: the reward source.

    Attributes:
        agents: the agents' names; column ``i`` of rewards and per-agent arrays is ``agents[i]``.
        num_agents: ``N``.
    """

    def __init__(self, env: VectorEnv, task: MultiAgentTaskSpec, source: Any):
        super().__init__(env, task, source)
        self.agents = tuple(task.agents)
        self.num_agents = len(self.agents)
        self._current: dict[str, Any] | None = None

    def _rows(self, info: dict) -> dict[str, Any]:
        batch = super()._rows(info)
        self._current = batch  # the copies' current states (the global state is read from here)
        return batch

    def global_state(self) -> np.ndarray:
        """``(B, S)`` float32: each copy's global state now (PettingZoo's ``state()``); needs
        ``global_state=True`` at construction. (``state`` is the :class:`StateView` of the last
        step, as for every rewardgym vector env.)"""
        if self._current is None or "global_state" not in self._current:
            raise RuntimeError("the global state is read only when the env is made with global_state=True "
                               "(make_parallel_vec(..., global_state=True)), after reset()")
        return np.asarray(self._current["global_state"], dtype=np.float32)

    @property
    def state_space(self) -> gym.spaces.Box:
        """The space of one copy's global state."""
        return self.env.get_attr("state_space")[0]

    @property
    def agent_action_space(self) -> gym.Space:
        """The action space of one agent (every agent has this one)."""
        return self.env.get_attr("agent_action_space")[0]

    def step(self, actions: Any):
        obs, reward, terminated, truncated, info = super().step(actions)
        # the agents' own rewards (zero on next-step autoreset rows, the final step's in same-step mode)
        info["env_reward"] = np.array(raw_batch(self.computer.last_state)["env_reward"], dtype=np.float64)
        return obs, reward, terminated, truncated, info


def make_parallel_vec(task_id: str, num_envs: int = 1, reward: Any = "env", *, asynchronous: bool = False,
                      render_mode: str | None = None, trusted: bool = False, shaping: Any = None,
                      gamma: float | None = None, reward_limits: Any = None,
                      reward_kwargs: dict[str, dict[str, Any]] | None = None,
                      wrappers: Sequence[Callable[[gym.Env], gym.Env]] | None = None,
                      vector_kwargs: dict[str, Any] | None = None, autoreset_mode: Any = None,
                      global_state: bool = False, randomize: Any = None, **base_kwargs: Any) -> ParallelVectorEnv:
    """``num_envs`` copies of a multi-agent task with the reward computed once per batch.

    Args:
        task_id: a multi-agent ``rewardgym/...`` id.
        num_envs: copies ``B``.
        reward, shaping, gamma, trusted, reward_limits, reward_kwargs: as for
            :func:`~rewardgym.multiagent.parallel.make_parallel`.
        asynchronous: one process per copy (``AsyncVectorEnv``).
        wrappers: Gymnasium wrappers applied to each copy's joint env (a
            :class:`~rewardgym.envs.multiagent.MultiAgentTaskEnv`), innermost first.
        vector_kwargs, autoreset_mode: passed to the vector env, as for ``rewardgym.make_vec``.
        global_state: read every copy's global state each step (:meth:`ParallelVectorEnv.global_state`).
        randomize: must be None (domain randomisation is for single-agent MuJoCo tasks).
        render_mode, **base_kwargs: passed to the simulator.
    """
    task = multiagent_task(task_id, randomize)
    source = resolve_source(task, reward, trusted, shaping, gamma, reward_limits, reward_kwargs)
    venv = task_vector_env(task, source, num_envs, asynchronous=asynchronous, render_mode=render_mode,
                           wrappers=wrappers, vector_kwargs=vector_kwargs, autoreset_mode=autoreset_mode,
                           requires={"global_state": True} if global_state else None, **base_kwargs)
    return ParallelVectorEnv(venv, task, source)


class AgentVectorEnv(VectorEnv):
    """Parameter-sharing view of a :class:`ParallelVectorEnv`: one sub-env per agent (module docstring).

    Row ``b * N + i`` is agent ``i`` of copy ``b``; ``num_envs = B * N``.

    * observation ``(B*N, d + N [+ S])`` float32: the agent's observation (zero-padded to
      ``d``), its one-hot id ``(N,)`` and, with ``global_state``, its copy's global state
      ``(S,)``; :attr:`obs_layout` gives the column ranges;
    * action: the agent's own action space (``(B*N, *a)`` batched);
    * reward ``(B*N,)``: the agent's injected reward; ``terminated``/``truncated`` its copy's;
    * ``info``: the copies' info with ``(B, N, ...)`` arrays flattened to ``(B*N, ...)`` and
      ``(B, ...)`` arrays (success, length, masks) repeated for each agent, so every key
      has Gymnasium's ``_key`` mask and ``episode_stats`` is per agent.

    Next-step autoreset only (what PPO-style learners use): ``reset(options={"reset_mask":
    m})`` takes a ``(B*N,)`` mask that selects whole copies.

    Args:
        env: the batched multi-agent env (next-step autoreset).
        global_state: append each copy's global state to its agents' observations (the env
            must read it: ``make_parallel_vec(..., global_state=True)``).
    """

    def __init__(self, env: ParallelVectorEnv, global_state: bool = False):
        mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"AgentVectorEnv needs next-step autoreset (Gymnasium's default), got {mode}")
        self.env = env
        self.copies = env.num_envs
        self.num_agents = env.num_agents
        self.agents = env.agents
        self.num_envs = self.copies * self.num_agents
        joint_obs = env.single_observation_space
        obs_dim = int(joint_obs.shape[1])
        state_dim = int(env.state_space.shape[0]) if global_state else 0
        self.global_state = bool(global_state)
        n = self.num_agents
        self.obs_layout = {"obs": (0, obs_dim), "agent_id": (obs_dim, obs_dim + n),
                           "state": (obs_dim + n, obs_dim + n + state_dim)}
        """Column ranges ``[start, stop)`` of the observation's parts: ``obs``, ``agent_id`` and ``state``."""
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim + n + state_dim,), np.float32)
        self.single_action_space = env.agent_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
        self.render_mode = env.render_mode
        self._obs = np.zeros((self.num_envs, self.single_observation_space.shape[0]), dtype=np.float32)
        self._obs[:, obs_dim:obs_dim + n] = np.tile(np.eye(n, dtype=np.float32), (self.copies, 1))

    @property
    def source(self) -> Any:
        """The reward source of the batched env."""
        return self.env.source

    @property
    def task(self) -> MultiAgentTaskSpec:
        return self.env.task

    @property
    def envs(self) -> Any:
        """The copies' task envs (in-process vector envs only; None for ``AsyncVectorEnv``)."""
        return getattr(self.env.unwrapped, "envs", None)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        start, stop = self.obs_layout["obs"]
        self._obs[:, start:stop] = obs.reshape(self.num_envs, -1)
        if self.global_state:
            start, stop = self.obs_layout["state"]
            self._obs[:, start:stop] = np.repeat(self.env.global_state(), self.num_agents, axis=0)
        return self._obs.copy()

    def _per_agent(self, value: Any) -> Any:
        """``(B, N, ...)`` -> ``(B*N, ...)``; ``(B, ...)`` -> repeated per agent; dicts recursively."""
        if isinstance(value, dict):
            return {k: self._per_agent(v) for k, v in value.items()}
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == self.copies:
            if value.ndim >= 2 and value.shape[1] == self.num_agents:
                return value.reshape((self.num_envs,) + value.shape[2:])
            return np.repeat(value, self.num_agents, axis=0)
        return value

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        options = dict(options) if options is not None else None
        if options is not None and options.get("reset_mask") is not None:
            mask = np.asarray(options["reset_mask"], dtype=bool).reshape(self.copies, self.num_agents)
            if (mask.any(axis=1) != mask.all(axis=1)).any():
                raise ValueError("reset_mask selects whole copies: every agent of a copy or none")
            options["reset_mask"] = mask.all(axis=1)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), self._per_agent(info)

    def step(self, actions: Any):
        actions = np.asarray(actions)
        obs, reward, terminated, truncated, info = self.env.step(
            actions.reshape((self.copies, self.num_agents) + actions.shape[1:]))
        return (self._observe(obs), reward.reshape(-1).astype(np.float64),
                np.repeat(terminated, self.num_agents), np.repeat(truncated, self.num_agents), self._per_agent(info))

    def render(self):
        return self.env.render()

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close(**kwargs)


def make_agent_vec_env(task_id: str, num_envs: int = 1, global_state: bool = False, **kwargs: Any) -> AgentVectorEnv:
    """``gym.make_vec``'s entry point for multi-agent ids: :class:`AgentVectorEnv` over
    ``num_envs`` copies (``num_envs x n_agents`` sub-envs). ``kwargs`` go to :func:`make_parallel_vec`."""
    kwargs.pop("max_episode_steps", None)
    if kwargs.get("autoreset_mode") not in (None, AutoresetMode.NEXT_STEP, AutoresetMode.NEXT_STEP.value):
        raise ValueError("the agent vector env of a multi-agent task uses next-step autoreset")
    return AgentVectorEnv(make_parallel_vec(task_id, num_envs, global_state=global_state, **kwargs),
                          global_state=global_state)
