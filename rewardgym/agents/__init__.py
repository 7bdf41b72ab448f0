"""rewardgym.agents: PPO (:mod:`rewardgym.agents.ppo`), its networks and normalisers.

Exports are resolved lazily, so ``import rewardgym.agents.runs`` does not import torch.
"""

from typing import Any

__all__ = ["PPO", "PPOConfig", "ConfigError", "compute_gae"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rewardgym.agents import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module 'rewardgym.agents' has no attribute {name!r}")
