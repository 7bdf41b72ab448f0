"""Demonstrations: camera frames + states of a few successful episodes, in one compact file.

``rewardgym demos collect TASK --episodes N`` records them from the simulator's scripted
expert (Meta-World ships one per task: ``metaworld.policies``) or from a trained run's
deterministic policy (``--from-run RUN``), keeping successful episodes only. Each episode
runs until ``after_success`` steps past the first success step (Sermanet et al. 2016 cut
their videos when the task is done), or the episode limit.

File format (``.npz``, compressed; written atomically): arrays ``frames`` ``(N, H, W, 3)``
uint8, ``obs`` ``(N, obs_dim)`` float32, ``actions`` ``(N, act_dim)`` float32 (the action
taken *from* frame i; zeros on the last frame of an episode), ``episode`` ``(N,)`` int32,
``success`` ``(N,)`` bool (the task's success test at frame i), and ``meta`` (JSON: task,
camera, frame size, source, seeds, format version).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rewardgym.envs.frames import FrameSpec

DEMOS_FORMAT = 1


class DemoError(ValueError):
    """Demonstrations that cannot be collected, read or used (the message names the file)."""


@dataclass
class Demos:
    """A set of demonstrations (see the module docstring for the arrays' shapes)."""

    task: str
    frame_spec: FrameSpec
    frames: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    success: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode)))

    def episodes(self) -> list[np.ndarray]:
        """Frame indices of each episode, in order: ``[array([0..T0-1]), ...]``."""
        return [np.flatnonzero(self.episode == e) for e in np.unique(self.episode)]

    def select(self, episode_ids: list[int] | np.ndarray) -> "Demos":
        """The demos restricted to some episodes (e.g. a held-out split)."""
        keep = np.isin(self.episode, np.asarray(episode_ids))
        return Demos(self.task, self.frame_spec, self.frames[keep], self.obs[keep], self.actions[keep],
                     self.episode[keep], self.success[keep], dict(self.meta))

    def save(self, path: str | Path) -> Path:
        """Write the compressed ``.npz`` atomically (a crash never leaves half a file)."""
        from rewardgym.agents.runs import atomic_write_bytes

        meta = {**self.meta, "format": DEMOS_FORMAT, "task": self.task, "frame_spec": self.frame_spec.as_dict()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=self.frames, obs=self.obs, actions=self.actions, episode=self.episode,
                            success=self.success, meta=np.array(json.dumps(meta)))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Demos":
        """Read a demos file; a missing, foreign or newer-format file is a :class:`DemoError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise DemoError(f"{path}: no such demonstrations file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise DemoError(f"{path}: not a rewardgym demonstrations file ({type(exc).__name__}: {exc})") from None
        missing = {"frames", "obs", "actions", "episode", "success", "meta"} - set(arrays)
        if missing:
            raise DemoError(f"{path}: not a rewardgym demonstrations file (missing arrays: {sorted(missing)})")
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError as exc:
            raise DemoError(f"{path}: the meta array is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DemoError(f"{path}: the meta array must be a JSON object")
        if meta.get("format") != DEMOS_FORMAT:
            raise DemoError(f"{path}: demonstrations format {meta.get('format')!r} is not supported "
                            f"(this rewardgym reads format {DEMOS_FORMAT})")
        frames = arrays["frames"]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DemoError(f"{path}: frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        n = len(frames)
        for key in ("obs", "actions", "episode", "success"):
            if arrays[key].ndim < 1 or len(arrays[key]) != n or arrays[key].dtype.kind not in "biuf":
                raise DemoError(f"{path}: {key} must be numeric with one row per frame ({n}), got shape "
                                f"{arrays[key].shape} {arrays[key].dtype}")
        for key in ("obs", "actions"):
            if arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all():
                raise DemoError(f"{path}: {key} holds non-finite values")
        try:
            return cls(str(meta["task"]), FrameSpec(**meta["frame_spec"]), frames, arrays["obs"], arrays["actions"],
                       arrays["episode"], arrays["success"], meta)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing meta field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise DemoError(f"{path}: not a valid rewardgym demonstrations file ({what})") from None

    def __repr__(self) -> str:
        lengths = [len(ix) for ix in self.episodes()]
        return (f"Demos({self.task}, {self.num_episodes} episodes, {len(self.frames)} frames of "
                f"{self.frame_spec.height}x{self.frame_spec.width} from camera {self.frame_spec.camera!r}, "
                f"lengths {min(lengths)}-{max(lengths)})")


def scripted_policy(task_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """The simulator's scripted expert for ``task_id`` (``obs (obs_dim,) -> action``).

    Raises:
        DemoError: the task's simulator ships no scripted expert (use a trained run instead).
    """
    from rewardgym.envs.registry import get_task

    task = get_task(task_id)
    if task.family == "metaworld":
        from metaworld.policies import ENV_POLICY_MAP

        if task.base_id in ENV_POLICY_MAP:
            policy = ENV_POLICY_MAP[task.base_id]()
            return lambda obs: np.clip(policy.get_action(obs), -1.0, 1.0)
    raise DemoError(f"{task.id}: its simulator ships no scripted expert; record demonstrations from a "
                    f"trained run instead (rewardgym demos collect {task.short_name} --from-run RUN)")


def _run_policy(run_path: str | Path, task_id: str) -> Callable[[np.ndarray], np.ndarray]:
    import gymnasium as gym

    from rewardgym.agents.evaluate import RunPolicy
    from rewardgym.agents.runs import RunDir

    run = RunDir.open(run_path)
    if run.config()["task"] != task_id:
        raise DemoError(f"{run.path} trained task {run.config()['task']!r}, not {task_id!r}")
    spaces_env = gym.make_vec(task_id, num_envs=1)
    policy = RunPolicy(run, spaces_env)
    spaces_env.close()
    return lambda obs: policy(obs[None])[0]


def collect(task_id: str, episodes: int = 10, from_run: str | Path | None = None, size: int = 64,
            camera: str | None = "default", seed: int = 0, after_success: int = 10,
            max_attempts: int | None = None, on_episode: Callable[[int, bool, int], None] | None = None) -> Demos:
    """Record ``episodes`` successful demonstrations of ``task_id``.

    Args:
        task_id: a rewardgym task id.
        episodes: successful episodes to keep.
        from_run: a run directory whose policy demonstrates (default: the scripted expert).
        size: frame height and width in pixels.
        camera: MuJoCo camera name, or ``"default"`` for the family's workspace camera.
        seed: episode ``i`` of the attempts resets with ``seed + i``.
        after_success: frames kept after the first success step.
        max_attempts: give up after this many episodes (default ``3 * episodes``).
        on_episode: progress callback ``(attempt, succeeded, length)``.

    Raises:
        DemoError: no expert for the task, or too few successful episodes.
    """
    import gymnasium as gym

    from rewardgym.envs.registry import get_task

    task = get_task(task_id)
    policy = _run_policy(from_run, task.id) if from_run else scripted_policy(task.id)
    spec = FrameSpec.for_family(task.family, size=size, camera=camera)
    env = gym.make(task.id, reward="sparse")
    task_env = env.get_wrapper_attr("task_env").require(frames=spec)  # RewardInjection.task_env
    buffers: dict[str, list] = {k: [] for k in ("frames", "obs", "actions", "episode", "success")}
    kept, attempts = 0, 0
    max_attempts = max_attempts or 3 * episodes
    try:
        while kept < episodes and attempts < max_attempts:
            obs, info = env.reset(seed=seed + attempts)
            ep: dict[str, list] = {k: [] for k in buffers}
            first_success = None
            t = 0
            while True:
                action = np.asarray(policy(obs), dtype=np.float32)
                ep["frames"].append(task_env.raw_state()["frame"])
                ep["obs"].append(np.asarray(obs, dtype=np.float32))
                ep["success"].append(bool(info.get("success", False)))
                obs, _, terminated, truncated, info = env.step(action)
                ep["actions"].append(action)
                t += 1
                if info["success"] and first_success is None:
                    first_success = t
                done = terminated or truncated or (first_success is not None and t >= first_success + after_success)
                if done:
                    ep["frames"].append(task_env.raw_state()["frame"])
                    ep["obs"].append(np.asarray(obs, dtype=np.float32))
                    ep["success"].append(bool(info["success"]))
                    ep["actions"].append(np.zeros_like(action))
                    break
            attempts += 1
            succeeded = first_success is not None
            if on_episode is not None:
                on_episode(attempts, succeeded, t)
            if not succeeded:
                continue
            ep["episode"] = [kept] * len(ep["frames"])
            for key in buffers:
                buffers[key].extend(ep[key])
            kept += 1
    finally:
        env.close()
    if kept < episodes:
        raise DemoError(f"{task.id}: only {kept} of {attempts} demonstration episodes succeeded "
                        f"(wanted {episodes}); the demonstrator is not good enough")
    return Demos(task.id, spec, np.stack(buffers["frames"]), np.stack(buffers["obs"]),
                 np.stack(buffers["actions"]), np.asarray(buffers["episode"], dtype=np.int32),
                 np.asarray(buffers["success"], dtype=bool),
                 {"source": f"run:{from_run}" if from_run else "scripted", "seed": seed, "attempts": attempts,
                  "after_success": after_success})
