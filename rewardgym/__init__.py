"""rewardgym: reward design for reinforcement learning on real simulators.

``import rewardgym`` registers every ``rewardgym/<Family>-<Task>-v0`` id with Gymnasium::

    import gymnasium as gym
    import rewardgym
    env = gym.make("rewardgym/MetaWorld-PickPlace-v0", reward="my_reward.py")
"""

from __future__ import annotations

import os as _os

# Headless MuJoCo rendering: EGL where a GPU driver exists, OSMesa (Debian libosmesa6) on
# CPU-only machines. Only a default: an explicit MUJOCO_GL / PYOPENGL_PLATFORM wins.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl" if _os.path.exists("/dev/nvidia0") else "osmesa"
if _os.environ.get("MUJOCO_GL") in ("osmesa", "egl"):
    _os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
if _os.environ.get("MUJOCO_GL") == "osmesa":  # llvmpipe: frames are small; 1 thread (rewardgym.threads)
    _os.environ.setdefault("LP_NUM_THREADS", "1")

from rewardgym.envs.registry import all_tasks, get_task, register_all  # noqa: E402
from rewardgym.envs.view import StateView  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402
from rewardgym.rewards.source import EnvReward, RewardSource, SparseReward, WeightedSum, resolve_reward  # noqa: E402

__version__ = "0.1.0"

register_all()

__all__ = [
    "EnvReward", "RewardProgram", "RewardSource", "SparseReward", "StateView", "WeightedSum",
    "all_tasks", "get_task", "resolve_reward", "__version__",
]
