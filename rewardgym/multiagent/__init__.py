"""rewardgym.multiagent: multi-agent tasks as PettingZoo and Gymnasium envs with injected rewards.

* :func:`make_parallel` -> :class:`~rewardgym.multiagent.parallel.ParallelRewardEnv`, a PettingZoo
  ``ParallelEnv`` (``rewardgym.make_parallel``);
* :func:`make_parallel_vec` -> :class:`~rewardgym.multiagent.vector.ParallelVectorEnv`, ``B``
  copies with ``(B, N)`` rewards computed once per batch (``rewardgym.make_parallel_vec``);
* :class:`~rewardgym.multiagent.vector.AgentVectorEnv`, the parameter-sharing view of ``B x N``
  agent slots that ``gym.make_vec`` returns for multi-agent ids (IPPO / MAPPO, SB3-style learners).

Exports are resolved lazily: ``import rewardgym`` does not import PettingZoo.
"""

from typing import Any

__all__ = ["AgentVectorEnv", "ParallelRewardEnv", "ParallelVectorEnv", "make_agent_vec_env", "make_parallel",
           "make_parallel_vec"]

_MODULES = {"AgentVectorEnv": "vector", "ParallelVectorEnv": "vector", "make_agent_vec_env": "vector",
            "make_parallel_vec": "vector", "ParallelRewardEnv": "parallel", "make_parallel": "parallel"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(f"rewardgym.multiagent.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'rewardgym.multiagent' has no attribute {name!r}")
