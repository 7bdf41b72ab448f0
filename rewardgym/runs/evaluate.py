"""Evaluation: success rate and returns of a trained run (``rewardgym eval``, optional video)
or of any batch policy (:func:`evaluate_policy`: exported policies, robustness sweeps).

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
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rewardgym.files import atomic_write_text
from rewardgym.learners.episodes import public
from rewardgym.learners.mappo import marl_policy
from rewardgym.learners.ppo import PPO, PPOConfig
from rewardgym.runs.algorithms import ALGORITHMS, get_algorithm
from rewardgym.runs.directory import RunDir, RunError, latest_checkpoint, reward_for_run, run_copy
from rewardgym.runs.sb3 import load_sb3_model, new_sb3_model, single_env_for_sb3
from rewardgym.runs.train import load_ppo_checkpoint


class RunPolicy:
    """Deterministic actions from a run's checkpoint, whatever the algorithm.

    Args:
        run: the run directory.
        env: an env of the run's task (PPO: a vector env or one env; its spaces size the networks;
            IPPO and MAPPO: the task's agent vector env).
        unsafe_pickle: accept checkpoints that only load by unpickling (older runs you made).
    """

    def __init__(self, run: RunDir, env: gym.vector.VectorEnv, unsafe_pickle: bool = False):
        config = run.config()
        self.algo = config.get("algo")
        try:
            algorithm = get_algorithm(self.algo, f"{run.config_path}: algo")
        except ValueError as exc:
            raise RunError(str(exc)) from None
        ckpt = latest_checkpoint(run, self.algo, final=True)
        if ckpt is None:
            raise RunError(f"{run.path} has no checkpoint (expected {run.checkpoint_dir / 'final.pt'})")
        hyper = config.get("hyperparams", {})
        if not isinstance(hyper, dict):
            raise RunError(f"{run.config_path}: hyperparams must be a table")
        if algorithm.learner == "ppo":
            payload = load_ppo_checkpoint(ckpt, config["task"], unsafe_pickle, algo=self.algo)
            try:
                # a vector env (eval: the agent vector env of IPPO/MAPPO) or one env (export)
                space = getattr(env, "single_observation_space", env.observation_space)
                cfg = PPOConfig.for_space(space, {**hyper, "num_envs": getattr(env, "num_envs", 1),
                                                  "seed": config.get("seed", 0), "device": "cpu"},
                                          source=str(run.config_path))
            except ValueError as exc:
                raise RunError(str(exc)) from None
            self.agent = PPO(env, cfg, policy=marl_policy(self.algo, env) if algorithm.multi_agent else None)
            try:
                self.agent.load_policy(payload["agent"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise RunError(f"{ckpt}: checkpoint does not fit the run's policy ({type(exc).__name__}: "
                               f"{str(exc)[:300]})") from None
            self.agent.global_step = int(payload["global_step"])  # env steps the policy trained for
        else:
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
    return {"mean": float(arr.mean()), "std": float(arr.std())} if arr.size else {"mean": float("nan"), "std": 0.0}


def run_policy(run_path: str | Path, task_id: str, num_envs: int = 1) -> RunPolicy:
    """A trained run's deterministic batch policy ``obs (B, ...) -> actions (B, ...)`` for
    ``task_id`` (coverage for ``rewardgym analyze``, demonstrations). The run is data: its
    checkpoint loads as weights only.

    Raises:
        RunError: the run is not readable, or trained another task.
    """
    run = RunDir.open(run_path)
    trained = run.config().get("task")
    if trained != task_id:
        raise RunError(f"{run.path} trained task {str(trained)[:200]!r}, not {task_id!r}")
    spaces_env = gym.make_vec(task_id, num_envs=num_envs)
    try:
        return RunPolicy(run, spaces_env)
    finally:
        spaces_env.close()


def demonstration_policy(run_path: str | Path, task_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """A trained run's deterministic policy as ``obs (obs_dim,) -> action``, for recording
    demonstrations (:func:`rewardgym.perceptual.demos.collect`).

    Raises:
        RunError: the run is not readable, or trained another task.
    """
    policy = run_policy(run_path, task_id)
    return lambda obs: policy(obs[None])[0]


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
    algorithm = ALGORITHMS.get(config.get("algo"))
    if algorithm is not None and algorithm.multi_agent:  # the agent vector env the policy was trained on
        extra["global_state"] = algorithm.global_state
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


# -- any batch policy (exported policies, robustness sweeps) ---------------------------------
BatchPolicy = Callable[[np.ndarray], np.ndarray]
"""``(B, obs_dim)`` float32 observations -> ``(B, act_dim)`` actions."""


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
