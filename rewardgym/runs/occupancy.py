"""Occupancy-regularised training in a run (``rewardgym train --regularize occupancy --reference
RUN_DIR --reg-coef λ``; ``TrainSpec(regularize="occupancy", reference=..., reg_coef=...,
occupancy={...})``): the options' checks, the reference's state-action pairs, and the
regulariser of a new or a resumed run. The method itself: :mod:`rewardgym.learners.occupancy`.

The reference run is *data* (docs/SECURITY.md): it is opened with :meth:`RunDir.open` (a
directory with ``config.json``, no link out of it), only its own ``checkpoints/final.pt`` (else
``latest.pt``) is read, after a size check, with ``torch.load(weights_only=True)`` through the
run loader every other command uses, and nothing in it is executed: its reward programs are not
even loaded (the rollout injects no reward). It must be a rewardgym PPO run of the same task.

Which pairs: the reference policy acts for ``reference_transitions`` real transitions (autoreset
steps excluded) in ``min(8, N)`` envs of the task reset with ``seed``, sampling its Gaussian
(``reference_policy="stochastic"``, the default: the occupancy of the policy as it was trained,
which an agent can match) or taking its mean action (``"deterministic"``). Observations are the
env's raw ones; actions are what the env received (clipped to the bounds; one-hot for
``Discrete``), as the regulariser records the agent's (:mod:`rewardgym.learners.occupancy`).
Sampling draws from a torch generator seeded with ``seed``, so the bank is a function of the run,
the task, the options and the seed. The bank is then stored in every checkpoint of the new run:
``--resume`` never reads the reference run again.

Starting from the reference (``--init-from-reference``, ``TrainSpec.init_from_reference``; on by
default with ``--regularize occupancy``, as in the paper, where the agent starts from the safe
policy it is regularised towards; ``--no-init-from-reference`` starts from scratch; it may also be
given without ``--regularize``, for the unregularised baseline of a fair comparison): a new run's
PPO takes the reference checkpoint's actor-critic weights and observation statistics (the same
weights-only load), not its optimiser, reward statistics, generator or step count. The network
options the weights need (``hidden_sizes``, ``activation``, ``norm_obs``) are taken from the
reference checkpoint into the run's hyper-parameters (so a resume builds the same network); one
given differently is a one-line error, and so is any tensor whose shape does not fit this run's
policy. A resume takes its weights from its own checkpoint and never reads the reference again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dataclasses import dataclass

from rewardgym.learners.occupancy import OccupancyConfig, OccupancyError, OccupancyRegularizer, action_features
from rewardgym.learners.ppo import PPO, PPOConfig
from rewardgym.envs.registry import get_task
from rewardgym.runs.algorithms import ALGORITHMS
from rewardgym.runs.directory import RunDir, RunError, latest_checkpoint, load_checkpoint

MAX_REFERENCE_CHECKPOINT_BYTES = 512 * 2**20
"""Largest reference checkpoint read (a (1024, 1024) MLP with its optimiser is ~60 MB)."""


NETWORK_KEYS = ("hidden_sizes", "activation", "norm_obs")
"""PPO options that decide the policy network's tensors: taken from the reference when starting from it."""


@dataclass
class Reference:
    """What a new run takes from its ``--reference`` run: the regulariser's state-action ``pairs``
    (``--regularize occupancy``) and the ``policy`` state to start from (``--init-from-reference``)."""

    pairs: tuple[np.ndarray, np.ndarray] | None = None
    policy: dict[str, Any] | None = None
    where: str = "--reference"


def init_from_reference(init: Any, regularize: Any) -> bool:
    """``--init-from-reference`` resolved: ``None`` (not given) means on exactly with ``--regularize``."""
    return regularize is not None if init is None else bool(init)


