"""Reward injection: the one place where a reward source meets an environment.

:class:`RewardInjection` wraps a single :class:`~rewardgym.envs.task.TaskEnv`;
:class:`VectorRewardInjection` wraps a Gymnasium vector env of ``TaskEnv`` s (possibly
under further Gymnasium wrappers) and computes the reward once per batch. Both report the
same ``info``:

``info["env_reward"]``     the base environment's own reward, ``()`` / ``(B,)``
``info["reward_terms"]``   ``{term: value}`` as returned by the source, ``()`` / ``(B,)`` each
``info["success"]``        the task's success test on the new state, bool
``info["episode_stats"]``  at episode end only: ``return``, ``env_return``, ``length``,
                           ``success`` (held at any step), ``final_success``, ``terms``
                           (per-term episode sums)

Vector envs follow Gymnasium's conventions: every key has its ``_key`` mask, nested dicts
included (``info["reward_terms"]["_forward"]``, ``info["episode_stats"]["_return"]``), so
``gymnasium.wrappers.vector.DictInfoToList`` and friends compose; ``reset(options=
{"reset_mask": mask})`` resets the statistics of the masked envs only. All of Gymnasium's
autoreset modes work:

* ``NEXT_STEP`` (the default): the step that resets an env returns reward 0, no terms and
  ``env_reward`` 0 for it (its row is *inactive* for the sources);
* ``SAME_STEP``: the final transition's reward is computed from the final state, and the
  reset state becomes the next step's previous state;
* ``DISABLED``: you reset ended envs yourself with ``reset_mask``.

No reward is ever computed from a pair of states on either side of an episode boundary.
Sources always receive all ``B`` rows, row ``i`` being env ``i`` (the batch contract of
:mod:`rewardgym.rewards.source`).

What the wrappers report is computed from data no reward source can touch: the success
test and ``env_reward`` are read before any source runs and kept as private copies; the
raw batch the sources see is read-only; untrusted programs run in a worker process
(:mod:`rewardgym.rewards.worker`). A source cannot fake success, ``env_reward`` or the
episode statistics that training logs and synthesis ranks candidates by.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rewardgym.envs.task import TaskEnv, TaskSpec, raise_non_finite_action, raw_batch_of
from rewardgym.envs.view import RawBatch, StateView, freeze_batch, stack_raw
from rewardgym.rewards.source import RewardSource, Terms

_STAT_KEYS = ("return", "env_return", "length", "success", "final_success")


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if type(x).__module__.startswith("torch") else np.asarray(x)


def with_masks(values: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """``values`` plus Gymnasium's ``_key`` mask for every key (nested dicts too)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = with_masks(value, mask) if isinstance(value, dict) else value
        out[f"_{key}"] = mask
    return out


