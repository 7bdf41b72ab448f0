"""The statistics of recently finished episodes, as arrays: what ``metrics.jsonl`` averages.

Vector envs report finished episodes in ``info["episode_stats"]`` as ``(B,)`` arrays with a
``_episode_stats`` mask (:mod:`rewardgym.wrappers.inject`); :class:`EpisodeWindow` keeps the
last ``size`` of them in ring buffers filled with array operations (no per-row Python), and
is shared by rewardgym's PPO and the Stable-Baselines3 adapter.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_KEYS = ("return", "env_return", "length", "success")


def public(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without Gymnasium's ``_key`` masks."""
    return {k: v for k, v in values.items() if not k.startswith("_")}


class EpisodeWindow:
    """The last ``size`` finished episodes: return, env return, length, success and per-term sums.

    Args:
        size: episodes kept (older ones drop out).
    """

    def __init__(self, size: int = 100):
        self.size = int(size)
        self.count = 0
        self.values = {k: np.zeros(0) for k in _KEYS}
        self.terms: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.values["return"])

    def add(self, stats: Mapping[str, Any], mask: Any = None) -> None:
        """Append the episodes ``mask`` selects from a vector ``info["episode_stats"]`` (or, with
        ``mask=None``, one single-env ``info["episode_stats"]`` of scalars)."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool)) if mask is not None else None

        def take(value: Any) -> np.ndarray:
            arr = np.asarray(value, dtype=np.float64)
            return arr[rows] if rows is not None else arr.reshape(1)

        new = {k: take(stats[k]) for k in _KEYS}
        n = len(new["return"])
        if n == 0:
            return
        terms = public(stats.get("terms", {}))
        for name in set(self.terms) | set(terms):
            old = self.terms.get(name, np.full(len(self), np.nan))  # NaN: the term did not exist then
            add = take(terms[name]) if name in terms else np.full(n, np.nan)
            self.terms[name] = np.concatenate([old, add])[-self.size:]
        for k in _KEYS:
            self.values[k] = np.concatenate([self.values[k], new[k]])[-self.size:]
        self.count += n

    def summary(self) -> dict[str, Any]:
        """Means over the window (None before the first episode) and ``episodes`` (all time)."""
        if not len(self):
            return {"episode_return": None, "env_return": None, "success_rate": None, "episode_length": None,
                    "episodes": self.count}
        out = {"episode_return": float(self.values["return"].mean()),
               "env_return": float(self.values["env_return"].mean()),
               "success_rate": float(self.values["success"].mean()),
               "episode_length": float(self.values["length"].mean()), "episodes": self.count}
        for name, values in self.terms.items():
            seen = values[~np.isnan(values)]
            if seen.size:
                out[f"terms/{name}"] = float(seen.mean())
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain lists (checkpoints load with ``weights_only``)."""
        return {"count": self.count, "values": {k: v.tolist() for k, v in self.values.items()},
                "terms": {k: v.tolist() for k, v in self.terms.items()}}

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict`; also accepts the list of per-episode dicts older checkpoints hold."""
        if isinstance(state, list):  # rewardgym < 0.2: one dict per episode
            for episode in state[-self.size:]:
                self.add({**{k: episode.get(k, 0.0) for k in _KEYS}, "terms": episode.get("terms", {})})
            return
        self.count = int(state["count"])
        self.values = {k: np.asarray(state["values"][k], dtype=np.float64)[-self.size:] for k in _KEYS}
        self.terms = {k: np.asarray(v, dtype=np.float64)[-self.size:] for k, v in state["terms"].items()}
