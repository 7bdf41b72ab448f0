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
PPO run (``shaping="runs/NAME"``, :mod:`rewardgym.runs.potential`), or any callable
``StateView -> (B,)``: :func:`rewardgym.rewards.resolve.resolve_potential`.
``tests/test_shaping.py`` checks the invariance on tabular MDPs with value iteration,
and shows that ignoring termination or using another γ changes the optimal policy.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from rewardgym.envs.view import StateView
from rewardgym.rewards.source import RewardSource, Terms


def shaping_term(phi: Any, phi_next: Any, gamma: float, terminated: Any) -> Any:
    """``γ·Φ(s')·(1 − terminated) − Φ(s)``, batch-first (numpy arrays or torch tensors).

    Args:
        phi: Φ(s) of the state the action was taken in, ``(B,)``, or ``(B, N)`` with one
            potential per agent (multi-agent tasks: each agent's shaping telescopes on its own).
        phi_next: Φ(s') of the state reached, the same shape.
        gamma: the learner's discount factor.
        terminated: ``(B,)`` bool, s' is terminal (Φ = 0 there, for every agent: a
            multi-agent episode ends for all agents together); truncation is not termination.
    """
    alive = 1.0 - (terminated.float() if hasattr(terminated, "float") and not isinstance(terminated, np.ndarray)
                   else np.asarray(terminated, dtype=np.float64))
    if getattr(phi_next, "ndim", 1) > alive.ndim:  # per-agent potentials: the episode's end applies to every agent
        alive = alive.reshape(tuple(alive.shape) + (1,) * (phi_next.ndim - alive.ndim))
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