class RewardComputer:
    """Batch bookkeeping shared by the single-env and vector wrappers.

    Keeps the previous raw batch (``state.prev``), evaluates the task's success test,
    calls the source on all ``B`` rows, and accumulates per-env episode statistics with
    array operations (no per-row Python).

    On a multi-agent task (one with ``agents``) rewards, terms, ``env_reward`` and their
    episode sums are ``(B, N)``: a team value ``(B,)`` from a source is given to every agent;
    length and success stay ``(B,)``.

    Args:
        task: the task (view spec and success test).
        source: the reward source.
        num_envs: batch size ``B``.
    """

    def __init__(self, task: TaskSpec, source: RewardSource, num_envs: int):
        self.task = task
        self.source = source
        self.num_envs = num_envs
        self.prev_raw: dict[str, Any] | None = None
        self.last_state: StateView | None = None
        self.last_success = np.zeros(num_envs, dtype=bool)
        n = num_envs
        agents = getattr(task, "agents", None)
        self.n_agents: int | None = len(agents) if agents else None
        self.value_shape = (n,) if self.n_agents is None else (n, self.n_agents)
        """Shape of a reward, a term and ``env_reward``: ``(B,)``, or ``(B, N)`` on a multi-agent task."""
        self.ep_return = np.zeros(self.value_shape)
        self.ep_env_return = np.zeros(self.value_shape)
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.ep_success = np.zeros(n, dtype=bool)
        self.ep_terms: dict[str, np.ndarray] = {}

    def close(self) -> None:
        """Release the source's workers and threads."""
        self.source.close()

    def _with_success(self, batch: dict[str, Any], prev: RawBatch | None,
                      active: np.ndarray | None) -> tuple[StateView, np.ndarray]:
        """Evaluate the success test on ``batch``, store it as the ``success`` field (and the
        active mask) and make the batch read-only; returns the view and a private copy of
        success (what is reported)."""
        state = StateView(self.task.view, batch, prev)  # one view: fields the test computes stay cached
        success = np.array(self.task.success(state), dtype=bool)
        batch["success"] = success.copy()
        if active is not None:
            batch["active"] = active
        freeze_batch(batch)
        return state, success

    def start_episodes(self, batch: dict[str, Any], rows: np.ndarray) -> None:
        """Envs ``rows`` (bool ``(B,)``) start an episode in their rows of ``batch`` (a full batch)."""
        if "success" not in batch:  # the reset states' own success test, so state.prev.success is theirs
            self._with_success(batch, None, None)
        if self.prev_raw is None or rows.all():
            self.prev_raw = batch
        else:
            self.prev_raw = _merge_rows(self.prev_raw, batch, rows)
        self.ep_return[rows] = 0.0
        self.ep_env_return[rows] = 0.0
        self.ep_length[rows] = 0
        self.ep_success[rows] = False
        for sums in self.ep_terms.values():
            sums[rows] = 0.0
        self.source.on_episode_start(np.flatnonzero(rows))

    def reset(self, batch: dict[str, Any], rows: np.ndarray) -> StateView:
        """Envs ``rows`` (bool ``(B,)``) were reset into their rows of ``batch`` (a full batch)."""
        state, success = self._with_success(batch, None, None)
        self.last_success = np.where(rows, success, self.last_success)
        self.start_episodes(batch, rows)
        self.last_state = state
        return state

    def step(self, batch: dict[str, Any], action: Any, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, Terms, np.ndarray]:
        """One batch step into the states ``batch``; ``active`` bool ``(B,)`` marks real transitions.

        Inactive rows (Gymnasium's next-step autoreset) are computed as a transition from the
        reset state to itself and then discarded: reward 0, zero terms, no statistics.
        Returns ``(reward (B,), terms {name: (B,)}, success (B,))`` as numpy arrays.
        """
        prev = self.prev_raw
        env_reward = np.array(batch["env_reward"], dtype=np.float64)  # private: what is reported
        all_active = active is None or bool(active.all())
        if not all_active:
            prev = _merge_rows(prev, batch, ~active)  # an inactive row's "previous" state is its reset state
        state, success = self._with_success(batch, prev, None if all_active else active)
        reward, terms = self.source.compute(state, action)
        reward = self._values(reward, "the reward")
        terms = {k: self._values(v, f"term {k!r}") for k, v in terms.items()}
        if not np.isfinite(reward).all():  # each part was finite; a weighted sum can still overflow
            bad = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise FloatingPointError(f"the reward of {self.source!r} is not finite ({reward.flat[bad]} at batch index "
                                     f"{bad // (self.n_agents or 1)}); its parts are finite, so their weighted sum "
                                     f"overflows: use smaller weights")
        if not all_active:
            reward[~active] = 0.0
            env_reward[~active] = 0.0
            for value in terms.values():
                value[~active] = 0.0
        for name in terms:
            if name not in self.ep_terms:
                self.ep_terms[name] = np.zeros(self.value_shape)
        self.ep_return += reward
        self.ep_env_return += env_reward
        if all_active:
            self.ep_length += 1
            self.ep_success |= success
        else:
            self.ep_length += active
            self.ep_success |= success & active
        for name, value in terms.items():
            self.ep_terms[name] += value
        self.prev_raw = batch
        self.last_state = state
        self.last_success = success
        return reward, terms, success

    def _values(self, value: Any, what: str) -> np.ndarray:
        """A source's reward or term as float64 numpy of :attr:`value_shape` (a team value ``(B,)``
        is given to every agent of a multi-agent task; another shape is an error)."""
        arr = np.array(_to_numpy(value), dtype=np.float64)
        if self.n_agents is None or arr.shape == self.value_shape:
            return arr
        if arr.shape == (self.num_envs,):
            return np.repeat(arr[:, None], self.n_agents, axis=1)
        raise ValueError(f"reward source {self.source!r} returned {what} of shape {arr.shape}; a multi-agent task "
                         f"takes ({self.num_envs},) (a team value) or {self.value_shape} (one per agent)")

    def episode_stats(self, done: np.ndarray) -> dict[str, Any]:
        """Statistics of the episodes that just ended in envs ``done`` (bool ``(B,)``), as
        ``(B,)`` arrays (zero elsewhere; ``return``, ``env_return`` and the per-term episode
        sums in ``terms`` are ``(B, N)`` on a multi-agent task)."""
        def ended(values: np.ndarray) -> np.ndarray:
            return np.where(done.reshape(done.shape + (1,) * (values.ndim - 1)), values, 0.0)

        return {"return": ended(self.ep_return),
                "env_return": ended(self.ep_env_return),
                "length": np.where(done, self.ep_length, 0),
                "success": self.ep_success & done,
                "final_success": self.last_success & done,
                "terms": {name: ended(sums) for name, sums in self.ep_terms.items()}}


