"""Potential-based reward shaping (Ng, Harada & Russell 1999).

``F(s, a, s') = γ·Φ(s') − Φ(s)`` added to any reward leaves the optimal policies of the
MDP unchanged, for any potential Φ, provided that

* γ is the discount of the agent that learns from the shaped reward (another γ breaks
  the telescoping sum, and with it the guarantee: a mismatch is an error, not a bias);
* Φ of a terminal state is 0 (``terminated``); a *truncated* episode could have gone
  on, so there Φ(s') is kept;
* no term is computed across an episode boundary (the injection wrappers guarantee it:
  ``state.prev`` is always the same episode's previous state).

Φ comes from a reward program's ``compute_potential(state)`` (``shaping="expert"`` for
the task's expert program, or a program path), a perceptual model's progress
(``shaping="model.pt"``, :mod:`rewardgym.perceptual`), the value function of a trained
PPO run (``shaping="runs/NAME"``, :class:`ValuePotential`), or any callable
``StateView -> (B,)``.
``tests/test_shaping.py`` checks the invariance on tabular MDPs with value iteration,
and shows that ignoring termination or using another γ changes the optimal policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from rewardgym.envs.view import StateView, raw_batch
from rewardgym.rewards.source import RewardSource, Terms

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec


def shaping_term(phi: Any, phi_next: Any, gamma: float, terminated: Any) -> Any:
    """``γ·Φ(s')·(1 − terminated) − Φ(s)``, batch-first (numpy arrays or torch tensors).

    Args:
        phi: Φ(s) of the state the action was taken in, ``(B,)``.
        phi_next: Φ(s') of the state reached, ``(B,)``.
        gamma: the learner's discount factor.
        terminated: ``(B,)`` bool, s' is terminal (Φ = 0 there); truncation is not termination.
    """
    alive = 1.0 - (terminated.float() if hasattr(terminated, "float") and not isinstance(terminated, np.ndarray)
                   else np.asarray(terminated, dtype=np.float64))
    return gamma * phi_next * alive - phi


class PotentialShaping(RewardSource):
    """The shaping reward ``F = γ·Φ(s') − Φ(s)`` as a reward source (term ``"shaping"``).

    Args:
        potential: ``StateView -> (B,)`` (e.g. ``RewardProgram.compute_potential``).
        gamma: the discount of the agent that will learn from it.
        name: source name in compositions.
    """

    def __init__(self, potential: Callable[[StateView], Any], gamma: float, name: str = "shaping"):
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"shaping gamma must be in [0, 1], got {gamma}")
        self.potential = potential
        self.gamma = float(gamma)
        self.name = name

    def requires(self) -> dict[str, Any]:
        owner = getattr(self.potential, "__self__", self.potential)  # a bound method's object
        requires = getattr(owner, "requires", None)
        return requires() if callable(requires) else {}

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        shaping = shaping_term(self.potential(state.prev), self.potential(state), self.gamma, state.terminated)
        return shaping, {"shaping": shaping}

    def close(self) -> None:
        owner = getattr(self.potential, "__self__", self.potential)
        close = getattr(owner, "close", None)
        if callable(close):
            close()


def resolve_potential(spec: Any, task: "TaskSpec", trusted: bool = False,
                      limits: Any = None) -> Callable[[StateView], Any]:
    """Φ for ``shaping=``: ``"expert"``, a program path with ``compute_potential``, a program, or a callable.

    ``trusted`` and ``limits`` (:class:`~rewardgym.rewards.worker.ProgramLimits`) apply to program files."""
    from rewardgym.rewards.program import RewardProgram

    if isinstance(spec, RewardProgram):
        program = spec
    elif callable(spec):
        return spec
    elif isinstance(spec, (str, Path)) and str(spec).endswith(".pt") and _is_perceptual_model(spec):
        from rewardgym.perceptual.reward import PerceptualReward

        return PerceptualReward(spec, task, trusted).potential
    elif isinstance(spec, (str, Path)) and (Path(spec).is_dir() or str(spec).endswith(".pt")):
        return ValuePotential(spec, task)
    elif spec == "expert":
        if task.expert_path is None:
            raise ValueError(f"task {task.id} has no expert program to take a potential from")
        program = RewardProgram.from_file(task.expert_path, view=task.view, name="expert", limits=limits)
    elif isinstance(spec, str) and spec.endswith(".py"):
        program = RewardProgram.from_file(spec, view=task.view, trusted=trusted, limits=limits)
    else:
        raise ValueError(f"shaping= takes 'expert', a reward program path (.py) defining compute_potential(state), "
                         f"a perceptual model (.pt), a trained run directory (its value function), a RewardProgram "
                         f"or a callable; got {spec!r}")
    if not program.has_potential:
        raise ValueError(f"{program.filename} defines no compute_potential(state), so it cannot be used for shaping")
    return program.compute_potential


def _is_perceptual_model(path: Any) -> bool:
    from rewardgym.perceptual.model import is_perceptual_model  # torch-heavy: imported on use

    return is_perceptual_model(path)


class ValuePotential:
    """Φ(s) = V(s): the value function of a trained rewardgym PPO run, on the agent's observation.

    Ng et al. (1999) show that Φ = V* makes shaping most helpful; a trained agent's value
    estimate approximates it. The env must report observations (``requires``), which
    ``gym.make``/``make_vec`` arrange. Observations are normalised with the run's frozen
    statistics; Φ is in the units of the run's (possibly normalised) return.

    Args:
        run: a ``rewardgym train`` run directory (algo ``ppo``) or one of its checkpoints.
        task: the task the env runs; must be the run's task.
    """

    def __init__(self, run: Any, task: "TaskSpec"):
        import gymnasium as gym
        import torch

        from rewardgym.agents.evaluate import RunPolicy
        from rewardgym.agents.runs import RunDir

        path = Path(run)
        run_dir = RunDir.open(path.parent.parent if path.is_file() else path)
        config = run_dir.config()
        if config.get("algo") != "ppo":
            raise ValueError(f"{run_dir.path}: a value potential needs a rewardgym PPO run, not algo {config.get('algo')!r}")
        if config["task"] != task.id:
            raise ValueError(f"{run_dir.path}: the run trained {config['task']}, not {task.id}; its value "
                             f"function is no potential for this task")
        env = gym.make_vec(task.id, num_envs=1)
        try:
            self._agent = RunPolicy(run_dir, env).agent
        finally:
            env.close()
        if getattr(self._agent, "_dict_obs", False):
            raise ValueError(f"{run_dir.path}: value potentials support Box observations only")
        self._torch = torch
        self.run = str(run_dir.path)

    def requires(self) -> dict[str, Any]:
        return {"obs": True}

    def __call__(self, state: StateView) -> np.ndarray:
        obs = raw_batch(state).get("obs")
        if obs is None:
            raise ValueError("a value potential needs the observation in state.raw['obs']: make the env with "
                             "gym.make/make_vec (they add it for sources that require it)")
        with self._torch.no_grad():
            x = self._agent._obs_to_tensor(np.asarray(obs, dtype=np.float32), update_stats=False)
            return self._agent.policy.value(x).reshape(-1).cpu().numpy().astype(np.float64)


def with_shaping(source: RewardSource, shaping: Any, gamma: float | None, task: "TaskSpec",
                 trusted: bool = False, limits: Any = None) -> RewardSource:
    """``source + PotentialShaping(Φ, γ)``; ``gamma`` is required (it must be the agent's)."""
    if shaping is None:
        if gamma is not None:
            raise ValueError("gamma= is only used with shaping=; pass both or neither")
        return source
    if gamma is None:
        raise ValueError("shaping= needs gamma=: the discount of the agent that trains on this env "
                         "(rewardgym train passes it for you)")
    return source + PotentialShaping(resolve_potential(shaping, task, trusted, limits), gamma)


def shaping_gammas(source: RewardSource) -> list[float]:
    """The γ of every :class:`PotentialShaping` inside ``source`` (compositions included)."""
    if isinstance(source, PotentialShaping):
        return [source.gamma]
    return [g for _, part in getattr(source, "parts", []) for g in shaping_gammas(part)]


def check_agent_gamma(env: Any, gamma: float) -> None:
    """Raise if ``env`` injects shaping with a γ other than the agent's ``gamma``."""
    source = _find_source(env)
    if source is None:
        return
    for g in shaping_gammas(source):
        if abs(g - gamma) > 1e-12:
            raise ValueError(f"the env's potential-based shaping uses gamma={g} but the agent discounts with "
                             f"gamma={gamma}; shaping preserves optimal policies only with the agent's own gamma "
                             f"(make the env with gamma={gamma})")


def _find_source(env: Any) -> RewardSource | None:
    while env is not None:
        source = getattr(env, "source", None) if "source" in getattr(env, "__dict__", {}) else None
        if isinstance(source, RewardSource):
            return source
        env = getattr(env, "env", None)
    return None
