"""Fetch tasks (gymnasium-robotics): a 7-DoF Fetch arm with a parallel gripper (Plappert et al., 2018).

Built on ``FetchReach-v4``, ``FetchPush-v4``, ``FetchPickAndPlace-v4`` and ``FetchSlide-v4``
(MuJoCo bindings). The goal-aware Dict observation is flattened by
:class:`FlattenGoalObservation` into one ``Box`` so that any agent (SB3 ``MlpPolicy``,
CleanRL PPO) trains unchanged::

    obs = concatenate([observation, desired_goal])   # (10 + 3,) Reach, (25 + 3,) others

``observation`` is the env's own vector (grip_pos 3, object_pos 3, object_rel_pos 3,
gripper_state 2, object_rot 3, object_velp 3, object_velr 3, grip_velp 3, gripper_vel 2;
Reach keeps only grip_pos, gripper_state, grip_velp, gripper_vel) and ``desired_goal`` is
the goal position. ``achieved_goal`` is dropped: it duplicates grip_pos (Reach) or
object_pos (others), both already in ``observation``. Episodes last 50 steps (the
registered ``TimeLimit`` of the base env). Success is the env's own
``info["is_success"]`` test, ``|achieved_goal - desired_goal| < 0.05 m``, evaluated here
on every state (reset included) with the env's ``_is_success``.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.envs.task import SimulatorEnv, TaskEnv, TaskSpec, TaskUnavailableError
from rewardgym.envs.view import Field, RawBatch, StateView, ViewSpec, raw, raw_distance

MAX_EPISODE_STEPS = 50
_EPS4 = np.finfo(np.float64).eps * 4.0


def _obj_rot(batch: RawBatch) -> np.ndarray:
    """(B, 3) Euler angles from the (B, 9) object rotation matrices, as gymnasium-robotics
    ``rotations.mat2euler`` (the ``object_rot`` entries of the observation)."""
    mat = np.asarray(batch["obj_xmat"], dtype=np.float64).reshape(-1, 3, 3)
    cy = np.sqrt(mat[:, 2, 2] ** 2 + mat[:, 1, 2] ** 2)
    ok = cy > _EPS4
    euler = np.empty((mat.shape[0], 3))
    euler[:, 2] = np.where(ok, -np.arctan2(mat[:, 0, 1], mat[:, 0, 0]),
                           -np.arctan2(-mat[:, 1, 0], mat[:, 1, 1]))
    euler[:, 1] = -np.arctan2(-mat[:, 0, 2], cy)
    euler[:, 0] = np.where(ok, -np.arctan2(mat[:, 1, 2], mat[:, 2, 2]), 0.0)
    return euler


VIEW = ViewSpec.build(
    "fetch",
    doc=(
        "Fetch (gymnasium-robotics): a 7-DoF arm with a two-finger parallel gripper in front "
        "of a table. World frame, metres: x away from the robot base, y to the robot's left, "
        "z up; the table top is at z ~ 0.40 and the 5 cm cube object rests with its centre at "
        "z ~ 0.425. The action is (dx, dy, dz, grip) in [-1, 1]: a gripper displacement of "
        "up to 5 cm per axis per step and a finger command (+1 opens, -1 closes; ignored in "
        "Reach, Push and Slide, whose fingers are locked closed). One step is 0.04 s; "
        "episodes last 50 steps and do not end on success. In Reach there is no object: the "
        "gripper itself must reach the goal, so obj_pos = grip_pos, obj_vel = grip_vel, "
        "obj_rot = 0 there."
    ),
    fields=[
        Field("grip_pos", "(B, 3)", "m",
              "Gripper centre (site robot0:grip, between the fingertips), world frame.",
              raw("grip_pos")),
        Field("grip_vel", "(B, 3)", "m/s",
              "Linear velocity of the gripper centre, world frame (site Jacobian times qvel; "
              "the observation holds this times dt = 0.04 s).", raw("grip_vel")),
        Field("gripper_opening", "(B,)", "m",
              "Sum of the two finger slide joint positions ~ distance between the fingers: "
              "0 = closed, 0.1 = fully open (always ~0 where the fingers are locked).",
              raw("gripper_opening")),
        Field("obj_pos", "(B, 3)", "m",
              "Object (cube or puck) centre, site object0, world frame; equals grip_pos in Reach.",
              raw("obj_pos")),
        Field("obj_vel", "(B, 3)", "m/s",
              "Linear velocity of the object centre, world frame (absolute, not relative to the "
              "gripper as in the observation); equals grip_vel in Reach.", raw("obj_vel")),
        Field("obj_rot", "(B, 3)", "rad",
              "Object orientation as Euler angles (x, y, z; gymnasium-robotics mat2euler "
              "convention, as in the observation); zeros in Reach.", _obj_rot),
        Field("obj_init_pos", "(B, 3)", "m",
              "obj_pos at the reset of this episode (constant within an episode).",
              raw("obj_init_pos")),
        Field("goal_pos", "(B, 3)", "m",
              "Goal position for this episode (the env's desired_goal, sampled at reset), world "
              "frame; the object (the gripper in Reach) must be brought within 0.05 m of it.",
              raw("goal_pos")),
        Field("obj_to_goal", "(B,)", "m",
              "Euclidean distance |obj_pos - goal_pos|: the env's achieved-goal error, which its "
              "success test thresholds at 0.05 m.", raw_distance("obj_pos", "goal_pos")),
        Field("grip_to_obj", "(B,)", "m",
              "Euclidean distance |grip_pos - obj_pos| (0 in Reach).", raw_distance("grip_pos", "obj_pos")),
        Field("grip_to_goal", "(B,)", "m", "Euclidean distance |grip_pos - goal_pos|.",
              raw_distance("grip_pos", "goal_pos")),
        Field("task_success", "(B,)", "bool",
              "The env's own success test (info['is_success']): |achieved_goal - desired_goal| "
              "< 0.05 m, evaluated on this state.", raw("task_success", np.bool_)),
    ],
)


class FlattenGoalObservation(gym.ObservationWrapper):
    """``Dict(observation, achieved_goal, desired_goal)`` -> ``Box`` = observation ++ desired_goal.

    Equivalent to ``FlattenObservation(FilterObservation(env, ["observation", "desired_goal"]))``
    except for the order: ``observation`` first, then ``desired_goal`` (the Dict space would
    sort the keys alphabetically).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        spaces = env.observation_space
        n = spaces["observation"].shape[0] + spaces["desired_goal"].shape[0]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float64)

    def observation(self, observation: dict) -> np.ndarray:
        return np.concatenate([observation["observation"], observation["desired_goal"]]).astype(np.float64)


