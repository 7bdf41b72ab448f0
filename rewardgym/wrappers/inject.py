"""Reward injection: the one place where a reward source meets an environment.

:class:`RewardInjection` wraps a single :class:`~rewardgym.envs.task.TaskEnv`;
:class:`VectorRewardInjection` wraps a Gymnasium vector env of ``TaskEnv`` s and computes
the reward once per batch. Both report the same ``info``:

``info["env_reward"]``     the base environment's own reward, ``()`` / ``(B,)``
``info["reward_terms"]``   ``{term: value}`` as returned by the source, ``()`` / ``(B,)`` each
``info["success"]``        the task's success test on the new state, bool
``info["episode_stats"]``  at episode end only: ``return``, ``env_return``, ``length``,
                           ``success`` (held at any step), ``final_success``, ``terms``
                           (per-term episode sums)

Vector envs follow Gymnasium 1.x's default next-step autoreset: the step that resets an
environment returns reward 0, no terms and ``env_reward`` 0 for it, and no reward is ever
computed from a pair of states on either side of an episode boundary.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import RawBatch, StateView, select_rows, stack_raw
from rewardgym.rewards.source import RewardSource, Terms


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if type(x).__module__.startswith("torch") else np.asarray(x)


class RewardComputer:
    """Batch bookkeeping shared by the single-env and vector wrappers.

    Keeps the previous raw batch (``state.prev``), evaluates the task's success test,
    calls the source, and accumulates per-env episode statistics.

    Args:
        task: the task (view spec and success test).
        source: the reward source.
        num_envs: batch size ``B``.
    """

    def __init__(self, task: TaskSpec, source: RewardSource, num_envs: int):
        self.task = task
        self.source = source
        self.num_envs = num_envs
        self.prev_raw: dict[str, np.ndarray] | None = None
        self.last_state: StateView | None = None
        self.term_names: list[str] = []
        self._reset_stats(np.arange(num_envs))

    def _reset_stats(self, rows: np.ndarray) -> None:
        if not hasattr(self, "ep_return"):
            n = self.num_envs
            self.ep_return = np.zeros(n)
            self.ep_env_return = np.zeros(n)
            self.ep_length = np.zeros(n, dtype=np.int64)
            self.ep_success = np.zeros(n, dtype=bool)
            self.ep_terms: dict[str, np.ndarray] = {}
        self.ep_return[rows] = 0.0
        self.ep_env_return[rows] = 0.0
        self.ep_length[rows] = 0
        self.ep_success[rows] = False
        for sums in self.ep_terms.values():
            sums[rows] = 0.0

    def _with_success(self, batch: dict[str, Any], prev: RawBatch | None) -> StateView:
        """Evaluate the success test on ``batch`` and store it as the ``success`` field."""
        batch["success"] = np.asarray(self.task.success(StateView(self.task.view, batch, prev)), dtype=bool)
        return StateView(self.task.view, batch, prev)

    def reset(self, batch: dict[str, Any], rows: np.ndarray) -> StateView:
        """Environments ``rows`` (indices) were reset into the rows of ``batch`` (a full batch)."""
        state = self._with_success(batch, None)
        if self.prev_raw is None or len(rows) == self.num_envs:
            self.prev_raw = {k: np.array(v, copy=True) for k, v in batch.items()}
        else:
            for k, v in batch.items():
                self.prev_raw[k][rows] = v[rows]
        self._reset_stats(rows)
        self.source.on_episode_start(rows)
        self.last_state = state
        return state

    def step(self, batch: dict[str, Any], action: Any, resetting: np.ndarray | None
             ) -> tuple[np.ndarray, Terms, np.ndarray]:
        """One batch step. ``resetting``: bool ``(B,)`` of envs whose step was an autoreset.

        Returns ``(reward (B,), terms {name: (B,)}, success (B,))`` as numpy arrays; rows
        that were resetting get reward 0 and zero terms.
        """
        prev = self.prev_raw
        if resetting is not None and resetting.any():
            rows = np.flatnonzero(resetting)
            for k, v in batch.items():  # a resetting env's "previous" state is its reset state
                prev[k][rows] = v[rows]
            active = ~resetting
        else:
            active = None
        state = self._with_success(batch, prev)
        success = batch["success"]
        if active is None:
            reward, terms = self.source.compute(state, action)
            reward = _to_numpy(reward)
            terms = {k: _to_numpy(v) for k, v in terms.items()}
        else:
            reward = np.zeros(self.num_envs)
            terms = {name: np.zeros(self.num_envs) for name in self.term_names}
            if active.any():
                sub = StateView(self.task.view, select_rows(batch, active), select_rows(prev, active))
                sub_reward, sub_terms = self.source.compute(sub, action[active])
                reward[active] = _to_numpy(sub_reward)
                for name, value in sub_terms.items():
                    terms.setdefault(name, np.zeros(self.num_envs))[active] = _to_numpy(value)
            self.source.on_episode_start(np.flatnonzero(resetting))
            self._reset_stats(np.flatnonzero(resetting))
        if set(terms) != set(self.term_names):
            for name in terms:
                if name not in self.ep_terms:
                    self.ep_terms[name] = np.zeros(self.num_envs)
            self.term_names = list(terms)
        # Episode statistics (resetting rows were zeroed above and stay zero this step).
        self.ep_return += reward
        if active is None:
            self.ep_env_return += batch["env_reward"]
            self.ep_length += 1
            self.ep_success |= success
        else:
            self.ep_env_return += np.where(active, batch["env_reward"], 0.0)
            self.ep_length += active
            self.ep_success |= success & active
        for name, value in terms.items():
            self.ep_terms[name] += value
        self.prev_raw = batch
        self.last_state = state
        return reward, terms, success

    def episode_stats(self, row: int) -> dict[str, Any]:
        """Statistics of the episode that just ended in env ``row``."""
        return {
            "return": float(self.ep_return[row]),
            "env_return": float(self.ep_env_return[row]),
            "length": int(self.ep_length[row]),
            "success": bool(self.ep_success[row]),
            "final_success": bool(self.prev_raw["success"][row]),
            "terms": {name: float(sums[row]) for name, sums in self.ep_terms.items()},
        }


def find_task_env(env: gym.Env) -> TaskEnv | None:
    """The :class:`TaskEnv` under ``env``'s wrappers (e.g. domain randomisation), or None."""
    while not isinstance(env, TaskEnv):
        if not isinstance(env, gym.Wrapper):
            return None
        env = env.env
    return env


