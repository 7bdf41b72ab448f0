"""Coverage: the transitions a reward is judged on, and rewards evaluated on mixed triples.

A :class:`Coverage` holds ``n`` real transitions ``(s_i, a_i, s'_i)`` of a task as raw rows
(the simulator readings the state view's fields are computed from; see
:mod:`rewardgym.envs.view`), with the trajectory each belongs to. It comes from rollouts of
the real task (:func:`collect_coverage`: random actions by default, or any batch policy
such as a trained run's), read through the public injection path with a recording reward
source, so what a reward sees here is exactly what it sees in training.

The distributions of :mod:`rewardgym.analysis.distance` are built from it:

* ``D`` (transitions): uniform over the ``n`` coverage transitions;
* ``D_S`` (states): uniform over the pool of states the transitions start or end in;
* ``D_A`` (actions): uniform over the ``n`` actions taken.

A **state is a whole raw row**. Fields that belong to an episode rather than to a moment —
a goal, a target, an initial position — travel with the state they were read with: in a
mixed triple ``(s, a, s')`` of two different episodes, ``state.goal_pos`` is the goal of
``s'``'s episode and ``state.prev.goal_pos`` that of ``s``'s. So every state a reward sees
is a state the task can be in; what is new is only the pairing, which is what EPIC's
canonicalisation asks for.

Rewards are evaluated batch-first, in chunks, through :meth:`RewardSource.compute` — for
an untrusted program that is its sandboxed worker with its usual time and memory limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np

from rewardgym.envs.view import StateView, active_rows, raw_batch, read_only
from rewardgym.rewards.source import RewardSource

__all__ = ["Coverage", "collect_coverage", "evaluate_on_triples", "MAX_TRANSITIONS"]

MAX_TRANSITIONS = 1_000_000
"""The most transitions one coverage set may hold (its raw rows live in memory)."""

BatchPolicy = Callable[[Any], Any]
"""``observations (B, ...) -> actions (B, ...)`` of a vector env."""


@dataclass
class Coverage:
    """``n`` transitions of one task over a pool of ``P`` states, batch-first.

    A state that ends one transition and starts the next is stored once, so ``P`` is about
    ``n`` plus the number of trajectories.

    Attributes:
        states: the state pool, raw rows ``{key: (P, ...)}``.
        prev: ``(n,)`` pool index of each ``s_i``.
        next: ``(n,)`` pool index of each ``s'_i``.
        actions: ``(n, *action_shape)`` the actions taken.
        trajectory: ``(n,)`` int, which trajectory (episode of one env) transition ``i`` is in.
        step: ``(n,)`` int, its index within that trajectory (0 for the first step).
        sources: how each part was collected (``"random x 2048 (seed 0)"``).
    """

    states: dict[str, np.ndarray]
    prev: np.ndarray
    next: np.ndarray
    actions: np.ndarray
    trajectory: np.ndarray
    step: np.ndarray
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def pool_size(self) -> int:
        return len(self.states["env_reward"])

    @property
    def success(self) -> np.ndarray:
        """``(n,)`` bool: the task's success test on each ``s'_i``."""
        return np.asarray(self.states["success"], dtype=bool)[self.next]

    @classmethod
    def concatenate(cls, parts: Sequence["Coverage"]) -> "Coverage":
        """One coverage set from several of the same task (indices and trajectory ids kept distinct)."""
        if not parts:
            raise ValueError("the coverage set is empty: give at least one source of transitions")
        keys = set(parts[0].states)
        for part in parts[1:]:
            if set(part.states) != keys:
                raise ValueError("coverage sets of different tasks cannot be combined (their state readings differ)")
        pools = np.cumsum([0] + [p.pool_size for p in parts[:-1]])
        trajectories = np.cumsum([0] + [int(p.trajectory.max(initial=-1)) + 1 for p in parts[:-1]])
        return cls(states={k: np.concatenate([p.states[k] for p in parts]) for k in keys},
                   prev=np.concatenate([p.prev + off for p, off in zip(parts, pools)]),
                   next=np.concatenate([p.next + off for p, off in zip(parts, pools)]),
                   actions=np.concatenate([p.actions for p in parts]),
                   trajectory=np.concatenate([p.trajectory + off for p, off in zip(parts, trajectories)]),
                   step=np.concatenate([p.step for p in parts]),
                   sources=[s for p in parts for s in p.sources])


class _Recorder(RewardSource):
    """A reward source that pays 0 and keeps every active transition, each state once."""

    name = "coverage"

    def __init__(self, num_envs: int):
        self.rows: list[dict[str, np.ndarray]] = []  # chunks of the state pool
        self.size = 0  # states in the pool
        self.prev: list[np.ndarray] = []
        self.next: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.trajectory: list[np.ndarray] = []
        self.step: list[np.ndarray] = []
        self.count = 0
        self._current = np.full(num_envs, -1, dtype=np.int64)  # pool index of each env's state; -1: not stored
        self._episode = np.full(num_envs, -1, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._next_id = 0

    def on_episode_start(self, env_indices: np.ndarray) -> None:
        env_indices = np.asarray(env_indices, dtype=np.int64)
        self._episode[env_indices] = self._next_id + np.arange(len(env_indices))
        self._next_id += len(env_indices)
        self._steps[env_indices] = 0
        self._current[env_indices] = -1

    def _store(self, batch: Any, rows: np.ndarray) -> np.ndarray:
        """Append ``rows`` of ``batch`` to the pool; their pool indices."""
        self.rows.append({k: np.array(np.asarray(batch[k])[rows]) for k in batch if k != "active"})
        index = self.size + np.arange(len(rows))
        self.size += len(rows)
        return index

    def compute(self, state: StateView, action: Any) -> tuple[Any, dict]:
        envs = np.flatnonzero(np.asarray(active_rows(state), dtype=bool))
        if len(envs):
            fresh = envs[self._current[envs] < 0]  # first step of an episode: its reset state is new
            if len(fresh):
                self._current[fresh] = self._store(raw_batch(state.prev), fresh)
            self.prev.append(self._current[envs].copy())
            self._current[envs] = self._store(raw_batch(state), envs)
            self.next.append(self._current[envs].copy())
            act = action.detach().cpu().numpy() if hasattr(action, "detach") else np.asarray(action)
            self.actions.append(np.array(act[envs]))
            self.trajectory.append(self._episode[envs].copy())
            self.step.append(self._steps[envs].copy())
            self._steps[envs] += 1
            self.count += len(envs)
        return np.zeros(state.batch_size), {}

    def coverage(self, limit: int, source: str) -> Coverage:
        keys = self.rows[0].keys()
        cut = lambda parts: np.concatenate(parts)[:limit]  # noqa: E731
        return Coverage(states={k: np.concatenate([r[k] for r in self.rows]) for k in keys},
                        prev=cut(self.prev), next=cut(self.next), actions=cut(self.actions),
                        trajectory=cut(self.trajectory), step=cut(self.step), sources=[source])


class LazyRows(Mapping):
    """Rows ``index`` of a raw batch, each key gathered (read-only) when first read: a reward
    that reads 2 of 16 raw arrays copies 2."""

    def __init__(self, batch: Mapping[str, np.ndarray], index: np.ndarray):
        self._batch, self._index, self._cache = batch, index, {}

    def __getitem__(self, key: str) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            value = read_only(self._batch[key][self._index])
            self._cache[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch)

    def __len__(self) -> int:
        return len(self._batch)


def collect_coverage(task: Any, transitions: int = 2048, seed: int = 0, policy: BatchPolicy | None = None,
                     num_envs: int = 8, label: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Coverage:
    """``transitions`` real transitions of ``task``: rollouts of ``policy`` (default: uniformly
    random actions from the action space) in ``num_envs`` envs seeded ``seed, seed+1, ...``.

    Args:
        task: a task id or :class:`~rewardgym.envs.task.TaskSpec` (single-agent).
        transitions: how many transitions to keep (at most :data:`MAX_TRANSITIONS`).
        seed: seed of the envs and of the action sampler.
        policy: ``obs (B, ...) -> actions (B, ...)``; None for random actions.
        num_envs: environments stepped side by side.
        label: how this part is described in reports (default ``"random"`` / ``"policy"``).
        progress: called as ``progress(done, total)`` after each vector step.
    """
    from rewardgym.envs.registry import get_task

    spec = get_task(task) if isinstance(task, str) else task
    if getattr(spec, "agents", None):
        raise ValueError(f"task {spec.id} is a multi-agent task; reward analysis covers single-agent tasks")
    if not isinstance(transitions, int) or isinstance(transitions, bool) or not 1 <= transitions <= MAX_TRANSITIONS:
        raise ValueError(f"transitions must be an integer in [1, {MAX_TRANSITIONS}], got {transitions!r}")
    num_envs = max(1, min(int(num_envs), transitions))
    recorder = _Recorder(num_envs)
    env = gym.make_vec(spec.id, num_envs=num_envs, reward=recorder)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        while recorder.count < transitions:
            action = env.action_space.sample() if policy is None else np.asarray(policy(obs))
            obs, *_ = env.step(action)
            if progress is not None:
                progress(min(recorder.count, transitions), transitions)
    finally:
        env.close()
    name = label or ("random" if policy is None else "policy")
    return recorder.coverage(transitions, f"{name} x {transitions} (seed {seed})")


def evaluate_on_triples(source: RewardSource, spec: Any, states: Mapping[str, np.ndarray], actions: np.ndarray,
                        prev: np.ndarray, action_index: np.ndarray, next_: np.ndarray, chunk: int = 65536,
                        terms: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``R(states[prev[j]], actions[action_index[j]], states[next_[j]])`` for every ``j``, in chunks.

    Args:
        source: the reward (a program runs in its sandboxed worker, with its limits).
        spec: the task's :class:`~rewardgym.envs.view.ViewSpec`.
        states: the state pool (:attr:`Coverage.states`).
        actions: the actions the triples' ``action_index`` points into.
        prev, action_index, next_: ``(L,)`` indices of the triples.
        chunk: rows per call (bounds the memory of one call).
        terms: also return the source's terms (else ``{}``).

    Returns:
        ``(reward (L,), {term: (L,)})`` as float64.
    """
    out = np.empty(len(prev), dtype=np.float64)
    term_out: dict[str, np.ndarray] = {}
    chunk = min(chunk, max(256, CHUNK_BYTES // _row_bytes(states)))  # a NetHack row is ~10 kB, a Fetch row ~150 B
    for start in range(0, len(prev), chunk):
        rows = slice(start, start + chunk)
        state = StateView(spec, LazyRows(states, next_[rows]), LazyRows(states, prev[rows]))
        reward, parts = source.compute(state, read_only(actions[action_index[rows]]))
        out[rows] = _numpy(reward)
        if terms:
            for name, value in parts.items():
                term_out.setdefault(name, np.zeros(len(prev)))[rows] = _numpy(value)
    return out, term_out


CHUNK_BYTES = 32 * 2**20
"""Raw bytes of one state side of one evaluation call: programs' intermediates (a glyph map
as int64 is 4x its raw int16) must fit the worker's memory limit."""


def _row_bytes(states: Mapping[str, np.ndarray]) -> int:
    """Bytes of one raw row (object entries, e.g. message strings, counted as 256)."""
    return max(1, sum(256 if v.dtype == object else v.itemsize * int(np.prod(v.shape[1:])) for v in states.values()))


def _numpy(value: Any) -> np.ndarray:
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
    return np.asarray(value, dtype=np.float64).reshape(-1)
