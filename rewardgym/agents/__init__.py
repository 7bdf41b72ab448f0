"""Former home of PPO and the run tools, kept so that existing scripts keep working.

``rewardgym.agents.PPO``, ``PPOConfig``, ``ConfigError`` and ``compute_gae`` are
:mod:`rewardgym.learners`'; new code imports from :mod:`rewardgym.learners` (algorithms)
and :mod:`rewardgym.runs` (run directories, training, evaluation, export).
"""

from typing import Any

__all__ = ["PPO", "PPOConfig", "ConfigError", "compute_gae"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rewardgym.learners import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module 'rewardgym.agents' has no attribute {name!r}")
