"""``rewardgym train``: train an agent on a task with an injected reward into a run directory.

Two algorithms write the same run-directory layout (:mod:`rewardgym.agents.runs`):
``ppo`` (rewardgym's own, :mod:`rewardgym.agents.ppo`) and ``sb3-ppo``
(Stable-Baselines3's). A run is resumable: checkpoints are written atomically every
``checkpoint_every_s`` seconds, at the end, and on Ctrl-C; ``resume(run)`` continues from
the last checkpoint and drops the metrics logged after it.
"""

from __future__ import annotations

import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym

import rewardgym
from rewardgym.agents.runs import RunDir, RunError, atomic_write_bytes
from rewardgym.envs.registry import get_task

ALGOS = ("ppo", "sb3-ppo")


class TrainingInterrupted(Exception):
    """Ctrl-C during training; a checkpoint was saved and the run can be resumed."""

    def __init__(self, run: RunDir, global_step: int):
        super().__init__(f"interrupted at step {global_step}; checkpoint saved. Resume with: "
                         f"rewardgym train --resume {run.path}")
        self.run = run
        self.global_step = global_step


@dataclass
class TrainSpec:
    """What to train (the resolved form is written to ``config.json``).

    Attributes:
        task: task id.
        reward: the ``reward=`` spec as a string (``"expert"``, ``"sparse + 0.1*r.py"`` ...).
        steps: total env steps (all envs together).
        algo: ``"ppo"`` or ``"sb3-ppo"``.
        num_envs: environments in the vector env.
        seed: seed of envs, networks and samplers.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``ppo`` only; SB3 uses its own default).
        hyperparams: algorithm hyper-parameters (validated by the algorithm).
        asynchronous: one process per env.
        track: ``None``, ``"tensorboard"`` or ``"wandb"``.
        trusted: run reward program files without the sandbox.
        checkpoint_every_s: seconds between periodic checkpoints.
        shaping: potential-based shaping (``"expert"``, a program path with
            ``compute_potential``, a perceptual model ``.pt`` or a trained run directory),
            applied with the agent's own gamma.
        intrinsic: ``None`` or ``"oni"``: add ONI's learned intrinsic reward (term ``oni``)
            to ``reward`` (:mod:`rewardgym.intrinsic`); its label store and stats live in
            the run directory, so a resumed run re-uses its labels.
        oni: :class:`rewardgym.intrinsic.OniOptions` fields (model, annotator, beta, goal ...).
        randomize: domain randomisation of the training envs
            (:mod:`rewardgym.wrappers.randomize`, ``key -> value | [low, high]``), or None.
    """

    task: str
    reward: str = "expert"
    steps: int = 100_000
    algo: str = "ppo"
    num_envs: int = 8
    seed: int = 0
    device: str = "auto"
    hyperparams: dict[str, Any] = field(default_factory=dict)
    asynchronous: bool = False
    track: str | None = None
    trusted: bool = False
    checkpoint_every_s: float = 60.0
    shaping: str | None = None
    intrinsic: str | None = None
    oni: dict[str, Any] = field(default_factory=dict)
    randomize: dict[str, Any] | None = None

    def to_config(self) -> dict[str, Any]:
        return {"task": self.task, "reward": self.reward, "steps": self.steps, "algo": self.algo,
                "num_envs": self.num_envs, "seed": self.seed, "device": self.device,
                "hyperparams": self.hyperparams, "asynchronous": self.asynchronous, "track": self.track,
                "trusted": self.trusted, "checkpoint_every_s": self.checkpoint_every_s, "shaping": self.shaping,
                "intrinsic": self.intrinsic, "oni": self.oni, "randomize": self.randomize,
                "rewardgym_version": rewardgym.__version__}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TrainSpec":
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in config.items() if k in keys})


@contextmanager
def _sigint_flag() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the training loop polls (a second one aborts)."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread: no handler, Ctrl-C behaves as usual
        pass
    try:
        yield flag
    finally:
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


