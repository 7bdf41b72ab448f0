"""``rewardgym train``: train an agent on a task with an injected reward into a run directory.

Two algorithms write the same run-directory layout (:mod:`rewardgym.runs.directory`):
``ppo`` (rewardgym's own, :mod:`rewardgym.learners.ppo`) and ``sb3-ppo``
(Stable-Baselines3's). Multi-agent tasks train one policy shared by their agents with
rewardgym's PPO: ``ippo`` (``ppo`` means the same there) or ``mappo`` (a centralised critic;
:mod:`rewardgym.learners.mappo`); ``steps`` and the logged ``global_step`` count env steps
(``N`` agent transitions each) and ``num_envs`` copies of the task. A run is resumable:
checkpoints are written atomically every ``checkpoint_every_s`` seconds, at the end, on
Ctrl-C and when training stops on an error (a reward program past its limits, diverging
losses); ``resume(run)`` continues from the last checkpoint and drops the metrics logged
after it.

A run directory is data that may come from someone else: checkpoints load with
``torch.load(weights_only=True)`` (tensors and plain containers; nothing is unpickled),
and neither ``trusted`` nor the reward limits are ever read from it: they come from the
person resuming (``resume(run, trusted=..., reward_limits=...)``, CLI options).
"""

from __future__ import annotations

import math
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym

from rewardgym.envs.registry import get_task
from rewardgym.intrinsic.oni import OniOptions, PLACE_FIELDS, validate
from rewardgym.learners.mappo import marl_policy
from rewardgym.learners.occupancy import OccupancyConfig
from rewardgym.learners.ppo import PPO, PPOConfig, TrainingDiverged
from rewardgym.rewards.shaping import check_agent_gamma
from rewardgym.rewards.spec import RewardSpec
from rewardgym.rewards.worker import ProgramLimits, RewardProgramError
from rewardgym.runs.algorithms import ALGORITHMS, get_algorithm
from rewardgym.runs.occupancy import (Reference, make_regularizer, occupancy_options, prepare_reference,
                                      start_from_reference)
from rewardgym.runs.directory import (RUN_FORMAT, RunDir, RunError, latest_checkpoint, load_checkpoint,
                                      reward_for_run, run_copy, save_checkpoint)
from rewardgym.runs.sb3 import (EpisodeStatsLog, check_sb3_hyperparams, load_sb3_model, make_sb3_vec_env,
                                new_sb3_model, save_sb3_checkpoint, sb3_callback)
from rewardgym.threads import limit_process
from rewardgym.version import __version__
from rewardgym.wrappers.make import make_task_env
from rewardgym.wrappers.randomize import RandomizationConfig

ALGOS = tuple(ALGORITHMS)
"""Every ``--algo`` (:data:`rewardgym.runs.algorithms.ALGORITHMS`)."""
MARL_ALGOS = tuple(a.name for a in ALGORITHMS.values() if a.multi_agent)
"""The shared-parameter algorithms of multi-agent tasks (:mod:`rewardgym.learners.mappo`)."""
PPO_ALGOS = tuple(a.name for a in ALGORITHMS.values() if a.learner == "ppo")
"""The algorithms trained by rewardgym's PPO (:mod:`rewardgym.learners.ppo`)."""
MAX_NUM_ENVS = 1024
"""Most environments of a run: each is a simulator in this process (or, ``asynchronous``, a process
of its own), so a received config.json asking for more is refused before any is built."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; a checkpoint was saved and the run can be resumed."""

    def __init__(self, run: RunDir, global_step: int):
        super().__init__(f"interrupted at step {global_step}; checkpoint saved. Resume with: "
                         f"rewardgym train --resume {run.path}")
        self.run = run
        self.global_step = global_step


class TrainingFailed(RuntimeError):
    """Training stopped on an error (the reward program, diverging losses); a checkpoint of
    the last completed update was saved first. ``cause`` is the original error."""

    def __init__(self, run: RunDir, global_step: int, cause: BaseException, saved: bool = True):
        saved_text = "checkpoint saved" if saved else "the last periodic checkpoint is kept"
        super().__init__(f"{cause}\ntraining stopped at step {global_step:,}; {saved_text} in {run.path}. After "
                         f"fixing the cause, resume with: rewardgym train --resume {run.path}")
        self.run = run
        self.global_step = global_step
        self.cause = cause


