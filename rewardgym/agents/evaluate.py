"""``rewardgym eval``: success rate and returns of a trained run, and an optional video.

Episodes run with the deterministic policy on fresh seeds (``seed, seed+1, ...``), with
the run's own reward injected (program files are read from the copies inside the run
directory), so the numbers are comparable across runs and algorithms. On a multi-agent task
the returns are averaged over the agents (for a team reward, each agent's return is the
team's) and ``agent_return`` reports each agent's.

A run directory may come from anyone: its reward programs run in the sandbox unless the
person evaluating passes ``trusted=True`` (nothing in the run can ask for it), and its
checkpoint loads as data (``weights_only``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.agents.episodes import public
from rewardgym.agents.runs import RunDir, RunError, atomic_write_text, reward_for_run, run_copy


class RunPolicy:
    """Deterministic actions from a run's checkpoint, whatever the algorithm.

    Args:
        run: the run directory.
        env: an env of the run's task (PPO: a vector env or one env; its spaces size the networks;
            IPPO and MAPPO: the task's agent vector env).
        unsafe_pickle: accept checkpoints that only load by unpickling (older runs you made).
    """

    def __init__(self, run: RunDir, env: gym.vector.VectorEnv, unsafe_pickle: bool = False):
        from rewardgym.agents.runs import latest_checkpoint
        from rewardgym.agents.train import ALGOS, PPO_ALGOS

        config = run.config()
        self.algo = config.get("algo")
        if self.algo not in ALGOS:
            raise RunError(f"{run.config_path}: unknown algo {self.algo!r}")
        ckpt = latest_checkpoint(run, self.algo, final=True)
        if ckpt is None:
            raise RunError(f"{run.path} has no checkpoint (expected {run.checkpoint_dir / 'final.pt'})")
        hyper = config.get("hyperparams", {})
        if not isinstance(hyper, dict):
            raise RunError(f"{run.config_path}: hyperparams must be a table")
        if self.algo in PPO_ALGOS:
            from rewardgym.agents.mappo import marl_policy
            from rewardgym.agents.ppo import PPO, PPOConfig
            from rewardgym.agents.train import load_ppo_checkpoint

            payload = load_ppo_checkpoint(ckpt, config["task"], unsafe_pickle, algo=self.algo)
            try:
                # a vector env (eval: the agent vector env of IPPO/MAPPO) or one env (export)
                space = getattr(env, "single_observation_space", env.observation_space)
                cfg = PPOConfig.for_space(space, {**hyper, "num_envs": getattr(env, "num_envs", 1),
                                                  "seed": config.get("seed", 0), "device": "cpu"},
                                          source=str(run.config_path))
            except ValueError as exc:
                raise RunError(str(exc)) from None
            self.agent = PPO(env, cfg, policy=marl_policy(self.algo, env) if self.algo != "ppo" else None)
            try:
                self.agent.load_policy(payload["agent"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise RunError(f"{ckpt}: checkpoint does not fit the run's policy ({type(exc).__name__}: "
                               f"{str(exc)[:300]})") from None
            self.agent.global_step = int(payload["global_step"])  # env steps the policy trained for
        else:
            from rewardgym.agents.sb3 import load_sb3_model, new_sb3_model, single_env_for_sb3

            try:
                self.agent = new_sb3_model(single_env_for_sb3(env), int(config.get("seed", 0)), "cpu", hyper)
            except ValueError as exc:
                raise RunError(f"{run.config_path}: {exc}") from None
            load_sb3_model(self.agent, ckpt, config["task"], unsafe_pickle)

    def __call__(self, obs: Any) -> np.ndarray:
        action, _ = self.agent.predict(obs, deterministic=True)
        return np.asarray(action)


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std())}


def evaluate(run_path: str | Path, episodes: int = 10, seed: int = 10_000, video: bool = False,
             max_video_frames: int = 1000, trusted: bool = False, reward_limits: Any = None,
             unsafe_pickle: bool = False) -> dict[str, Any]:
    """Evaluate a run; writes ``eval.json`` (and ``video.mp4`` of the first episode).

    Args:
        trusted: run the run's reward program files without the sandbox (the caller's decision).
        reward_limits: limits of untrusted reward programs (default limits otherwise).
        unsafe_pickle: accept checkpoints that only load by unpickling (older runs you made).
    """
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    run = RunDir.open(run_path)
    config = run.config()
    extra: dict[str, Any] = {}
    if config.get("shaping"):  # the same reward the agent trained on, shaping term included
        gamma = float(config.get("hyperparams", {}).get("gamma", 0.99))
        extra = {"shaping": run_copy(run, config["shaping"]), "gamma": gamma}
    if config.get("algo") in ("ippo", "mappo"):  # the agent vector env the policy was trained on
        extra["global_state"] = config["algo"] == "mappo"
    env = gym.make_vec(config["task"], num_envs=1, reward=reward_for_run(run), trusted=trusted,
                       reward_limits=reward_limits, render_mode="rgb_array" if video else None, **extra)
    try:
        policy = RunPolicy(run, env, unsafe_pickle)
    except BaseException:
        env.close()
        raise
    sub_envs = getattr(env.unwrapped, "envs", None)
    fps = int(sub_envs[0].metadata.get("render_fps", 30)) if sub_envs else 30
    results: dict[str, list[float]] = {"return": [], "env_return": [], "length": [], "success": []}
    terms: dict[str, list[float]] = {}
    agent_returns: list[np.ndarray] = []  # multi-agent tasks: each agent's return (one row per sub-env)
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
                    stats = info["episode_stats"]  # one copy: its agents' rows (a single row for one agent)
                    for key in results:
                        results[key].append(float(np.mean(stats[key])))
                    for name, value in public(stats["terms"]).items():
                        terms.setdefault(name, []).append(float(np.mean(value)))
                    agent_returns.append(np.asarray(stats["return"], dtype=np.float64))
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
    agents = getattr(env, "agents", None)
    if agents:
        per_agent = np.stack(agent_returns)
        report["agent_return"] = {agent: _mean_std(list(per_agent[:, i])) for i, agent in enumerate(agents)}
    if video and frames:
        import imageio.v2 as imageio

        out = run.path / "video.mp4"
        tmp = run.path / ".video.tmp.mp4"
        imageio.mimsave(tmp, frames, fps=fps, macro_block_size=1)
        tmp.replace(out)
        report["video"] = str(out)
    atomic_write_text(run.path / "eval.json", json.dumps(report, indent=2) + "\n")
    return report