def occupancy_options(regularize: Any, reference: Any, reg_coef: Any, occupancy: Any, algo: str,
                      source: str = "the train options", init: Any = None) -> OccupancyConfig | None:
    """The regulariser's settings (``occupancy`` with ``coef = reg_coef``), None without
    ``regularize``; a one-line ``ValueError`` naming the option that is wrong (``init`` is
    ``--init-from-reference``: True, False or None)."""
    if init is not None and not isinstance(init, bool):
        raise ValueError(f"{source}: init_from_reference={str(init)[:40]!r} must be true, false or null")
    if init and regularize is None:  # starting from a reference without the regulariser (a fair baseline)
        _check_reference_option(reference, algo, source, "--init-from-reference")
    if regularize is None:
        given = [name for name, value in (("--reference", None if init else reference), ("--reg-coef", reg_coef))
                 if value is not None]
        if given or occupancy:
            raise ValueError(f"{source}: {' and '.join(given or ['occupancy options'])} need --regularize occupancy "
                             f"(or, --reference alone, --init-from-reference)")
        return None
    if regularize != "occupancy":
        raise ValueError(f"{source}: --regularize takes 'occupancy', got {str(regularize)[:60]!r}")
    _check_reference_option(reference, algo, source, "--regularize occupancy")
    if reg_coef is None:
        raise ValueError(f"{source}: --regularize occupancy needs --reg-coef λ (a finite number > 0)")
    if isinstance(reg_coef, bool) or not isinstance(reg_coef, (int, float)) or not math.isfinite(reg_coef) \
            or reg_coef <= 0:
        raise ValueError(f"{source}: --reg-coef {reg_coef!r} must be a finite number > 0")
    if not isinstance(occupancy, dict):
        raise ValueError(f"{source}: occupancy={str(occupancy)[:60]!r} is not a table of options")
    if "coef" in occupancy:
        raise ValueError(f"{source}: give the coefficient as reg_coef (--reg-coef), not occupancy option 'coef'")
    return OccupancyConfig.from_dict({**occupancy, "coef": float(reg_coef)}, f"{source}: occupancy")


def _check_reference_option(reference: Any, algo: str, source: str, option: str) -> None:
    algorithm = ALGORITHMS.get(algo)
    if algorithm is None or algorithm.learner != "ppo" or algorithm.multi_agent:
        raise ValueError(f"{source}: {option} trains with rewardgym's single-agent PPO (--algo ppo), "
                         f"not {str(algo)[:40]}")
    if not isinstance(reference, str) or not reference:
        raise ValueError(f"{source}: {option} needs --reference RUN_DIR (a rewardgym PPO run of the task)")


def prepare_reference(spec: Any, task_id: str) -> Reference | None:
    """What a new run of ``spec`` (a :class:`~rewardgym.runs.train.TrainSpec`, validated) takes from its
    reference run, read once; None without one. Resolves ``spec.init_from_reference`` to a bool and,
    when starting from the reference, writes its network options into ``spec.hyperparams``."""
    spec.init_from_reference = init_from_reference(spec.init_from_reference, spec.regularize)
    config = spec.occupancy_config()
    if config is None and not spec.init_from_reference:
        return None
    where = f"--reference {spec.reference}"
    run, run_config, checkpoint = _open_reference(spec.reference, task_id, where)
    policy = _reference_policy_state(checkpoint, run_config, where) if spec.init_from_reference else None
    if policy is not None:
        saved = policy["config"]
        for key in NETWORK_KEYS:
            if key in spec.hyperparams and spec.hyperparams[key] != saved.get(key):
                raise RunError(f"{where}: --init-from-reference needs the reference's network, but hyper-parameter "
                               f"{key}={spec.hyperparams[key]!r} differs from its {saved.get(key)!r}")
            spec.hyperparams[key] = saved.get(key)
    reference = Reference(policy=policy, where=where)
    env = gym.make_vec(task_id, num_envs=min(8, config.reference_transitions) if config else 1, reward="env")
    try:
        if policy is not None:  # a probe of the run's network: the weights fit before anything is written
            probe = PPOConfig.for_space(env.single_observation_space, {**spec.hyperparams, "num_envs": env.num_envs,
                                                                       "seed": 0, "device": "cpu", "compile": False},
                                        source="hyper-parameters")
            start_from_reference(PPO(env, probe), reference)
        if config is not None:
            reference.pairs = _rollout(_reference_agent(run, run_config, checkpoint, env, where), env, config,
                                       spec.seed)
    finally:
        env.close()
    return reference