def _copy_reward_files(spec: TrainSpec, run: RunDir) -> None:
    """Copy reward program and perceptual model files (reward and shaping) into the run
    so that eval reproduces the reward."""
    tokens = spec.reward.replace("*", " ").replace("+", " ").split() + ([spec.shaping] if spec.shaping else [])
    for token in tokens:
        path = Path(token)
        if token.endswith((".py", ".pt")) and path.is_file():
            shutil.copy2(path, run.path / path.name)


class Tracker:
    """Optional TensorBoard / Weights & Biases logging beside metrics.jsonl."""

    def __init__(self, kind: str | None, run: RunDir, config: dict[str, Any]):
        self.kind = kind
        self._writer = None
        self._wandb = None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run.path / "tensorboard"))
        elif kind == "wandb":
            import os

            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")  # offline unless the user configured it
            self._wandb = wandb.init(project="rewardgym", dir=str(run.path), name=run.path.name,
                                     config=config, resume="allow", id=run.path.name)
        elif kind is not None:
            raise ValueError(f"--track takes 'tensorboard' or 'wandb', got {kind!r}")

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["global_step"])
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "global_step"}
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.finish()


def train(spec: TrainSpec, runs_root: str | Path = "runs", run_name: str | None = None,
          on_update: Callable[[dict[str, Any]], None] | None = None) -> RunDir:
    """Train into a new run directory; returns it. See :func:`resume` to continue one."""
    if spec.algo not in ALGOS:
        raise ValueError(f"unknown algorithm {spec.algo!r}; choose one of {', '.join(ALGOS)}")
    task = get_task(spec.task)
    spec.task = task.id
    # Fail on a bad reward or bad hyper-parameters before creating anything on disk.
    _check_intrinsic(spec)
    if spec.randomize is not None:
        from rewardgym.wrappers.randomize import RandomizationConfig

        spec.randomize = RandomizationConfig.from_dict(spec.randomize).to_dict()
    rewardgym.resolve_reward(_reward_spec(spec), task, trusted=spec.trusted)
    if spec.shaping:
        from rewardgym.rewards.shaping import resolve_potential

        resolve_potential(spec.shaping, task, trusted=spec.trusted)
    if spec.algo == "ppo":
        from rewardgym.agents.ppo import PPOConfig

        PPOConfig.from_dict(_ppo_dict(spec), source="hyper-parameters")
    run = RunDir.create(runs_root, spec.to_config(), name=run_name)
    _copy_reward_files(spec, run)
    return _run(spec, run, resume_from=None, on_update=on_update)


def resume(run_path: str | Path, on_update: Callable[[dict[str, Any]], None] | None = None) -> RunDir:
    """Continue an interrupted run from its last checkpoint."""
    run = RunDir.open(run_path)
    spec = TrainSpec.from_config(run.config())
    checkpoint = run.latest_checkpoint if spec.algo == "ppo" else run.checkpoint_dir / "latest.zip"
    if not checkpoint.is_file():
        raise RunError(f"{run.path} has no checkpoint to resume from (expected {checkpoint})")
    return _run(spec, run, resume_from=checkpoint, on_update=on_update)


def _ppo_dict(spec: TrainSpec) -> dict[str, Any]:
    return {**spec.hyperparams, "num_envs": spec.num_envs, "seed": spec.seed, "device": spec.device}


def _run(spec: TrainSpec, run: RunDir, resume_from: Path | None,
         on_update: Callable[[dict[str, Any]], None] | None) -> RunDir:
    tracker = Tracker(spec.track, run, spec.to_config())
    callbacks = [tracker.log] + ([on_update] if on_update else [])

    def notify(row: dict[str, Any]) -> None:
        for cb in callbacks:
            cb(row)

    try:
        with _intrinsic_rewards(spec, run):
            if spec.algo == "ppo":
                _train_ppo(spec, run, resume_from, notify)
            else:
                _train_sb3(spec, run, resume_from, notify)
    finally:
        tracker.close()
        run.plot_learning_curve()
    return run