def _merge_rows(dst: RawBatch, src: RawBatch, rows: np.ndarray) -> dict[str, Any]:
    """A new raw batch: ``src``'s rows ``rows`` (bool or indices) over ``dst`` (neither is written).

    Every key of ``dst`` is kept: one ``src`` lacks (``success``, which a step computes only after
    the merge) keeps ``dst``'s values, so ``state.prev.success`` exists on every step."""
    out: dict[str, Any] = {}
    for key, value in dst.items():
        merged = np.array(value, copy=True)
        if key in src:
            merged[rows] = src[key][rows]
        out[key] = merged
    return freeze_batch(out)


def _as_batch_action(action: Any, space: gym.Space) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        return np.asarray(action, dtype=np.float64).reshape(1, *space.shape)
    return np.asarray(action).reshape(1, *np.shape(action))


def find_task_env(env: gym.Env) -> TaskEnv:
    """The :class:`TaskEnv` under any stack of Gymnasium wrappers, or a TypeError saying what is there."""
    inner = env
    while not isinstance(inner, TaskEnv):
        if not isinstance(inner, gym.Wrapper):
            raise TypeError(f"reward injection needs a rewardgym TaskEnv underneath; found {type(env).__name__} "
                            f"wrapping {type(inner).__name__}")
        inner = inner.env
    return inner