def start_from_reference(agent: PPO, reference: Reference | None) -> None:
    """Load the reference's policy weights and observation statistics into a new run's ``agent``
    (nothing else: its optimiser, generator and reward statistics stay fresh); a one-line
    ``RunError`` when a tensor's shape does not fit."""
    if reference is None or reference.policy is None:
        return
    state = reference.policy
    mine = agent.policy.state_dict()
    theirs = state["policy"]
    if set(mine) != set(theirs):
        raise RunError(f"{reference.where}: its policy network holds tensors {sorted(set(theirs) ^ set(mine))[:4]} "
                       f"that this run's does not (or the reverse); it cannot be the starting point")
    norm = state.get("obs_normalizer") if agent.obs_normalizer is not None else None
    pairs = [(k, tuple(theirs[k].shape), tuple(mine[k].shape)) for k in mine]
    if agent.obs_normalizer is not None:
        obs_shape = tuple(agent.observation_space.shape)
        rms = norm.get("rms") if isinstance(norm, dict) else None
        mean = rms.get("mean") if isinstance(rms, dict) else None
        pairs.append(("observation statistics", tuple(getattr(mean, "shape", ())), obs_shape))
    for key, ref_shape, own_shape in pairs:
        if ref_shape != own_shape:
            raise RunError(f"{reference.where}: its policy does not fit this run's observations and actions "
                           f"({key} is {ref_shape} there, {own_shape} here); it cannot be the starting point")
    try:
        agent.load_policy(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{reference.where}: its policy cannot be this run's starting point ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def make_regularizer(config: OccupancyConfig | None, seed: int, reference: Reference | None,
                     payload: dict[str, Any] | None, checkpoint: Path | None) -> OccupancyRegularizer | None:
    """The run's regulariser: on a new run's ``reference`` pairs, or rebuilt from the checkpoint
    ``payload`` being resumed (its bank is data: shapes, finiteness and size are checked)."""
    if config is None:
        return None
    if payload is None:
        return OccupancyRegularizer(reference.pairs[0], reference.pairs[1], config, seed=seed)
    try:
        state = payload["agent"].get("occupancy")
        if state is None:
            raise OccupancyError("it holds no occupancy regulariser state")
        return OccupancyRegularizer.from_state_dict(state, config, seed=seed)
    except (OccupancyError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise RunError(f"{checkpoint}: checkpoint does not fit this run ({str(exc)[:300]})") from None


def load_reference(run_path: str | Path, task_id: str, config: OccupancyConfig, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(observations (N, obs_dim), actions (N, act_dim))`` of the reference run's policy on ``task_id``.

    Raises:
        RunError: one line naming the reference: not found, not a run, of another task or
            algorithm, no checkpoint, a checkpoint too large or that does not fit the task.
    """
    where = f"--reference {run_path}"
    run, run_config, checkpoint = _open_reference(run_path, task_id, where)
    env = gym.make_vec(task_id, num_envs=min(8, config.reference_transitions), reward="env")
    try:
        return _rollout(_reference_agent(run, run_config, checkpoint, env, where), env, config, seed)
    finally:
        env.close()


def _open_reference(run_path: str | Path, task_id: str, where: str) -> tuple[RunDir, dict[str, Any], Path]:
    """The reference run, its config and its checkpoint's path, each checked (one-line ``RunError``)."""
    if getattr(get_task(task_id), "agents", None):
        raise RunError(f"{where}: occupancy regularisation trains single-agent tasks; {task_id} is multi-agent")
    path = Path(run_path)
    if not path.is_dir():
        raise RunError(f"{where}: reference run not found (a directory written by `rewardgym train`)")
    try:
        run = RunDir.open(path)
        run_config = run.config()
    except RunError as exc:
        raise RunError(f"{where}: {exc}") from None
    if run_config.get("task") != task_id:
        raise RunError(f"{where}: the reference run trained task {str(run_config.get('task'))[:120]!r}, not "
                       f"{task_id!r}; its policy has no occupancy on this task")
    if run_config.get("algo") != "ppo":
        raise RunError(f"{where}: the reference must be a rewardgym PPO run (algo 'ppo'), not "
                       f"{str(run_config.get('algo'))[:40]!r}")
    checkpoint = latest_checkpoint(run, "ppo", final=True)
    if checkpoint is None:
        raise RunError(f"{where}: the reference run has no checkpoint ({run.checkpoint_dir / 'final.pt'})")
    size = checkpoint.stat().st_size
    if size > MAX_REFERENCE_CHECKPOINT_BYTES:
        raise RunError(f"{where}: {checkpoint.name} is {size:,} bytes; a reference checkpoint may have at most "
                       f"{MAX_REFERENCE_CHECKPOINT_BYTES:,}")
    return run, run_config, checkpoint


def _reference_policy_state(checkpoint: Path, run_config: dict[str, Any], where: str) -> dict[str, Any]:
    """The checkpoint's agent state (weights-only load), checked to hold a PPO policy and its config."""
    try:
        payload = load_checkpoint(checkpoint, run_config["task"], "ppo")
    except RunError as exc:
        raise RunError(f"{where}: {exc}") from None
    agent = payload.get("agent")
    if not isinstance(agent, dict) or not isinstance(agent.get("policy"), dict) \
            or not isinstance(agent.get("config"), dict):
        raise RunError(f"{where}: its checkpoint holds no PPO policy state")
    return agent


def _reference_agent(run: RunDir, run_config: dict[str, Any], checkpoint: Path, env: gym.vector.VectorEnv,
                     where: str) -> PPO:
    """The reference run's PPO policy (weights and observation statistics only), as ``eval`` loads it."""
    try:
        payload = load_checkpoint(checkpoint, run_config["task"], "ppo")
    except RunError as exc:
        raise RunError(f"{where}: {exc}") from None
    hyper = run_config.get("hyperparams", {})
    if not isinstance(hyper, dict) or not isinstance(payload.get("agent"), dict):
        raise RunError(f"{where}: the reference run's hyperparams or checkpoint agent state is not a table")
    try:
        cfg = PPOConfig.for_space(env.single_observation_space, {**hyper, "num_envs": env.num_envs, "seed": 0,
                                                                 "device": "cpu", "compile": False},
                                  source=str(run.config_path))
        agent = PPO(env, cfg)
        agent.load_policy(payload["agent"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{where}: its checkpoint does not fit this task's policy ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return agent


def _rollout(agent: Any, env: gym.vector.VectorEnv, config: OccupancyConfig, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    space = env.single_action_space
    act_dim = action_features(space)
    want = config.reference_transitions
    obs_rows: list[np.ndarray] = []
    act_rows: list[np.ndarray] = []
    count = 0
    deterministic = config.reference_policy == "deterministic"
    with torch.random.fork_rng(devices=[]):  # predict() samples from torch's global RNG: seeded, then restored
        torch.manual_seed(seed)
        obs, _ = env.reset(seed=seed)
        valid = np.ones(env.num_envs, dtype=bool)
        while count < want:
            action, _ = agent.predict(np.asarray(obs, dtype=np.float32), deterministic=deterministic)
            action = np.asarray(action)
            if isinstance(space, gym.spaces.Discrete):
                features = np.eye(act_dim, dtype=np.float32)[action.astype(np.int64).reshape(-1)]
            else:
                features = np.clip(action, space.low, space.high).reshape(len(action), -1).astype(np.float32)
            rows = np.flatnonzero(valid)[: want - count]
            obs_rows.append(np.asarray(obs, dtype=np.float32).reshape(env.num_envs, -1)[rows])
            act_rows.append(features[rows])
            count += len(rows)
            obs, _, terminated, truncated, _ = env.step(action)
            valid = ~(np.asarray(terminated) | np.asarray(truncated))  # the next step is an autoreset
    return np.concatenate(obs_rows), np.concatenate(act_rows)
