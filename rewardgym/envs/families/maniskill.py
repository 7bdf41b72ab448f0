"""ManiSkill 3 manipulation (optional extra ``rewardgym[maniskill]``; needs a Vulkan-capable GPU).

ManiSkill cannot start on a CPU-only machine (not even with a software Vulkan driver),
so its tasks are always declared — ``rewardgym list`` shows them — but are available only
where ``mani_skill`` is installed and an NVIDIA GPU device exists. Making one elsewhere
raises :class:`~rewardgym.envs.task.TaskUnavailableError` with the reason; importing
rewardgym never fails because of it.

Here each env is a single ManiSkill env (``num_envs=1``) behind ManiSkill's own
``CPUGymWrapper``, read into numpy rows like every other family.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np

from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, ViewSpec, raw


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """(ok, reason): ManiSkill needs the ``mani_skill`` package and a Vulkan-capable GPU."""
    if importlib.util.find_spec("mani_skill") is None:
        return False, "mani-skill is not installed (pip install 'rewardgym[maniskill]'; needs a Vulkan GPU)"
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/dri/renderD128")):
        return False, "no GPU device found: ManiSkill needs a Vulkan-capable GPU"
    return True, ""


def _norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


VIEW = ViewSpec.build(
    "maniskill",
    doc=("ManiSkill 3 table-top manipulation with a Franka Panda arm. Positions are in the world "
         "frame, metres, z up; the table surface is at z = 0. `obj` is the task's object (the cube)."),
    fields=[
        Field("tcp_pos", "(B, 3)", "m", "Tool centre point (between the fingertips), world frame.",
              raw("tcp_pos")),
        Field("obj_pos", "(B, 3)", "m", "Centre of the task's object, world frame.", raw("obj_pos")),
        Field("obj_quat", "(B, 4)", "-", "Orientation of the object, quaternion (w, x, y, z).",
              raw("obj_quat")),
        Field("goal_pos", "(B, 3)", "m", "Goal position of the object, world frame.", raw("goal_pos")),
        Field("is_grasped", "(B,)", "bool", "Whether the gripper holds the object (ManiSkill's own test).",
              raw("is_grasped", np.bool_)),
        Field("qpos", "(B, 9)", "rad | m", "Arm joint angles (7, rad) and finger openings (2, m).",
              raw("qpos")),
        Field("qvel", "(B, 9)", "rad/s | m/s", "Arm and finger joint velocities.", raw("qvel")),
        Field("tcp_to_obj", "(B,)", "m", "Distance from the tool centre point to the object.",
              lambda b: _norm(b["tcp_pos"], b["obj_pos"])),
        Field("obj_to_goal", "(B,)", "m", "Distance from the object to the goal.",
              lambda b: _norm(b["obj_pos"], b["goal_pos"])),
        Field("task_success", "(B,)", "bool", "ManiSkill's own success flag for the task.",
              raw("task_success", np.bool_)),
    ],
)


class ManiSkillTaskEnv(TaskEnv):
    """A ManiSkill env (``num_envs=1``) read into numpy rows."""

    def __init__(self, env, task: TaskSpec, obj_attr: str, goal_attr: str, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        self._obj_attr, self._goal_attr = obj_attr, goal_attr
        self._success = False

    def on_reset(self, obs: Any, info: dict) -> None:
        self._success = False

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        self._success = bool(np.asarray(info.get("success", False)).reshape(-1)[0])

    def read_raw(self) -> dict[str, Any]:
        u = self.env.unwrapped
        obj = getattr(u, self._obj_attr)
        goal = getattr(u, self._goal_attr)

        def first(t) -> np.ndarray:
            return np.asarray(t.detach().cpu().numpy()[0], dtype=np.float64)

        robot = u.agent.robot
        return {
            "tcp_pos": first(u.agent.tcp.pose.p), "obj_pos": first(obj.pose.p),
            "obj_quat": first(obj.pose.q), "goal_pos": first(goal.pose.p),
            "is_grasped": bool(u.agent.is_grasping(obj).reshape(-1)[0]),
            "qpos": first(robot.get_qpos()), "qvel": first(robot.get_qvel()),
            "task_success": self._success,
        }


def _make(base_id: str, obj_attr: str, goal_attr: str, task_id: str, render_mode=None,
          state_in_info: bool = False, **kwargs: Any) -> ManiSkillTaskEnv:
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers ManiSkill ids)
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    from rewardgym.envs.registry import get_task

    kwargs.setdefault("obs_mode", "state")
    kwargs.setdefault("control_mode", "pd_ee_delta_pos")
    env = CPUGymWrapper(gym.make(base_id, num_envs=1, render_mode=render_mode, **kwargs))
    return ManiSkillTaskEnv(env, get_task(task_id), obj_attr, goal_attr, state_in_info=state_in_info)


def _task(name: str, base_id: str, obj_attr: str, goal_attr: str, instruction: str) -> TaskSpec:
    task_id = f"rewardgym/ManiSkill-{name}-v0"
    return TaskSpec(
        id=task_id, family="maniskill", base_id=base_id, instruction=instruction,
        success_doc="ManiSkill's own success test for the task (`task_success`).",
        success=lambda s: np.asarray(s.task_success, dtype=bool),
        view=VIEW, make_env=functools.partial(_make, base_id, obj_attr, goal_attr, task_id),
        max_episode_steps=50, expert=f"ManiSkill-{name}.py", available=available, tags=("gpu",))


TASKS = [
    _task("PickCube", "PickCube-v1", "cube", "goal_site",
          "Pick up the cube and move it to the goal position."),
    _task("PushCube", "PushCube-v1", "obj", "goal_region",
          "Push the cube onto the goal region on the table."),
]