class RewardInjection(gym.Wrapper):
    """Replace a task env's reward with a reward source's (single environment).

    Args:
        env: a :class:`TaskEnv` (possibly under further Gymnasium wrappers).
        source: the reward source (see :func:`rewardgym.rewards.resolve.resolve_reward`).

    The returned reward is a Python float; ``info`` is described in the module docstring.
    """

    def __init__(self, env: gym.Env, source: RewardSource):
        super().__init__(env)
        self.task_env: TaskEnv = find_task_env(env)
        self._task_envs = [self.task_env]
        space = env.action_space  # asked once: through a stack of wrappers it is a chain of properties
        self._box_shape = space.shape if isinstance(space, gym.spaces.Box) else None
        self.task: TaskSpec = self.task_env.task
        self.source = source
        self.computer = RewardComputer(self.task, source, 1)
        self._one = np.ones(1, dtype=bool)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.computer.close()

    @property
    def state(self) -> StateView | None:
        """The :class:`StateView` (batch of 1) of the latest step or reset."""
        return self.computer.last_state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info.pop("state", None)
        state = self.computer.reset(raw_batch_of(self._task_envs), self._one)
        info["success"] = bool(state.success[0])
        return obs, info

    def step(self, action: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info.pop("state", None)
        batch = raw_batch_of(self._task_envs)
        if self._box_shape is not None:
            batch_action = np.asarray(action, dtype=np.float64).reshape(1, *self._box_shape)
        else:
            batch_action = _as_batch_action(action, self.action_space)
        reward, terms, success = self.computer.step(batch, batch_action)
        info["env_reward"] = float(env_reward)
        info["reward_terms"] = {k: float(v[0]) for k, v in terms.items()}
        info["success"] = bool(success[0])
        if terminated or truncated:
            stats = self.computer.episode_stats(self._one)
            info["episode_stats"] = {**{k: stats[k][0].item() for k in _STAT_KEYS},
                                     "terms": {k: float(v[0]) for k, v in stats["terms"].items()}}
        return obs, float(reward[0]), terminated, truncated, info


class VectorRewardInjection(VectorWrapper):
    """Replace a vector env's rewards with a reward source's, computed once per batch.

    Args:
        env: a ``SyncVectorEnv`` or ``AsyncVectorEnv`` whose sub-envs are :class:`TaskEnv` s of
            one task, each possibly under further Gymnasium wrappers. With ``AsyncVectorEnv``
            the sub-envs must have ``state_in_info=True`` (the raw rows travel in ``info``).
            Any autoreset mode (module docstring).
        task: the task.
        source: the reward source.
    """

    def __init__(self, env: VectorEnv, task: TaskSpec, source: RewardSource):
        super().__init__(env)
        self.mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        self.task = task
        self.source = source
        self.computer = RewardComputer(task, source, self.num_envs)
        sub_envs = getattr(env, "envs", None)
        # In-process (SyncVectorEnv): read rows from each sub-env's TaskEnv, under any wrappers.
        self._task_envs: list[TaskEnv] | None = [find_task_env(e) for e in sub_envs] if sub_envs is not None else None
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._all = np.ones(self.num_envs, dtype=bool)
        self._continuous = isinstance(env.single_action_space, gym.spaces.Box)
        # Sub-envs that get the batch's rows unchanged (TaskEnvs directly under SyncVectorEnv)
        # leave the finiteness check of actions to one check of the batch here.
        self._check_actions = self._continuous and self._task_envs is not None \
            and all(find_task_env(e) is e for e in sub_envs)
        if self._check_actions:
            for e in self._task_envs:
                e.actions_checked = True

    def close(self, **kwargs: Any) -> None:
        try:
            super().close(**kwargs)
        finally:
            self.computer.close()

    @property
    def state(self) -> StateView | None:
        """The :class:`StateView` (batch of ``num_envs``) of the latest step or reset."""
        return self.computer.last_state

    def _rows(self, info: dict) -> dict[str, Any]:
        """The raw rows of the envs' current states."""
        if self._task_envs is not None:
            info.pop("state", None)
            info.pop("_state", None)
            return raw_batch_of(self._task_envs)
        return _rows_from_info(info.pop("state", None), info.pop("_state", None), self.num_envs)

    def _final_rows(self, info: dict, batch: dict[str, Any], done: np.ndarray) -> dict[str, Any]:
        """``batch`` with the rows of envs ``done`` replaced by their final states (same-step autoreset)."""
        if self._task_envs is not None:
            return stack_raw([e.final_raw_state() if d else e.raw_state() for e, d in zip(self._task_envs, done)])
        final_info = info.get("final_info", {})
        final = _rows_from_info(final_info.pop("state", None), final_info.pop("_state", None), self.num_envs)
        return _merge_rows(batch, final, done)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        options = dict(options) if options is not None else None
        mask = options.get("reset_mask") if options is not None else None  # read before SyncVectorEnv pops it
        rows = self._all.copy() if mask is None else np.asarray(mask, dtype=bool).copy()
        obs, info = self.env.reset(seed=seed, options=options)
        state = self.computer.reset(self._rows(info), rows)
        self._autoreset[rows] = False
        info["success"] = np.asarray(state.success, dtype=bool).copy()
        info["_success"] = self._all.copy()
        return obs, info

    def step(self, actions: Any):
        action = np.asarray(actions, dtype=np.float64) if self._continuous else np.asarray(actions)
        if self._check_actions and not np.isfinite(action).all():
            bad = int(np.flatnonzero(~np.isfinite(action).reshape(len(action), -1).all(axis=1))[0])
            raise_non_finite_action(self.task.id, np.asarray(actions)[bad])
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        batch = self._rows(info)
        done = np.logical_or(terminated, truncated)
        if self.mode == AutoresetMode.NEXT_STEP:
            resetting = self._autoreset
            if resetting.any():
                self.computer.start_episodes(batch, resetting)
            reward, terms, success = self.computer.step(batch, action, ~resetting)
            self._autoreset = done.copy()
        else:  # SAME_STEP (the final state is this step's) or DISABLED (you reset)
            reset_batch = batch
            if self.mode == AutoresetMode.SAME_STEP and done.any():
                batch = self._final_rows(info, batch, done)
            reward, terms, success = self.computer.step(batch, action)
        info["env_reward"] = np.asarray(env_reward, dtype=np.float64)  # 0 on next-step autoreset rows already
        info["reward_terms"] = with_masks(terms, self._all)
        info["success"] = success
        info["_env_reward"] = info["_reward_terms"] = info["_success"] = self._all
        if done.any():
            info["episode_stats"] = with_masks(self.computer.episode_stats(done), done)
            info["_episode_stats"] = done.copy()
            if self.mode == AutoresetMode.SAME_STEP:
                self.computer.start_episodes(reset_batch, done)
        return obs, reward, terminated, truncated, info


def _rows_from_info(state: Any, mask: Any, num_envs: int) -> dict[str, Any]:
    """Raw rows that sub-envs sent through ``info["state"]`` (``TaskEnv(state_in_info=True)``)."""
    if state is None:
        raise RuntimeError("sub-environments out of process (AsyncVectorEnv) must report their raw state in "
                           "info['state']: build them with TaskEnv(state_in_info=True), as gym.make_vec does")
    batch = {}
    for key, value in state.items():
        if key.startswith("_"):
            continue
        batch[key] = value if not isinstance(value, np.ndarray) or value.dtype != object else value.copy()
    return batch
