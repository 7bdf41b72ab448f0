"""``rewardgym eval``: success rate and returns of a trained run, and an optional video.

Episodes run with the deterministic policy on fresh seeds (``seed, seed+1, ...``), with
the run's own reward injected (program files are read from the copies inside the run
directory), so the numbers are comparable across runs and algorithms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.agents.runs import RunDir, RunError, atomic_write_text


def _run_copy(run: RunDir, token: str) -> str:
    """``token`` with a program/model path replaced by the run's own copy when the original is gone."""
    core = token.split("*")[-1]
    if core.endswith((".py", ".pt")) and not Path(core).is_file() and (run.path / Path(core).name).is_file():
        return token.replace(core, str(run.path / Path(core).name))
    return token


def reward_for_run(run: RunDir) -> str:
    """The run's reward spec with program paths pointing at the run's own copies."""
    return " ".join(_run_copy(run, token) for token in str(run.config()["reward"]).split(" "))


class RunPolicy:
    """Deterministic actions from a run's checkpoint, whatever the algorithm."""

    def __init__(self, run: RunDir, env: gym.vector.VectorEnv):
        config = run.config()
        self.algo = config["algo"]
        if self.algo == "ppo":
            from rewardgym.agents.ppo import PPO, PPOConfig
            from rewardgym.agents.train import load_ppo_checkpoint

            ckpt = run.checkpoint_dir / "final.pt"
            ckpt = ckpt if ckpt.is_file() else run.latest_checkpoint
            if not ckpt.is_file():
                raise RunError(f"{run.path} has no checkpoint (expected {ckpt})")
            payload = load_ppo_checkpoint(ckpt, config["task"])
            hyper = {**config.get("hyperparams", {}), "num_envs": 1, "seed": config["seed"], "device": "cpu"}
            self.agent = PPO(env, PPOConfig.from_dict(hyper, source=str(run.config_path)))
            self.agent.load_policy(payload["agent"])
            self.agent.global_step = int(payload.get("global_step", 0))  # env steps the policy trained for
        elif self.algo == "sb3-ppo":
            from stable_baselines3 import PPO as SB3PPO

            ckpt = run.checkpoint_dir / "final.zip"
            ckpt = ckpt if ckpt.is_file() else run.checkpoint_dir / "latest.zip"
            if not ckpt.is_file():
                raise RunError(f"{run.path} has no checkpoint (expected {ckpt})")
            self.agent = SB3PPO.load(ckpt, device="cpu")
        else:
            raise RunError(f"{run.config_path}: unknown algo {self.algo!r}")

    def __call__(self, obs: Any) -> np.ndarray:
        action, _ = self.agent.predict(obs, deterministic=True)
        return np.asarray(action)


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std())}


def evaluate(run_path: str | Path, episodes: int = 10, seed: int = 10_000, video: bool = False,
             max_video_frames: int = 1000) -> dict[str, Any]:
    """Evaluate a run; writes ``eval.json`` (and ``video.mp4`` of the first episode)."""
    run = RunDir.open(run_path)
    config = run.config()
    shaping = {}
    if config.get("shaping"):  # the same reward the agent trained on, shaping term included
        gamma = float(config.get("hyperparams", {}).get("gamma", 0.99))
        shaping = {"shaping": _run_copy(run, config["shaping"]), "gamma": gamma}
    env = gym.make_vec(config["task"], num_envs=1, reward=reward_for_run(run),
                       trusted=bool(config.get("trusted", False)),
                       render_mode="rgb_array" if video else None, **shaping)
    policy = RunPolicy(run, env)
    sub_envs = getattr(env.unwrapped, "envs", None)
    fps = int(sub_envs[0].metadata.get("render_fps", 30)) if sub_envs else 30
    results: dict[str, list[float]] = {"return": [], "env_return": [], "length": [], "success": []}
    terms: dict[str, list[float]] = {}
    frames: list[np.ndarray] = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            while True:
                if video and episode == 0 and len(frames) < max_video_frames:
                    frame = env.render()
                    frames.append(np.asarray(frame[0] if isinstance(frame, (tuple, list)) else frame))
                obs, _, terminated, truncated, info = env.step(policy(obs))
                if terminated[0] or truncated[0]:
                    stats = info["episode_stats"]
                    for key in results:
                        results[key].append(float(stats[key][0]))
                    for name, value in stats["terms"].items():
                        terms.setdefault(name, []).append(float(value[0]))
                    break
    finally:
        env.close()
    report = {
        "run": str(run.path), "task": config["task"], "reward": config["reward"], "algo": config["algo"],
        "episodes": episodes, "seed": seed,
        "success_rate": float(np.mean(results["success"])),
        "return": _mean_std(results["return"]), "env_return": _mean_std(results["env_return"]),
        "length": _mean_std(results["length"]),
        "terms": {name: _mean_std(values) for name, values in terms.items()},
    }
    if video and frames:
        import imageio.v2 as imageio

        out = run.path / "video.mp4"
        tmp = run.path / ".video.tmp.mp4"
        imageio.mimsave(tmp, frames, fps=fps, macro_block_size=1)
        tmp.replace(out)
        report["video"] = str(out)
    atomic_write_text(run.path / "eval.json", json.dumps(report, indent=2) + "\n")
    return report