@dataclass
class TrainSpec:
    """What to train (the resolved form is written to ``config.json``).

    Attributes:
        task: task id.
        reward: the ``reward=`` spec as a string (``"expert"``, ``"sparse + 0.1*r.py"`` ...).
        steps: total env steps (all envs together).
        algo: ``"ppo"`` or ``"sb3-ppo"``; ``"ippo"`` or ``"mappo"`` on multi-agent tasks.
        num_envs: environments in the vector env (copies of a multi-agent task).
        seed: seed of envs, networks and samplers.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``ppo`` only; SB3 uses its own default).
        hyperparams: algorithm hyper-parameters (validated by the algorithm).
        asynchronous: one process per env.
        track: ``None``, ``"tensorboard"`` or ``"wandb"``.
        trusted: run reward program files without the sandbox (never saved in, nor read from,
            the run directory).
        reward_limits: time and memory limits of untrusted reward programs
            (:class:`~rewardgym.rewards.worker.ProgramLimits` fields; never read from a run).
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
        regularize, reference, reg_coef, occupancy, init_from_reference: ORPO (:mod:`rewardgym.runs.occupancy`).
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
    reward_limits: dict[str, Any] = field(default_factory=dict)
    checkpoint_every_s: float = 60.0
    shaping: str | None = None
    intrinsic: str | None = None
    oni: dict[str, Any] = field(default_factory=dict)
    randomize: dict[str, Any] | None = None
    regularize: str | None = None
    reference: str | None = None
    reg_coef: float | None = None
    occupancy: dict[str, Any] = field(default_factory=dict)
    init_from_reference: bool | None = None
    _NOT_SAVED = frozenset({"trusted", "reward_limits"})  # the caller's decisions: never in, nor read from, a run

    def to_config(self) -> dict[str, Any]:  # every field in order, except what a run never holds (from_config)
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__ if k not in self._NOT_SAVED},
                "rewardgym_version": __version__}

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config.json") -> "TrainSpec":
        """The spec a run was created with; ``trusted`` and ``reward_limits`` are never taken
        from it (a received run cannot grant itself trust or lift its limits)."""
        keys = {f for f in cls.__dataclass_fields__} - cls._NOT_SAVED
        spec = cls(**{k: v for k, v in config.items() if k in keys})
        if isinstance(spec.oni, dict):  # files and endpoints are never taken from a run (PLACE_FIELDS)
            spec.oni = {k: v for k, v in spec.oni.items() if k not in PLACE_FIELDS}
        spec.validate(source)
        return spec

    def validate(self, source: str = "the train options") -> None:
        """Types and ranges of what config.json or the command line gave (one-line errors)."""
        checks = [("task", isinstance(self.task, str)), ("reward", isinstance(self.reward, str)),
                  ("steps", _positive_int(self.steps)),
                  ("num_envs", _positive_int(self.num_envs) and self.num_envs <= MAX_NUM_ENVS),
                  ("seed", isinstance(self.seed, int) and not isinstance(self.seed, bool)),
                  ("algo", self.algo in ALGOS), ("device", self.device in ("auto", "cpu", "cuda")),
                  ("hyperparams", isinstance(self.hyperparams, dict)),
                  ("checkpoint_every_s", isinstance(self.checkpoint_every_s, (int, float))
                   and math.isfinite(self.checkpoint_every_s) and self.checkpoint_every_s > 0),
                  ("shaping", self.shaping is None or isinstance(self.shaping, str)),
                  ("oni", isinstance(self.oni, dict)), ("reward_limits", isinstance(self.reward_limits, dict))]
        for key, ok in checks:
            if not ok:
                raise ValueError(f"{source}: {key}={getattr(self, key)!r} is not valid")
        for key, value in self.hyperparams.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{source}: hyper-parameter {key}={value!r} is not finite")
        if ALGORITHMS[self.algo].learner == "sb3":
            check_sb3_hyperparams(self.hyperparams, source)
            rollout = self.hyperparams.get("n_steps", 2048) * self.num_envs
            if rollout > 1 << 22:
                raise ValueError(f"{source}: sb3-ppo n_steps x num_envs = {rollout:,} transitions per rollout; at most "
                                 f"{1 << 22:,}")
        self.occupancy_config(source)

    def occupancy_config(self, source: str = "the train options") -> OccupancyConfig | None:
        """The occupancy regulariser's settings (``occupancy`` with ``coef = reg_coef``), or None."""
        return occupancy_options(self.regularize, self.reference, self.reg_coef, self.occupancy, self.algo, source,
                                 self.init_from_reference)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@contextmanager
