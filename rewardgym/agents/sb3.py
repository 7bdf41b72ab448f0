"""Stable-Baselines3 interop: train SB3's PPO on a rewardgym task into a rewardgym run directory.

rewardgym envs are plain Gymnasium envs, so SB3 trains on them unchanged; this module only
adds what ``rewardgym train --algo sb3-ppo`` needs so that runs of both algorithms can be
compared file for file: the same ``metrics.jsonl`` columns (from ``info["episode_stats"]``),
atomic checkpoints, the learning-curve plot, and resume.
"""

from __future__ import annotations

import io
import time
from collections import deque
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rewardgym.agents.runs import RunDir, atomic_write_bytes


def make_sb3_vec_env(task_id: str, reward: Any, num_envs: int, seed: int, trusted: bool = False,
                     shaping: Any = None, gamma: float | None = None, randomize: Any = None):
    """An SB3 ``DummyVecEnv`` of ``gym.make(task_id, reward=..., randomize=...)`` envs, seeded ``seed + i``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    def factory(rank: int) -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            extra = {"shaping": shaping, "gamma": gamma} if shaping is not None else {}
            env = gym.make(task_id, reward=reward, trusted=trusted, randomize=randomize, **extra)
            env.action_space.seed(seed + rank)
            return env
        return make

    venv = DummyVecEnv([factory(i) for i in range(num_envs)])
    venv.seed(seed)
    return venv


class EpisodeStatsLog:
    """Rolling window of finished episodes' ``episode_stats`` (return, env return, success, terms)."""

    def __init__(self, window: int = 100):
        self.episodes: deque[dict[str, Any]] = deque(maxlen=window)
        self.count = 0

    def add_vector_info(self, info: dict[str, Any]) -> None:
        """Gymnasium vector info (arrays + ``_episode_stats`` mask)."""
        if "episode_stats" not in info:
            return
        stats, mask = info["episode_stats"], info["_episode_stats"]
        for i in np.flatnonzero(mask):
            self.episodes.append({
                "return": float(stats["return"][i]), "env_return": float(stats["env_return"][i]),
                "length": int(stats["length"][i]), "success": bool(stats["success"][i]),
                "terms": {k: float(v[i]) for k, v in stats["terms"].items()},
            })
            self.count += 1

    def add_single_info(self, info: dict[str, Any]) -> None:
        """Single-env info (SB3 VecEnv infos are a list of these)."""
        if "episode_stats" in info:
            self.episodes.append(info["episode_stats"])
            self.count += 1

    def summary(self) -> dict[str, Any]:
        """Means over the window (None when no episode has finished yet)."""
        if not self.episodes:
            return {"episode_return": None, "env_return": None, "success_rate": None, "episode_length": None,
                    "episodes": self.count}
        eps = list(self.episodes)
        out = {
            "episode_return": float(np.mean([e["return"] for e in eps])),
            "env_return": float(np.mean([e["env_return"] for e in eps])),
            "success_rate": float(np.mean([e["success"] for e in eps])),
            "episode_length": float(np.mean([e["length"] for e in eps])),
            "episodes": self.count,
        }
        for name in eps[-1]["terms"]:
            out[f"terms/{name}"] = float(np.mean([e["terms"].get(name, 0.0) for e in eps]))
        return out


def sb3_callback(run: RunDir, log: EpisodeStatsLog, on_update: Callable[[dict[str, Any]], None],
                 checkpoint_every_s: float):
    """An SB3 callback that logs rewardgym metrics per rollout and checkpoints atomically."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RewardgymCallback(BaseCallback):
        def __init__(self):
            super().__init__()
            self._start = time.perf_counter()
            self._last_ckpt = time.perf_counter()
            self._start_steps = 0

        def _on_training_start(self) -> None:
            self._start = time.perf_counter()
            self._start_steps = self.model.num_timesteps

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                log.add_single_info(info)
            return True

        def _on_rollout_end(self) -> None:
            elapsed = time.perf_counter() - self._start
            row = {"global_step": int(self.model.num_timesteps), "wall_time": elapsed,
                   "fps": (self.model.num_timesteps - self._start_steps) / max(elapsed, 1e-9), **log.summary()}
            for key, value in self.model.logger.name_to_value.items():
                if key.startswith("train/"):
                    row[key.replace("train/", "loss/" if "loss" in key else "train/")] = float(value)
            run.append_metrics([row])
            on_update(row)
            if time.perf_counter() - self._last_ckpt >= checkpoint_every_s:
                save_sb3_checkpoint(self.model, run)
                self._last_ckpt = time.perf_counter()

    return RewardgymCallback()


def save_sb3_checkpoint(model, run: RunDir, name: str = "latest.zip") -> None:
    """``model.save`` into memory, then an atomic write (a kill never leaves half a zip)."""
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(run.checkpoint_dir / name, buffer.getvalue())