def _make_env(spec: TrainSpec, gamma: float) -> gym.vector.VectorEnv:
    shaping = {"shaping": spec.shaping, "gamma": gamma} if spec.shaping else {}
    return gym.make_vec(spec.task, num_envs=spec.num_envs, reward=_reward_spec(spec),
                        asynchronous=spec.asynchronous, trusted=spec.trusted, randomize=spec.randomize, **shaping)


def _reward_names_oni(reward: str) -> bool:
    return "oni" in reward.replace("*", " ").replace("+", " ").replace("-", " ").split()


def _uses_oni(spec: TrainSpec) -> bool:
    return spec.intrinsic == "oni" or _reward_names_oni(spec.reward)


def _reward_spec(spec: TrainSpec) -> str:
    """The reward string the envs get: ``reward`` plus ``oni`` with ``intrinsic="oni"``."""
    if spec.intrinsic == "oni" and not _reward_names_oni(spec.reward):
        return f"{spec.reward} + oni"
    return spec.reward


def _check_intrinsic(spec: TrainSpec) -> None:
    if spec.intrinsic not in (None, "oni"):
        raise ValueError(f"unknown intrinsic reward {spec.intrinsic!r}; --intrinsic takes 'oni'")
    if _uses_oni(spec):
        from rewardgym.intrinsic.oni import OniOptions, validate

        validate(OniOptions.from_dict(spec.oni))


@contextmanager
def _intrinsic_rewards(spec: TrainSpec, run: RunDir) -> Iterator[None]:
    """ONI's options for the envs built inside (label store and stats in the run directory)."""
    if not _uses_oni(spec):
        yield
        return
    from rewardgym.intrinsic.oni import OniOptions, close_all, oni_options

    options = {"store_path": str(run.path / "oni_labels.sqlite"), "stats_path": str(run.path / "oni_stats.json"),
               "transcript_path": str(run.path / "oni_llm_transcript.jsonl"), **spec.oni}
    try:
        with oni_options(OniOptions.from_dict(options)):
            yield
    finally:
        close_all()  # stops the annotation and trainer threads, writes the final stats