def _sigint_flag() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the training loop polls after each update; a second
    one stops at once (KeyboardInterrupt), and the trainer still writes a checkpoint of the
    last completed update before exiting."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["stop"] = True
        sys.stderr.write("\nstopping after this update (Ctrl-C again to stop now)\n")

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
    for name in RewardSpec.of(spec.reward, shaping=spec.shaping).files():
        path = Path(name)
        if name.endswith((".py", ".pt")) and path.is_file():
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

            # offline (files in the run directory, `wandb sync` later) unless the user configured W&B
            configured = os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY")
            self._wandb = wandb.init(project="rewardgym", dir=str(run.path), name=run.path.name,
                                     config=config, resume="allow", id=run.path.name,
                                     mode=None if configured else "offline")
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
    spec.validate()
    task = get_task(spec.task)
    spec.task = task.id
    _check_algo(spec, task)
    # Fail on a bad reward or bad hyper-parameters before creating anything on disk.
    _check_intrinsic(spec)
    _reward_limits(spec)
    if spec.randomize is not None:
        spec.randomize = RandomizationConfig.from_dict(spec.randomize).to_dict()
    reference = prepare_reference(spec, task.id)  # its pairs and policy; its network options into hyperparams
    _agent_gamma(spec)  # the hyper-parameters' types and ranges
    if get_algorithm(spec.algo).learner == "ppo" and not getattr(task, "agents", None):
        # ... and their sizes against the task's observations, before anything exists on disk
        probe = make_task_env(task.id)
        try:
            PPOConfig.for_space(probe.observation_space, _ppo_dict(spec), source="hyper-parameters")
        finally:
            probe.close()
    run = RunDir.create(runs_root, spec.to_config(), name=run_name)
    try:  # the reward is resolved once, here, with the run's own files (ONI's store); a bad one leaves nothing
        _copy_reward_files(spec, run)
        source = _reward(spec, run).resolve(task)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return _run(spec, run, resume_from=None, on_update=on_update, source=source, reference=reference)


def resume(run_path: str | Path, on_update: Callable[[dict[str, Any]], None] | None = None, *,
           trusted: bool = False, reward_limits: dict[str, Any] | None = None,
           unsafe_pickle: bool = False, llm_model: str | None = None, base_url: str | None = None,
           oni_options: dict[str, Any] | None = None) -> RunDir:
    """Continue an interrupted run from its last checkpoint.

    Args:
        trusted: run the run's reward program files without the sandbox (the caller's
            decision: a run directory never grants it).
        reward_limits: limits of untrusted reward programs (default limits otherwise).
        unsafe_pickle: accept a checkpoint that only loads by unpickling (runs made by
            rewardgym before weights-only checkpoints; see :data:`UNSAFE_PICKLE_WARNING`).
        llm_model, base_url: the LLM endpoint of ONI's llm annotator (default: the
            environment's). Never taken from the run: a received run cannot direct the
            caller's key, or its files, anywhere (:data:`rewardgym.intrinsic.oni.PLACE_FIELDS`).
        oni_options: ONI options given on this command line (``--llm-timeout`` ...); they
            replace the run's (places excepted).
    """
    run = RunDir.open(run_path)
    spec = TrainSpec.from_config(run.config(), source=str(run.config_path))
    if _uses_oni(spec):
        spec.oni.update({k: v for k, v in (oni_options or {}).items() if k not in PLACE_FIELDS})
        spec.oni.update({k: v for k, v in (("llm_model", llm_model), ("base_url", base_url)) if v})
    spec.trusted = trusted
    spec.reward_limits = dict(reward_limits or {})
    spec.reward = reward_for_run(run)  # the copies inside the run: resumable from any directory
    if spec.shaping:
        spec.shaping = run_copy(run, spec.shaping)
    checkpoint = latest_checkpoint(run, spec.algo)
    if checkpoint is None:
        raise RunError(f"{run.path} has no checkpoint to resume from (expected {run.latest_checkpoint})")
    source = _reward(spec, run).resolve(get_task(spec.task))
    return _run(spec, run, resume_from=checkpoint, on_update=on_update, unsafe_pickle=unsafe_pickle, source=source)


