"""Stable-Baselines3 interop: train SB3's PPO on a rewardgym task into a rewardgym run directory.

rewardgym envs are plain Gymnasium envs, so SB3 trains on them unchanged; this module only
adds what ``rewardgym train --algo sb3-ppo`` needs so that runs of both algorithms can be
compared file for file: the same ``metrics.jsonl`` columns (from ``info["episode_stats"]``),
atomic checkpoints, the learning-curve plot, and resume.

Checkpoints are *not* SB3's ``model.save`` zips: those hold cloudpickled objects (the
policy class, schedules, spaces), and ``PPO.load`` unpickles them, so a received run could
run code. A rewardgym SB3 checkpoint holds the policy's and optimiser's state dicts and the
step count (tensors and plain containers, loaded with ``weights_only=True``); the model
itself is rebuilt from the run's config and the env.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gymnasium as gym

from rewardgym.learners.episodes import EpisodeWindow
from rewardgym.runs.directory import (RUN_FORMAT, UNSAFE_PICKLE_WARNING, RunDir, RunError, load_checkpoint,
                                   save_checkpoint)


def make_sb3_vec_env(task_id: str, reward: Any, num_envs: int, seed: int, trusted: bool = False,
                     shaping: Any = None, gamma: float | None = None, reward_limits: Any = None,
                     reward_kwargs: dict[str, dict[str, Any]] | None = None, randomize: Any = None):
    """An SB3 ``DummyVecEnv`` of ``gym.make(task_id, reward=..., randomize=...)`` envs, seeded ``seed + i``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    def factory(rank: int) -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            extra = {"shaping": shaping, "gamma": gamma} if shaping is not None else {}
            env = gym.make(task_id, reward=reward, trusted=trusted, reward_limits=reward_limits,
                           reward_kwargs=reward_kwargs, randomize=randomize, **extra)
            env.action_space.seed(seed + rank)
            return env
        return make

    venv = DummyVecEnv([factory(i) for i in range(num_envs)])
    venv.seed(seed)
    return venv


class EpisodeStatsLog(EpisodeWindow):
    """:class:`~rewardgym.learners.episodes.EpisodeWindow` fed from SB3's callback infos."""

    def add_vector_info(self, info: dict[str, Any]) -> None:
        """Gymnasium vector info (arrays + ``_episode_stats`` mask)."""
        if "episode_stats" in info:
            self.add(info["episode_stats"], info["_episode_stats"])

    def add_single_info(self, info: dict[str, Any]) -> None:
        """Single-env info (SB3 VecEnv infos are a list of these)."""
        if "episode_stats" in info:
            self.add(info["episode_stats"])


def sb3_callback(run: RunDir, spec: Any, log: EpisodeStatsLog, on_update: Callable[[dict[str, Any]], None],
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
                save_sb3_checkpoint(self.model, spec, run)
                self._last_ckpt = time.perf_counter()

    return RewardgymCallback()


class _SpacesOnly(gym.Env):
    """Carries the spaces SB3 needs to build a model for inference; never stepped."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("this env only describes spaces (a model built for evaluation)")

    def step(self, action: Any):
        raise RuntimeError("this env only describes spaces (a model built for evaluation)")


def single_env_for_sb3(venv: Any):
    """A one-env SB3 VecEnv with ``venv``'s single spaces, to rebuild a model for inference."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    obs, act = venv.single_observation_space, venv.single_action_space
    return DummyVecEnv([lambda: _SpacesOnly(obs, act)])


# Stable-Baselines3 PPO keyword arguments a run may set, with what each may be. An allow-list:
# SB3 also takes paths (tensorboard_log), classes and callables, which a received config.json
# must never name; sizes are bounded by what a run can be (the rollout buffer, the networks).
SB3_NUMBERS = {"learning_rate": (0.0, 1.0), "n_steps": (1, 1 << 16), "batch_size": (1, 1 << 20),
               "n_epochs": (1, 1_000), "gamma": (0.0, 1.0), "gae_lambda": (0.0, 1.0), "clip_range": (0.0, 10.0),
               "ent_coef": (0.0, 100.0), "vf_coef": (0.0, 100.0), "max_grad_norm": (0.0, 1e6),
               "target_kl": (0.0, 100.0), "sde_sample_freq": (-1, 1 << 16)}
SB3_FLAGS = ("normalize_advantage", "use_sde")
SB3_MAX_WIDTH, SB3_MAX_DEPTH = 4_096, 8


def check_sb3_hyperparams(hyperparams: dict[str, Any], source: str) -> None:
    """Refuse sb3-ppo hyper-parameters outside :data:`SB3_NUMBERS`/:data:`SB3_FLAGS` and a
    ``policy_kwargs`` of ``net_arch`` (at most 8 layers of 4,096) and ``log_std_init`` /
    ``ortho_init``; a ValueError names ``source`` and the key."""
    for key, value in hyperparams.items():
        if key in SB3_NUMBERS:
            low, high = SB3_NUMBERS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{source}: sb3-ppo hyper-parameter {key}={str(value)[:40]!r} must be a number "
                                 f"in [{low:g}, {high:g}]")
        elif key in SB3_FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{source}: sb3-ppo hyper-parameter {key} must be true or false")
        elif key == "policy_kwargs":
            _check_policy_kwargs(value, source)
        else:
            raise ValueError(f"{source}: sb3-ppo hyper-parameter {str(key)[:40]!r} is not one rewardgym passes to "
                             f"Stable-Baselines3 (known: {', '.join(sorted([*SB3_NUMBERS, *SB3_FLAGS]))}, "
                             f"policy_kwargs)")


