"""A multi-agent task as a PettingZoo ``ParallelEnv`` with an injected reward: ``rewardgym.make_parallel``.

::

    import rewardgym
    env = rewardgym.make_parallel("rewardgym/MPE-SimpleSpread-v0", reward="my_team_reward.py")
    obs, infos = env.reset(seed=0)
    obs, rewards, terminations, truncations, infos = env.step(
        {agent: env.action_space(agent).sample() for agent in env.agents})
    infos["agent_0"]["env_reward"], infos["agent_0"]["reward_terms"], infos["agent_0"]["success"]

The env passes ``pettingzoo.test.parallel_api_test``. Observations, spaces and the global
``state()`` are the simulator's own; rewards are the injected ones: a program's team reward
``(B,)`` goes to every agent, per-agent rewards ``(B, N)`` to each (see
:mod:`rewardgym.rewards.program`). ``infos[agent]`` holds the simulator's own info for the
agent plus ``env_reward`` (the simulator's reward of that agent), ``reward_terms`` (that
agent's value of each term), ``success`` (the team's success test) and, when the episode
ends, ``episode_stats`` (``return``, ``env_return`` and per-term sums of that agent; the
team's ``length``, ``success`` at any step and ``final_success``). Every agent acts on every
step and the episode ends for all agents together, after which ``agents`` is empty until
the next ``reset``.

The reward is computed by the same :class:`~rewardgym.wrappers.inject.RewardComputer` as
every single-agent env (a batch of one), so programs run in their sandboxed worker with the
same limits, read a read-only state and cannot touch what ``infos`` reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo.utils.env import ParallelEnv

from rewardgym.envs.multiagent import MultiAgentTaskEnv, MultiAgentTaskSpec
from rewardgym.envs.registry import get_task
from rewardgym.envs.view import StateView, stack_raw
from rewardgym.wrappers.inject import RewardComputer
from rewardgym.wrappers.make import check_available, make_task_env, resolve_source

_STAT_KEYS = ("length", "success", "final_success")


def multiagent_task(task_id: str, randomize: Any = None) -> MultiAgentTaskSpec:
    """The multi-agent task ``task_id`` (short forms accepted), or a TypeError naming what it is.
    ``randomize`` (domain randomisation, single-agent MuJoCo tasks only) must be None."""
    task = get_task(task_id)
    if not isinstance(task, MultiAgentTaskSpec):
        raise TypeError(f"{task.id} is a single-agent task: use gym.make / gym.make_vec")
    if randomize is not None:
        raise TypeError(f"{task.id} is a multi-agent task: domain randomisation (randomize=) is not supported "
                        f"for multi-agent tasks")
    check_available(task)
    return task


class ParallelRewardEnv(ParallelEnv):
    """A multi-agent task with an injected reward, as a PettingZoo ``ParallelEnv`` (module docstring).

    Args:
        task_env: the task's :class:`~rewardgym.envs.multiagent.MultiAgentTaskEnv`.
        source: the reward source (:func:`rewardgym.rewards.resolve.resolve_reward`).
    """

    def __init__(self, task_env: MultiAgentTaskEnv, source: Any):
        self.task_env = task_env
        self.task: MultiAgentTaskSpec = task_env.task
        self.source = source
        self.computer = RewardComputer(self.task, source, 1)
        joint = task_env.joint
        self.joint = joint
        self.possible_agents = list(self.task.agents)
        self.agents: list[str] = []
        self.metadata = dict(joint.metadata)
        self.render_mode = joint.render_mode
        sim = joint.parallel_env
        self._observation_spaces = {a: sim.observation_space(a) for a in self.possible_agents}
        self._action_spaces = {a: sim.action_space(a) for a in self.possible_agents}
        self._one = np.ones(1, dtype=bool)
        self._dtype = np.float64 if joint.action_space.dtype.kind == "f" else np.int64

    def observation_space(self, agent: str):
        return self._observation_spaces[agent]

    def action_space(self, agent: str):
        return self._action_spaces[agent]

    @property
    def state_space(self):
        """The space of :meth:`state`."""
        return self.joint.state_space

    def state(self) -> np.ndarray:
        """PettingZoo's global state: the simulator's ``state()``."""
        return self.joint.state()

    @property
    def state_view(self) -> StateView | None:
        """The :class:`StateView` (batch of 1) of the latest step or reset."""
        return self.computer.last_state

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.task_env.reset(seed=seed, options=options)
        state = self.computer.reset(stack_raw([self.task_env.raw_state()]), self._one)
        self.agents = list(self.possible_agents)
        success = bool(state.success[0])
        infos = {a: {**self.joint.last_infos.get(a, {}), "success": success} for a in self.agents}
        return dict(self.joint.last_obs), infos

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError(f"{self.task.id}: the episode has ended; call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"{self.task.id}: no action for agent(s) {missing}: every agent acts on every step")
        action = np.asarray([actions[a] for a in self.agents], dtype=self._dtype)
        _, _, terminated, truncated, _ = self.task_env.step(action)
        reward, terms, success = self.computer.step(stack_raw([self.task_env.raw_state()]), action[None])
        env_reward = self.joint.agent_rewards
        stats = self.computer.episode_stats(self._one) if terminated or truncated else None
        rewards, infos = {}, {}
        for i, agent in enumerate(self.agents):
            rewards[agent] = float(reward[0, i])
            info = {**self.joint.last_infos.get(agent, {}), "env_reward": float(env_reward[i]),
                    "reward_terms": {k: float(v[0, i]) for k, v in terms.items()}, "success": bool(success[0])}
            if stats is not None:
                info["episode_stats"] = {"return": float(stats["return"][0, i]),
                                         "env_return": float(stats["env_return"][0, i]),
                                         **{k: stats[k][0].item() for k in _STAT_KEYS},
                                         "terms": {k: float(v[0, i]) for k, v in stats["terms"].items()}}
            infos[agent] = info
        terminations = dict.fromkeys(self.agents, bool(terminated))
        truncations = dict.fromkeys(self.agents, bool(truncated))
        obs = dict(self.joint.last_obs)
        if terminated or truncated:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def render(self):
        return self.task_env.render()

    def close(self) -> None:
        try:
            self.task_env.close()
        finally:
            self.computer.close()


def make_parallel(task_id: str, reward: Any = "env", *, render_mode: str | None = None, trusted: bool = False,
                  shaping: Any = None, gamma: float | None = None, reward_limits: Any = None,
                  reward_kwargs: dict[str, dict[str, Any]] | None = None, randomize: Any = None,
                  **base_kwargs: Any) -> ParallelRewardEnv:
    """A multi-agent task with ``reward`` injected, as a PettingZoo ``ParallelEnv``.

    Args:
        task_id: a multi-agent ``rewardgym/...`` id (short forms accepted).
        reward: what :func:`~rewardgym.rewards.resolve.resolve_reward` accepts; programs may
            return a team reward ``(B,)`` or per-agent rewards ``(B, N)``.
        shaping: potential-based shaping (``"expert"``, a program with ``compute_potential``
            returning ``(B,)`` or one potential per agent ``(B, N)``, or a callable); adds the
            term ``"shaping"``. Φ of a terminal state is 0 for every agent; on a truncation
            Φ(s') is kept.
        gamma: the discount of the agents that will learn (required with ``shaping``).
        render_mode, trusted, reward_limits, reward_kwargs: as for ``gym.make``.
        randomize: must be None (domain randomisation is for single-agent MuJoCo tasks).
        **base_kwargs: passed to the simulator's constructor.
    """
    task = multiagent_task(task_id, randomize)
    source = resolve_source(task, reward, trusted, shaping, gamma, reward_limits, reward_kwargs)
    try:
        task_env = make_task_env(task.id, render_mode=render_mode, requires=source.requires(), **base_kwargs)
    except BaseException:
        source.close()
        raise
    return ParallelRewardEnv(task_env, source)