def _check_algo(spec: TrainSpec, task: Any) -> None:
    """Multi-agent tasks train with ``ippo``/``mappo`` (``ppo`` is IPPO there); single-agent ones do not."""
    if getattr(task, "agents", None):
        if spec.algo == "ppo":
            spec.algo = "ippo"
        if not get_algorithm(spec.algo).multi_agent:
            raise ValueError(f"{task.id} is a multi-agent task: train it with --algo mappo (a centralised critic) or "
                             f"--algo ippo; for Stable-Baselines3, see docs/MULTIAGENT.md (SuperSuit)")
        if spec.randomize is not None:
            raise ValueError(f"{task.id} is a multi-agent task: --randomize (domain randomisation) is supported on "
                             f"single-agent MuJoCo tasks only")
    elif get_algorithm(spec.algo).multi_agent:
        raise ValueError(f"--algo {spec.algo} trains multi-agent tasks; {task.id} has one agent: use ppo")


def _agents_per_env(spec: TrainSpec) -> int:
    """``N``, the agent transitions in one env step of the run's task (1 for single-agent tasks)."""
    return len(getattr(get_task(spec.task), "agents", None) or ()) or 1


def _ppo_dict(spec: TrainSpec) -> dict[str, Any]:
    # a multi-agent task's vector env has one sub-env per agent of each copy
    return {**spec.hyperparams, "num_envs": spec.num_envs * _agents_per_env(spec), "seed": spec.seed,
            "device": spec.device}


def _agent_gamma(spec: TrainSpec) -> float:
    """The discount of the run's agent (shaping must use it); checks the hyper-parameters' types and ranges."""
    if get_algorithm(spec.algo).learner == "ppo":
        return PPOConfig.from_dict(_ppo_dict(spec), source="hyper-parameters").gamma
    return float(spec.hyperparams.get("gamma", 0.99))  # SB3 PPO's default discount


def _reward(spec: TrainSpec, run: RunDir) -> RewardSpec:
    """The run's reward: its expression (plus ``oni`` with ``--intrinsic oni``), trust, shaping
    with the agent's own discount, the program limits, and the kinds' options (ONI's files in
    the run directory)."""
    return RewardSpec.of(_reward_spec(spec), trusted=spec.trusted, shaping=spec.shaping or None,
                         gamma=_agent_gamma(spec) if spec.shaping else None, reward_limits=_reward_limits(spec),
                         reward_kwargs=_reward_kwargs(spec, run))


def _run(spec: TrainSpec, run: RunDir, resume_from: Path | None,
         on_update: Callable[[dict[str, Any]], None] | None, unsafe_pickle: bool = False, *,
         source: Any, reference: Reference | None = None) -> RunDir:
    """Train ``spec`` into ``run`` with the reward ``source`` resolved once by the caller (closed here)
    and what a new run takes from its ``reference`` run (a resume takes its checkpoint's)."""
    try:
        tracker = Tracker(spec.track, run, spec.to_config())
    except BaseException:
        source.close()
        raise
    callbacks = [tracker.log] + ([on_update] if on_update else [])

    def notify(row: dict[str, Any]) -> None:
        for cb in callbacks:
            cb(row)

    try:
        trainer = {"ppo": partial(_train_ppo, reference=reference), "sb3": _train_sb3}[get_algorithm(spec.algo).learner]
        trainer(spec, run, resume_from, notify, unsafe_pickle, source)
    finally:
        tracker.close()
        run.plot_learning_curve()
    return run


def _reward_limits(spec: TrainSpec):
    return ProgramLimits.of(spec.reward_limits or None)


def _make_env(spec: TrainSpec, source: Any) -> gym.vector.VectorEnv:
    """The run's vector env with the already resolved reward ``source`` injected once per batch."""
    extra = {}
    algorithm = get_algorithm(spec.algo)
    if algorithm.multi_agent:  # the agent vector env; MAPPO's critic reads the global state
        extra["global_state"] = algorithm.global_state
    try:
        return gym.make_vec(spec.task, num_envs=spec.num_envs, reward=source, asynchronous=spec.asynchronous,
                            randomize=spec.randomize, **extra)
    except BaseException:
        source.close()
        raise


