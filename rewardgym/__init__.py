"""rewardgym: reward design for reinforcement learning on real simulators.

``import rewardgym`` registers every ``rewardgym/<Family>-<Task>-v0`` id with Gymnasium::

    import gymnasium as gym
    import rewardgym
    env = gym.make("rewardgym/MetaWorld-PickPlace-v0", reward="my_reward.py")

It also registers the reward kinds that live above :mod:`rewardgym.rewards` (ONI's
intrinsic reward, perceptual models, value potentials) lazily, by module path, so that
importing rewardgym stays light; it writes nothing to ``os.environ``. Multi-agent tasks are
PettingZoo envs: ``rewardgym.make_parallel(id, reward=...)`` (a ``ParallelEnv``) and
``rewardgym.make_parallel_vec(id, num_envs, ...)`` (batched) import PettingZoo when called.
"""

from __future__ import annotations

from rewardgym.envs.declare import TaskField, generic_view, register_task
from rewardgym.envs.registry import all_tasks, get_task
from rewardgym.envs.view import Field, StateView, ViewSpec
from rewardgym.learners.registry import register_policy
from rewardgym.rewards.program import ProgramLimits, RewardProgram
from rewardgym.rewards.resolve import (register_potential_kind, register_reward_kind, resolve_potential,
                                       resolve_reward)
from rewardgym.rewards.source import EnvReward, RewardSource, SparseReward, WeightedSum
from rewardgym.rewards.spec import RewardSpec
from rewardgym.version import __version__
from rewardgym.wrappers.make import make_vec, register_gym_ids

register_reward_kind("oni", "rewardgym.intrinsic.oni:resolve_oni",
                     "'oni': ONI's intrinsic reward learned from labelled game messages (NetHack, MiniHack)")
register_reward_kind("perceptual", "rewardgym.perceptual.reward:resolve_perceptual",
                     "MODEL.pt: a perceptual reward model from `rewardgym demos fit`")
register_potential_kind("perceptual", "rewardgym.perceptual.reward:resolve_perceptual_potential",
                        "a perceptual model (MODEL.pt)")
register_potential_kind("value", "rewardgym.runs.potential:resolve_value_potential",
                        "a trained PPO run directory (its value function)")
register_policy("NetHack/MiniHack Dict observations with 'glyphs' and 'blstats'",
                "rewardgym.learners.nethack:is_nethack_observation", "rewardgym.learners.nethack:NetHackActorCritic")
register_gym_ids()


def make_parallel(task_id: str, reward: object = "env", **kwargs: object):
    """A multi-agent task with ``reward`` injected, as a PettingZoo ``ParallelEnv``
    (:func:`rewardgym.multiagent.parallel.make_parallel`, which documents the arguments)."""
    from rewardgym.multiagent.parallel import make_parallel as make

    return make(task_id, reward, **kwargs)


def make_parallel_vec(task_id: str, num_envs: int = 1, reward: object = "env", **kwargs: object):
    """``num_envs`` copies of a multi-agent task with ``(B, N)`` rewards computed once per batch
    (:func:`rewardgym.multiagent.vector.make_parallel_vec`, which documents the arguments)."""
    from rewardgym.multiagent.vector import make_parallel_vec as make

    return make(task_id, num_envs, reward, **kwargs)


__all__ = [
    "EnvReward", "Field", "ProgramLimits", "RewardProgram", "RewardSource", "RewardSpec", "SparseReward", "StateView", "TaskField",
    "ViewSpec", "WeightedSum", "all_tasks", "generic_view", "get_task", "make_parallel", "make_parallel_vec",
    "make_vec", "register_potential_kind", "register_reward_kind", "register_task", "resolve_potential",
    "resolve_reward", "__version__",
]
