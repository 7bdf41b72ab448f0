"""Evaluate any batch policy on a task, one episode per environment of a vector env.

Used for exported policies (``rewardgym eval policy.onnx``) and robustness sweeps. Episode
``k`` starts from ``reset(seed=seed + k)`` as in ``rewardgym eval``; up to ``max_envs``
episodes run side by side, and the policy is called once per step for the whole batch.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

BatchPolicy = Callable[[np.ndarray], np.ndarray]
"""``(B, obs_dim)`` float32 observations -> ``(B, act_dim)`` actions."""


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std())} if arr.size else {"mean": float("nan"), "std": 0.0}


def evaluate_policy(policy: BatchPolicy, task: str, episodes: int = 10, seed: int = 10_000, reward: Any = "env",
                    randomize: Any = None, max_envs: int = 16, trusted: bool = False) -> dict[str, Any]:
    """Success rate, returns and lengths of ``episodes`` episodes of ``policy`` on ``task``.

    Args:
        policy: a batch policy (see :data:`BatchPolicy`).
        task: task id.
        episodes: number of episodes.
        seed: episode ``k`` is reset with ``seed + k``.
        reward: the injected reward (``return``); ``env_return`` is always the simulator's own.
        randomize: domain randomisation of the envs (each episode samples its own).
        max_envs: episodes run side by side.
        trusted: run reward program files as trusted code.

    Returns:
        ``{"episodes", "seed", "success_rate", "return", "env_return", "length"`` (mean/std),
        ``"terms"`` (mean/std per term), ``"per_episode"`` (lists)``}``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    rows: dict[str, list[float]] = {"return": [], "env_return": [], "length": [], "success": []}
    terms: dict[str, list[float]] = {}
    done_so_far = 0
    while done_so_far < episodes:
        n = min(max_envs, episodes - done_so_far)
        venv = gym.make_vec(task, num_envs=n, reward=reward, randomize=randomize, trusted=trusted)
        try:
            obs, _ = venv.reset(seed=seed + done_so_far)
            finished = np.zeros(n, dtype=bool)
            while not finished.all():
                obs, _, terminated, truncated, info = venv.step(policy(np.asarray(obs, dtype=np.float32)))
                ended = np.flatnonzero(np.logical_or(terminated, truncated) & ~finished)
                if ended.size:
                    stats = info["episode_stats"]
                    for i in ended:
                        for key in rows:
                            rows[key].append(float(stats[key][i]))
                        for name, value in stats["terms"].items():
                            terms.setdefault(name, []).append(float(value[i]))
                    finished[ended] = True
        finally:
            venv.close()
        done_so_far += n
    return {
        "episodes": episodes, "seed": seed, "reward": str(reward),
        "success_rate": float(np.mean(rows["success"])),
        "return": _mean_std(rows["return"]), "env_return": _mean_std(rows["env_return"]),
        "length": _mean_std(rows["length"]),
        "terms": {name: _mean_std(values) for name, values in terms.items()},
        "per_episode": rows,
    }