def _as_batch_action(action: Any, space: gym.Space) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        return np.asarray(action, dtype=np.float64).reshape(1, *space.shape)
    return np.asarray(action).reshape(1, *np.shape(action))


class RewardInjection(gym.Wrapper):
    """Replace a task env's reward with a reward source's (single environment).

    Args:
        env: a :class:`TaskEnv` (possibly under further wrappers that keep ``raw_state``).
        source: the reward source (see :func:`rewardgym.rewards.source.resolve_reward`).

    The returned reward is a Python float; ``info`` is described in the module docstring.
    """

    def __init__(self, env: gym.Env, source: RewardSource):
        super().__init__(env)
        task_env = find_task_env(env)
        if task_env is None:
            raise TypeError("RewardInjection needs a rewardgym TaskEnv underneath")
        self.task_env: TaskEnv = task_env
        self.task: TaskSpec = task_env.task
        self.source = source
        self.computer = RewardComputer(self.task, source, 1)

    @property
    def state(self) -> StateView | None:
        """The :class:`StateView` (batch of 1) of the latest step or reset."""
        return self.computer.last_state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info.pop("state", None)
        state = self.computer.reset(stack_raw([self.task_env.raw_state()]), np.arange(1))
        info["success"] = bool(state.success[0])
        return obs, info

    def step(self, action: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info.pop("state", None)
        batch = stack_raw([self.task_env.raw_state()])
        reward, terms, success = self.computer.step(batch, _as_batch_action(action, self.action_space), None)
        info["env_reward"] = float(env_reward)
        info["reward_terms"] = {k: float(v[0]) for k, v in terms.items()}
        info["success"] = bool(success[0])
        if terminated or truncated:
            info["episode_stats"] = self.computer.episode_stats(0)
        return obs, float(reward[0]), terminated, truncated, info


class VectorRewardInjection(VectorWrapper):
    """Replace a vector env's rewards with a reward source's, computed once per batch.

    Args:
        env: a ``SyncVectorEnv`` or ``AsyncVectorEnv`` whose sub-envs are
            :class:`TaskEnv` s of one task. With ``AsyncVectorEnv`` the sub-envs must have
            ``state_in_info=True`` (the raw rows travel in ``info["state"]``).
        task: the task.
        source: the reward source.
    """

    def __init__(self, env: VectorEnv, task: TaskSpec, source: RewardSource):
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"VectorRewardInjection supports autoreset_mode=NEXT_STEP (Gymnasium's "
                             f"default), got {mode}")
        self.task = task
        self.source = source
        self.computer = RewardComputer(task, source, self.num_envs)
        sub_envs = getattr(env, "envs", None)
        # Sync fast path: read rows straight from the sub-envs' TaskEnvs, no info round trip.
        task_envs = [find_task_env(e) for e in sub_envs] if sub_envs is not None else [None]
        self._direct = all(e is not None for e in task_envs)
        self._sub_envs: list[TaskEnv] = task_envs if self._direct else []
        self._resetting = np.zeros(self.num_envs, dtype=bool)
        self._all = np.ones(self.num_envs, dtype=bool)
        action_space = env.single_action_space
        self._continuous = isinstance(action_space, gym.spaces.Box)

    @property
    def state(self) -> StateView | None:
        """The :class:`StateView` (batch of ``num_envs``) of the latest step or reset."""
        return self.computer.last_state

    def _rows(self, info: dict) -> dict[str, Any]:
        if self._direct:
            return stack_raw([e.raw_state() for e in self._sub_envs])
        state = info.pop("state", None)
        info.pop("_state", None)
        if state is None:
            raise RuntimeError("sub-environments must report info['state'] (TaskEnv(state_in_info=True)) "
                               "when they are not directly reachable (AsyncVectorEnv)")
        batch = {}
        for key, value in state.items():
            if key.startswith("_"):
                continue
            batch[key] = value if not isinstance(value, np.ndarray) or value.dtype != object \
                else value.copy()
        return batch

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        batch = self._rows(info)
        rows = np.arange(self.num_envs)
        if options is not None and "reset_mask" in options:
            rows = np.flatnonzero(options["reset_mask"])
        state = self.computer.reset(batch, rows)
        self._resetting[:] = False
        info["success"] = np.asarray(state.success, dtype=bool).copy()
        info["_success"] = self._all.copy()
        return obs, info

    def step(self, actions: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        batch = self._rows(info)
        action = np.asarray(actions, dtype=np.float64) if self._continuous else np.asarray(actions)
        resetting = self._resetting if self._resetting.any() else None
        reward, terms, success = self.computer.step(batch, action, resetting)
        env_reward = np.where(self._resetting, 0.0, np.asarray(env_reward, dtype=np.float64))
        info["env_reward"] = env_reward
        info["reward_terms"] = terms
        info["success"] = success
        info["_env_reward"] = info["_reward_terms"] = info["_success"] = self._all
        done = np.logical_or(terminated, truncated)
        if done.any():
            rows = np.flatnonzero(done)
            stats = {"return": np.zeros(self.num_envs), "env_return": np.zeros(self.num_envs),
                     "length": np.zeros(self.num_envs, dtype=np.int64),
                     "success": np.zeros(self.num_envs, dtype=bool),
                     "final_success": np.zeros(self.num_envs, dtype=bool),
                     "terms": {name: np.zeros(self.num_envs) for name in self.computer.term_names}}
            for row in rows:
                one = self.computer.episode_stats(int(row))
                for key in ("return", "env_return", "length", "success", "final_success"):
                    stats[key][row] = one[key]
                for name, value in one["terms"].items():
                    stats["terms"][name][row] = value
            info["episode_stats"] = stats
            info["_episode_stats"] = done.copy()
        self._resetting = done.copy()
        return obs, reward, terminated, truncated, info
