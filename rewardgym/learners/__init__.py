"""rewardgym.learners: the learning algorithms, apart from tasks, files and runs.

PPO (:mod:`~rewardgym.learners.ppo`, CleanRL-style), IPPO/MAPPO
(:mod:`~rewardgym.learners.mappo`), the actor-critic networks chosen from the spaces
(:mod:`~rewardgym.learners.policies`), observation/reward normalisers and the window of
finished episodes. A learner knows Gymnasium spaces, vector envs and torch tensors; run
directories, checkpoints on disk and tasks are the business of :mod:`rewardgym.runs`.
Networks for a family's observations register themselves (:func:`register_policy`).

Exports are resolved lazily, so importing this package does not import torch.
"""

from typing import Any

__all__ = ["PPO", "PPOConfig", "ConfigError", "compute_gae", "register_policy"]


def __getattr__(name: str) -> Any:
    if name == "register_policy":
        from rewardgym.learners.policies import register_policy

        return register_policy
    if name in __all__:
        from rewardgym.learners import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module 'rewardgym.learners' has no attribute {name!r}")