def _reward_kwargs(spec: TrainSpec, run: RunDir) -> dict[str, dict[str, Any]]:
    """Options of the reward kinds the run uses: ONI keeps its labels and stats in the run directory."""
    if not _uses_oni(spec):
        return {}
    return {"oni": {**spec.oni, "store_path": str(run.path / "oni_labels.sqlite"),
                    "stats_path": str(run.path / "oni_stats.json"),
                    "transcript_path": str(run.path / "oni_llm_transcript.jsonl")}}


def _uses_oni(spec: TrainSpec) -> bool:
    return spec.intrinsic == "oni" or RewardSpec(spec.reward).uses("oni")


def _reward_spec(spec: TrainSpec) -> str:
    """The reward expression the envs get: ``reward`` plus ``oni`` with ``intrinsic="oni"``."""
    reward = RewardSpec(spec.reward)
    return reward.plus("oni").reward if spec.intrinsic == "oni" else reward.reward


def _check_intrinsic(spec: TrainSpec) -> None:
    if spec.intrinsic not in (None, "oni"):
        raise ValueError(f"unknown intrinsic reward {spec.intrinsic!r}; --intrinsic takes 'oni'")
    if _uses_oni(spec):
        validate(OniOptions.from_dict(spec.oni))


def save_ppo_checkpoint(agent, spec: TrainSpec, run: RunDir, name: str = "latest.pt") -> Path:
    """Atomically write the agent's full state plus what identifies the run (tensors and plain
    containers only: it loads with ``weights_only=True``)."""
    return save_checkpoint({"run_format": RUN_FORMAT, "task": spec.task, "reward": spec.reward,
                             "rewardgym_version": __version__, "algo": spec.algo,
                             "global_step": int(agent.global_step) // _agents_per_env(spec),  # env steps
                             "agent": agent.state_dict()}, run, name)


def load_ppo_checkpoint(path: Path, task_id: str, unsafe_pickle: bool = False,
                        algo: str = "ppo") -> dict[str, Any]:
    """:func:`load_checkpoint` of a rewardgym PPO checkpoint of ``algo`` (``ppo``, ``ippo`` or
    ``mappo``; ``payload["agent"]`` is :meth:`~rewardgym.learners.ppo.PPO.state_dict`)."""
    payload = load_checkpoint(path, task_id, algo, unsafe_pickle)
    if not isinstance(payload.get("agent"), dict):
        raise RunError(f"{path}: checkpoint has no agent state")
    return payload