def _check_policy_kwargs(value: Any, source: str) -> None:
    if not isinstance(value, dict) or set(value) - {"net_arch", "log_std_init", "ortho_init"}:
        raise ValueError(f"{source}: sb3-ppo policy_kwargs takes net_arch, log_std_init and ortho_init only")
    arch = value.get("net_arch", [])
    layers = list(arch.values()) if isinstance(arch, dict) else [arch]
    if isinstance(arch, dict) and set(arch) - {"pi", "vf"}:
        raise ValueError(f"{source}: sb3-ppo net_arch takes a list of widths or {{pi: [...], vf: [...]}}")
    for widths in layers:
        if not isinstance(widths, list) or len(widths) > SB3_MAX_DEPTH or not all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= SB3_MAX_WIDTH for w in widths):
            raise ValueError(f"{source}: sb3-ppo net_arch layers must be at most {SB3_MAX_DEPTH} widths of 1 to "
                             f"{SB3_MAX_WIDTH}")
    log_std = value.get("log_std_init", 0.0)
    if isinstance(log_std, bool) or not isinstance(log_std, (int, float)) or not -20 <= log_std <= 20:
        raise ValueError(f"{source}: sb3-ppo log_std_init must be a number in [-20, 20]")
    if not isinstance(value.get("ortho_init", True), bool):
        raise ValueError(f"{source}: sb3-ppo ortho_init must be true or false")


def new_sb3_model(env: Any, seed: int, device: str, hyperparams: dict[str, Any]):
    """SB3's PPO with an ``MlpPolicy`` for ``env``; bad hyper-parameters are a ValueError."""
    from stable_baselines3 import PPO as SB3PPO

    try:
        return SB3PPO("MlpPolicy", env, seed=seed, device=device, verbose=0, **hyperparams)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"sb3-ppo hyper-parameters: {exc}") from None


def save_sb3_checkpoint(model: Any, spec: Any, run: RunDir, name: str = "latest.pt") -> None:
    """Atomically write the model's state as data: policy and optimiser state dicts, steps."""
    policy = model.policy
    save_checkpoint({"run_format": RUN_FORMAT, "task": spec.task, "reward": spec.reward, "algo": "sb3-ppo",
                      "global_step": int(model.num_timesteps),
                      "policy": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
                      "optimizer": policy.optimizer.state_dict()}, run, name)


def load_sb3_model(model: Any, path: Any, task_id: str, unsafe_pickle: bool = False) -> None:
    """Restore a checkpoint into ``model`` (built by :func:`new_sb3_model` for the run's env).

    A ``.zip`` (SB3's own format, from older rewardgym runs) loads only with
    ``unsafe_pickle``: SB3 unpickles objects stored inside it.
    """
    from pathlib import Path

    path = Path(path)
    if path.suffix == ".zip":
        if not unsafe_pickle:
            raise RunError(f"{path}: an SB3 zip checkpoint; SB3 unpickles objects stored in it, which can run code. "
                           f"If you made this run yourself with an older rewardgym, pass --unsafe-pickle")
        import warnings

        from stable_baselines3 import PPO as SB3PPO

        warnings.warn(f"{path}: {UNSAFE_PICKLE_WARNING}", stacklevel=2)
        loaded = SB3PPO.load(path, device=model.device)
        model.policy.load_state_dict(loaded.policy.state_dict())
        model.policy.optimizer.load_state_dict(loaded.policy.optimizer.state_dict())
        model.num_timesteps = int(loaded.num_timesteps)
        return
    payload = load_checkpoint(path, task_id, "sb3-ppo")
    try:
        model.policy.load_state_dict(payload["policy"])
        model.policy.optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{path}: checkpoint does not fit this run ({type(exc).__name__}: {str(exc)[:300]})") from None
    model.num_timesteps = int(payload["global_step"])