def save_ppo_checkpoint(agent, spec: TrainSpec, run: RunDir, name: str = "latest.pt") -> Path:
    """Atomically write the agent's full state plus what identifies the run."""
    import io

    import torch

    from rewardgym.agents.runs import RUN_FORMAT

    buffer = io.BytesIO()
    torch.save({"run_format": RUN_FORMAT, "task": spec.task, "reward": spec.reward,
                "rewardgym_version": rewardgym.__version__, "algo": "ppo",
                "global_step": int(agent.global_step), "agent": agent.state_dict()}, buffer)
    path = run.checkpoint_dir / name
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_ppo_checkpoint(path: Path, task_id: str) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to ``task_id`` and this rewardgym."""
    import torch

    from rewardgym.agents.runs import RUN_FORMAT

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise RunError(f"{path}: not a readable rewardgym checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("run_format") != RUN_FORMAT:
        raise RunError(f"{path}: checkpoint format {payload.get('run_format') if isinstance(payload, dict) else '?'}"
                       f" is not supported by this rewardgym (expects {RUN_FORMAT})")
    if payload.get("task") != task_id:
        raise RunError(f"{path}: checkpoint is for task {payload.get('task')!r}, not {task_id!r}")
    return payload


def _train_ppo(spec: TrainSpec, run: RunDir, resume_from: Path | None,
               notify: Callable[[dict[str, Any]], None]) -> None:
    from rewardgym.agents.ppo import PPO, PPOConfig

    config = PPOConfig.from_dict(_ppo_dict(spec), source=str(run.config_path))
    env = _make_env(spec, config.gamma)
    try:
        agent = PPO(env, config)
        if resume_from is not None:
            payload = load_ppo_checkpoint(resume_from, spec.task)
            agent.load_state_dict(payload["agent"])
            run.truncate_metrics(int(agent.global_step))
        last_ckpt = time.perf_counter()
        with _sigint_flag() as flag:
            def callback(metrics: dict[str, Any]) -> bool:
                nonlocal last_ckpt
                row = {k: v for k, v in metrics.items()}
                if _uses_oni(spec):  # annotation backlog, labels, coverage beside the training metrics
                    from rewardgym.intrinsic.oni import metrics as oni_metrics

                    row.update(oni_metrics())
                run.append_metrics([row])
                notify(row)
                if time.perf_counter() - last_ckpt >= spec.checkpoint_every_s:
                    save_ppo_checkpoint(agent, spec, run)
                    last_ckpt = time.perf_counter()
                return not flag["stop"]

            if spec.steps > int(agent.global_step):
                agent.learn(spec.steps, callback=callback)  # an absolute target: same LR schedule on resume
            save_ppo_checkpoint(agent, spec, run)
            if flag["stop"]:
                raise TrainingInterrupted(run, int(agent.global_step))
        save_ppo_checkpoint(agent, spec, run, name="final.pt")
    finally:
        env.close()


def _train_sb3(spec: TrainSpec, run: RunDir, resume_from: Path | None,
               notify: Callable[[dict[str, Any]], None]) -> None:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.logger import Logger

    from rewardgym.agents.sb3 import EpisodeStatsLog, make_sb3_vec_env, save_sb3_checkpoint, sb3_callback

    gamma = float(spec.hyperparams.get("gamma", 0.99))  # SB3 PPO's default discount
    env = make_sb3_vec_env(spec.task, _reward_spec(spec), spec.num_envs, spec.seed, trusted=spec.trusted,
                           shaping=spec.shaping, gamma=gamma, randomize=spec.randomize)
    try:
        device = "cpu" if spec.device == "auto" else spec.device
        if resume_from is not None:
            model = SB3PPO.load(resume_from, env=env, device=device)
            run.truncate_metrics(int(model.num_timesteps))
        else:
            try:
                model = SB3PPO("MlpPolicy", env, seed=spec.seed, device=device, verbose=0, **spec.hyperparams)
            except TypeError as exc:
                raise ValueError(f"sb3-ppo hyper-parameters: {exc}") from None
        model.set_logger(Logger(folder=None, output_formats=[]))  # no stray SB3-* folders in /tmp
        from rewardgym.rewards.shaping import check_agent_gamma

        check_agent_gamma(env.envs[0], model.gamma)
        log = EpisodeStatsLog()
        with _sigint_flag() as flag:
            callback = sb3_callback(run, log, notify, spec.checkpoint_every_s)
            stop = _StopOnFlag(flag)
            remaining = spec.steps - int(model.num_timesteps)
            if remaining > 0:
                model.learn(remaining, callback=[callback, stop], reset_num_timesteps=False)
            save_sb3_checkpoint(model, run)
            if flag["stop"]:
                raise TrainingInterrupted(run, int(model.num_timesteps))
        save_sb3_checkpoint(model, run, name="final.zip")
    finally:
        env.close()


def _StopOnFlag(flag: dict[str, bool]):  # noqa: N802 - a factory that reads like the class it makes
    from stable_baselines3.common.callbacks import BaseCallback

    class StopOnFlag(BaseCallback):
        def _on_step(self) -> bool:
            return not flag["stop"]

    return StopOnFlag()


def summarize_run(run: RunDir) -> dict[str, Any]:
    """Last metrics row and the run's config, for printing."""
    rows = run.metrics()
    return {"config": run.config(), "last": rows[-1] if rows else {}}


__all__ = ["ALGOS", "TrainSpec", "TrainingInterrupted", "load_ppo_checkpoint", "resume", "save_ppo_checkpoint",
           "summarize_run", "train"]