class FetchTaskEnv(TaskEnv):
    """A Fetch env reporting the ``fetch`` view's raw row (read from MjData)."""

    def __init__(self, env: gym.Env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        import mujoco

        u = self.sim
        model = u.model
        self._mujoco = mujoco
        self._grip = int(model.site("robot0:grip").id)
        self._has_object = bool(u.has_object)
        self._obj = int(model.site("object0").id) if self._has_object else -1
        self._fingers = [int(model.jnt_qposadr[model.joint(name).id]) for name in
                         ("robot0:r_gripper_finger_joint", "robot0:l_gripper_finger_joint")]
        self._jacp = np.zeros((3, model.nv))
        self._obj_init = np.zeros(3)

    def _site_vel(self, site: int) -> np.ndarray:
        """World-frame linear velocity of a site from the current qvel (as the env computes it)."""
        u = self.sim
        self._mujoco.mj_jacSite(u.model, u.data, self._jacp, None, site)
        return self._jacp @ u.data.qvel

    def on_reset(self, obs: Any, info: dict) -> None:
        u = self.sim
        site = self._obj if self._has_object else self._grip
        self._obj_init = u.data.site_xpos[site].copy()

    def read_raw(self) -> dict[str, Any]:
        u = self.sim
        data = u.data
        grip = data.site_xpos[self._grip].copy()
        grip_vel = self._site_vel(self._grip)
        if self._has_object:
            obj = data.site_xpos[self._obj].copy()
            obj_vel = self._site_vel(self._obj)
            obj_xmat = data.site_xmat[self._obj].copy()
        else:  # Reach: the gripper is the achieved goal
            obj, obj_vel, obj_xmat = grip, grip_vel, np.eye(3).ravel()
        goal = np.array(u.goal, dtype=np.float64)
        return {
            "grip_pos": grip,
            "grip_vel": grip_vel,
            "gripper_opening": float(data.qpos[self._fingers[0]] + data.qpos[self._fingers[1]]),
            "obj_pos": obj,
            "obj_vel": obj_vel,
            "obj_xmat": obj_xmat,
            "obj_init_pos": self._obj_init,
            "goal_pos": goal,
            "task_success": bool(u._is_success(obj, goal)),
        }


def _available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("gymnasium_robotics") is None:
        return False, "gymnasium-robotics is not installed (pip install gymnasium-robotics)"
    return True, ""


def _import_robotics():
    """``import gymnasium_robotics`` without its import-time notice.

    gymnasium-robotics 1.2.1-1.4.2 print a Farama notification to stderr when imported (that
    the Adroit hand envs changed their reward), about environments rewardgym does not use;
    printed before every command's output it reads like an error. The notice is looked up in
    ``farama_notifications.notifications["gymnasium_robotics"]`` at import, so dropping that
    entry first hides exactly it: warnings and errors are untouched.
    """
    try:
        from farama_notifications import notifications

        notifications.pop("gymnasium_robotics", None)
    except ImportError:  # pragma: no cover - an install without the notification package
        pass
    import gymnasium_robotics

    return gymnasium_robotics


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> FetchTaskEnv:
    """Build the task ``task_id``: ``gym.make(base_id)`` + :class:`FlattenGoalObservation`."""
    try:
        gymnasium_robotics = _import_robotics()
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise TaskUnavailableError(f"gymnasium-robotics is not installed: {e}") from e
    gym.register_envs(gymnasium_robotics)
    spec = _SPECS[task_id]
    base = gym.make(spec.base_id, render_mode=render_mode, **base_kwargs)
    # SimulatorEnv: the flattened env is no longer a goal env, so hide compute_reward from checkers.
    return FetchTaskEnv(SimulatorEnv(FlattenGoalObservation(base)), spec, state_in_info=state_in_info)


def success(state: StateView) -> np.ndarray:
    """The env's own success test (``info['is_success']``), (B,) bool."""
    return np.asarray(state.task_success, dtype=np.bool_)


_SUCCESS = ("|{what} - goal_pos| < 0.05 m (the env's info['is_success'], distance_threshold "
            "0.05 m).")

_T = [
    ("Reach", "FetchReach-v4",
     "Move the gripper (grip_pos) to the goal position goal_pos in the air and keep it there.",
     _SUCCESS.format(what="grip_pos")),
    ("Push", "FetchPush-v4",
     "Push the cube (obj_pos) along the table to the goal position goal_pos on the table; the "
     "gripper fingers are locked closed.",
     _SUCCESS.format(what="obj_pos")),
    ("PickAndPlace", "FetchPickAndPlace-v4",
     "Grasp the cube (obj_pos) with the gripper and move it to the goal position goal_pos, "
     "which is on the table or up to 0.45 m above it.",
     _SUCCESS.format(what="obj_pos")),
    ("Slide", "FetchSlide-v4",
     "Hit the puck (obj_pos) so that it slides across the low-friction table and comes to rest "
     "at the goal position goal_pos, which lies beyond the gripper's reach; the fingers are "
     "locked closed.",
     _SUCCESS.format(what="obj_pos")),
]

TASKS: list[TaskSpec] = [
    TaskSpec(
        id=f"rewardgym/Fetch-{name}-v0",
        family="fetch",
        base_id=base_id,
        instruction=instruction,
        success_doc=success_doc,
        success=success,
        view=VIEW,
        make_env=functools.partial(make_env, f"rewardgym/Fetch-{name}-v0"),
        max_episode_steps=MAX_EPISODE_STEPS,
        expert=f"Fetch-{name}.py",
        available=_available,
        tags=("standard",),
    )
    for name, base_id, instruction, success_doc in _T
]
_SPECS = {spec.id: spec for spec in TASKS}
