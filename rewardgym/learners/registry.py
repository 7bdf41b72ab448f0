"""Which network a learner builds for a family's observations: a registry without torch.

:func:`register_policy` maps a predicate over observation spaces to an actor-critic class,
given as ``"module:Class"`` and imported on first use (so ``import rewardgym`` does not import
torch). Families register their networks here the way reward kinds register in
:mod:`rewardgym.rewards.resolve`; the learner asks :func:`policy_for` and knows no family.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["PolicyKind", "policy_for", "register_policy", "registered_policies"]


@dataclass
class PolicyKind:
    """A registered network: ``name``, ``matches(space) -> bool``, the class (or its ``"module:Class"``)."""

    name: str
    matches: Callable[[Any], bool] | str
    policy: Any

    def resolve(self) -> Any:
        if isinstance(self.policy, str):
            module, _, attr = self.policy.partition(":")
            self.policy = getattr(importlib.import_module(module), attr)
        return self.policy

    def test(self, space: Any) -> bool:
        if isinstance(self.matches, str):
            module, _, attr = self.matches.partition(":")
            self.matches = getattr(importlib.import_module(module), attr)
        return bool(self.matches(space))


_POLICIES: dict[str, PolicyKind] = {}


def register_policy(name: str, matches: Callable[[Any], bool] | str, policy: Any) -> None:
    """Build ``policy`` (an ``ActorCritic`` class or ``"module:Class"``) for observation spaces
    where ``matches(space)`` (a callable or ``"module:function"``) is true. The class is called
    as ``policy(observation_space, action_space, config)`` and may set ``PPO_DEFAULTS``."""
    _POLICIES[name] = PolicyKind(name, matches, policy)


def policy_for(space: Any) -> Any:
    """The registered class for ``space`` (the first match), or None."""
    for kind in _POLICIES.values():
        if kind.test(space):
            return kind.resolve()
    return None


def registered_policies() -> str:
    """The registered networks' names, for messages."""
    return ", ".join(_POLICIES) or "no registered family network"