def _train_ppo(spec: TrainSpec, run: RunDir, resume_from: Path | None,
               notify: Callable[[dict[str, Any]], None], unsafe_pickle: bool, source: Any,
               reference: Reference | None = None) -> None:
    base = PPOConfig.from_dict(_ppo_dict(spec), source=str(run.config_path))
    if spec.device != "cuda":  # BLAS pools as small as the learner's (rewardgym.threads)
        limit_process(base.num_threads or 1)
    env = _make_env(spec, source)
    try:  # the hyper-parameters over the defaults of the network these observations get
        config = base if get_algorithm(spec.algo).multi_agent else PPOConfig.for_space(
            env.single_observation_space, _ppo_dict(spec), source=str(run.config_path))
    except BaseException:
        env.close()
        raise
    agents = _agents_per_env(spec)  # PPO counts agent transitions; the run counts env steps

    def env_steps() -> int:
        return int(agent.global_step) // agents

    try:
        payload = load_ppo_checkpoint(resume_from, spec.task, unsafe_pickle, algo=spec.algo) if resume_from else None
        agent = PPO(env, config, policy=marl_policy(spec.algo, env) if get_algorithm(spec.algo).multi_agent else None,
                    regularizer=make_regularizer(spec.occupancy_config(), spec.seed, reference, payload, resume_from))
        start_from_reference(agent, reference)  # a new run's; a resume has none
        if resume_from is not None:
            try:
                agent.load_state_dict(payload["agent"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise RunError(f"{resume_from}: checkpoint does not fit this run ({type(exc).__name__}: "
                               f"{str(exc)[:300]})") from None
            run.truncate_metrics(env_steps())
        last_ckpt = time.perf_counter()
        with _sigint_flag() as flag, _checkpoint_on_failure(lambda: save_ppo_checkpoint(agent, spec, run),
                                                            env_steps, run):
            def callback(metrics: dict[str, Any]) -> bool:
                nonlocal last_ckpt
                row = {k: v for k, v in metrics.items()}
                if agents > 1:  # env steps, as --steps
                    row.update(global_step=env_steps(), agent_steps=int(agent.global_step), fps=row["fps"] / agents)
                row.update(env.source.stats())  # e.g. ONI's annotation backlog, labels, coverage
                run.append_metrics([row])
                notify(row)
                if time.perf_counter() - last_ckpt >= spec.checkpoint_every_s:
                    save_ppo_checkpoint(agent, spec, run)
                    last_ckpt = time.perf_counter()
                return not flag["stop"]

            if spec.steps > env_steps():  # an absolute target: same LR schedule on resume
                agent.learn(spec.steps * agents, callback=callback)
            save_ppo_checkpoint(agent, spec, run)
            if flag["stop"]:
                raise TrainingInterrupted(run, env_steps())
        save_ppo_checkpoint(agent, spec, run, name="final.pt")
    finally:
        env.close()


@contextmanager
def _checkpoint_on_failure(save: Callable[[], Any], step: Callable[[], int], run: RunDir) -> Iterator[None]:
    """On Ctrl-C or an error inside, write a checkpoint of the last completed update first.

    The learner's state only changes at update boundaries (a rollout cut short is discarded),
    so the checkpoint resumes exactly where the last update ended."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        save()
        raise TrainingInterrupted(run, step()) from None
    except (RewardProgramError, TrainingDiverged, FloatingPointError, MemoryError) as exc:
        diverged = isinstance(exc, TrainingDiverged)  # non-finite parameters are not worth resuming from
        if not diverged:
            save()
        raise TrainingFailed(run, step(), exc, saved=not diverged) from exc


def _train_sb3(spec: TrainSpec, run: RunDir, resume_from: Path | None,
               notify: Callable[[dict[str, Any]], None], unsafe_pickle: bool, source: Any) -> None:
    from stable_baselines3.common.logger import Logger  # lazy: SB3 is imported only for sb3-ppo runs

    source.close()  # SB3 steps single envs, each with its own reward: they resolve the same spec
    if spec.device != "cuda":
        limit_process(1)  # SB3's MLPs gain nothing from threads; they collapse on a busy machine
    gamma = float(spec.hyperparams.get("gamma", 0.99))  # SB3 PPO's default discount
    env = make_sb3_vec_env(spec.task, _reward_spec(spec), spec.num_envs, spec.seed, trusted=spec.trusted,
                           shaping=spec.shaping, gamma=gamma, reward_limits=_reward_limits(spec),
                           reward_kwargs=_reward_kwargs(spec, run), randomize=spec.randomize)
    try:
        device = "cpu" if spec.device == "auto" else spec.device
        model = new_sb3_model(env, spec.seed, device, spec.hyperparams)
        if resume_from is not None:
            load_sb3_model(model, resume_from, spec.task, unsafe_pickle)
            run.truncate_metrics(int(model.num_timesteps))
        model.set_logger(Logger(folder=None, output_formats=[]))  # no stray SB3-* folders in /tmp

        check_agent_gamma(env.envs[0], model.gamma)
        log = EpisodeStatsLog()
        with _sigint_flag() as flag, _checkpoint_on_failure(lambda: save_sb3_checkpoint(model, spec, run),
                                                            lambda: int(model.num_timesteps), run):
            callback = sb3_callback(run, spec, log, notify, spec.checkpoint_every_s)
            stop = _StopOnFlag(flag)
            remaining = spec.steps - int(model.num_timesteps)
            if remaining > 0:
                model.learn(remaining, callback=[callback, stop], reset_num_timesteps=False)
            save_sb3_checkpoint(model, spec, run)
            if flag["stop"]:
                raise TrainingInterrupted(run, int(model.num_timesteps))
        save_sb3_checkpoint(model, spec, run, name="final.pt")
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


__all__ = ["ALGOS", "TrainSpec", "TrainingFailed", "TrainingInterrupted", "latest_checkpoint", "load_checkpoint",
           "load_ppo_checkpoint", "resume", "save_ppo_checkpoint", "summarize_run", "train"]
