"""Meta-World (v3) tasks: a Sawyer arm on a table, the MT10 set (Yu et al., 2019).

Every task is one Meta-World v3 environment class (``metaworld.env_dict.ALL_V3_ENVIRONMENTS``)
built directly, in the multi-task ("goal observable") setting: the goal position is the
last 3 entries of the 39-d observation, and object/goal positions are drawn afresh from
the task's ``_random_reset_space`` on *every* reset with the env's own seeded generator
(``seeded_rand_vec``). This differs from ``gym.make("Meta-World/MT1")``, whose
``RandomTaskSelectWrapper`` picks one of 50 positions fixed when the benchmark is built;
here the distribution is the full continuous one. Meta-World ignores ``reset(seed=...)``
(it expects ``env.seed(s)``); :class:`MetaWorldSeeding` forwards the seed so that
``reset(seed=s)`` is deterministic. Episodes last 500 steps (Meta-World's own
``max_path_length`` truncation); success never terminates an episode.

Success is Meta-World's own ``info["success"]``, kept in the raw row as ``task_success``
(False at reset, as Meta-World only evaluates success on steps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.envs.task import SimulatorEnv, TaskEnv, TaskSpec, TaskUnavailableError
from rewardgym.envs.view import Field, StateView, ViewSpec, raw, raw_distance

MAX_EPISODE_STEPS = 500


VIEW = ViewSpec.build(
    "metaworld",
    doc=(
        "Meta-World v3: a Sawyer arm with a two-finger gripper above a table. World frame: "
        "x to the robot's right, y away from the robot base (forward, over the table), z up; "
        "positions in metres (the table top is at z = 0). The action is (dx, dy, dz, grip) "
        "in [-1, 1]: a hand displacement of up to 1 cm per axis per step (mocap-controlled) "
        "and the gripper command (+1 closes, -1 opens). One step is 12.5 ms x 5 = 62.5 ms of "
        "simulation; episodes last 500 steps and do not end on success. `obj_pos` is the "
        "task's main object point, as Meta-World reports it in its observation (a block, "
        "peg, or the handle/button the hand must act on: see the task instruction)."
    ),
    fields=[
        Field("hand_pos", "(B, 3)", "m",
              "Tool centre point: midpoint of the two fingertip sites (Meta-World's "
              "`tcp_center`), world frame.", raw("hand_pos")),
        Field("gripper_opening", "(B,)", "-",
              "Distance between the two fingers divided by 0.1 m, clipped to [0, 1]: 1 = fully "
              "open, ~0 = closed on nothing; closed on an object it stays above 0 (Meta-World "
              "observation entry 3).", raw("gripper_opening")),
        Field("obj_pos", "(B, 3)", "m",
              "Position of the task's main object point (Meta-World `_get_pos_objects()`: block "
              "centre, peg grasp point, door/drawer/window handle, or button top), world frame.",
              raw("obj_pos")),
        Field("obj_quat", "(B, 4)", "-",
              "Orientation (w, x, y, z) of the MuJoCo body carrying obj_pos, world frame "
              "(identity-like and constant for bodies that only slide).", raw("obj_quat")),
        Field("goal_pos", "(B, 3)", "m",
              "Goal position for this episode (Meta-World `_target_pos`, randomised at reset), "
              "world frame; what must reach it is stated in the instruction.", raw("goal_pos")),
        Field("obj_init_pos", "(B, 3)", "m",
              "obj_pos at the reset of this episode (constant within an episode).",
              raw("obj_init_pos")),
        Field("hand_init_pos", "(B, 3)", "m",
              "hand_pos at the reset of this episode (constant within an episode).",
              raw("hand_init_pos")),
        Field("obj_to_goal", "(B,)", "m",
              "Euclidean distance |obj_pos - goal_pos| (3-D; the success test may use fewer "
              "axes, see goal_error).", raw_distance("obj_pos", "goal_pos")),
        Field("hand_to_obj", "(B,)", "m", "Euclidean distance |hand_pos - obj_pos|.",
              raw_distance("hand_pos", "obj_pos")),
        Field("hand_to_goal", "(B,)", "m", "Euclidean distance |hand_pos - goal_pos|.",
              raw_distance("hand_pos", "goal_pos")),
        Field("goal_error", "(B,)", "m",
              "The quantity Meta-World's success test compares with goal_tolerance for this "
              "task (defined in the success test); success iff goal_error <= goal_tolerance.",
              raw("goal_error")),
        Field("goal_error_init", "(B,)", "m",
              "goal_error at the reset of this episode (constant within an episode).",
              raw("goal_error_init")),
        Field("goal_tolerance", "(B,)", "m",
              "The task's success threshold on goal_error (constant).",
              raw("goal_tolerance"), previous=False),
        Field("grasped", "(B,)", "bool",
              "Both finger pads touch the object's body with positive contact force (Meta-World's "
              "`touching_main_object` test, read from MuJoCo contacts).", raw("grasped", np.bool_)),
        Field("task_success", "(B,)", "bool",
              "Meta-World's own success flag `info['success']` for the last step (False at reset).",
              raw("task_success", np.bool_)),
    ],
)


@dataclass(frozen=True)
class _Task:
    """One row of the task table."""

    name: str  # our name, e.g. "PickPlace"
    env_name: str  # Meta-World name, e.g. "pick-place-v3"
    obj_body: str  # body carrying obj_pos ("site:<name>" = the body of that site)
    error: str  # how goal_error is measured: hand | xyz | x | z | peg
    tolerance: float  # success threshold on goal_error (m)
    instruction: str
    success_doc: str


_T = [
    _Task("Reach", "reach-v3", "obj", "hand", 0.05,
          "Move the robot's hand (tool centre point) to the goal position goal_pos and keep it "
          "there. The block at obj_pos is not involved.",
          "goal_error = |hand_pos - goal_pos| <= 0.05 m (Meta-World reach-v3 info['success'])."),
    _Task("Push", "push-v3", "obj", "xyz", 0.05,
          "Push the block (obj_pos, its centre) across the table to the goal position goal_pos "
          "(on the table surface).",
          "goal_error = |obj_pos - goal_pos| <= 0.05 m (Meta-World push-v3 info['success'])."),
    _Task("PickPlace", "pick-place-v3", "obj", "xyz", 0.07,
          "Pick up the block (obj_pos, its centre) with the gripper and place it at the goal "
          "position goal_pos, which may be in the air above the table.",
          "goal_error = |obj_pos - goal_pos| <= 0.07 m (Meta-World pick-place-v3 info['success'])."),
    _Task("DoorOpen", "door-open-v3", "door_link", "x", 0.08,
          "Open the door by pulling its handle: swing it open on its hinge until the handle "
          "(obj_pos) reaches goal_pos's x coordinate. obj_pos is the door handle.",
          "goal_error = |obj_pos.x - goal_pos.x| <= 0.08 m (Meta-World door-open-v3 info['success'])."),
    _Task("DrawerOpen", "drawer-open-v3", "drawer_link", "xyz", 0.03,
          "Open the drawer by pulling its handle (obj_pos) toward the robot (-y) until the "
          "handle is at goal_pos (0.2 m out). obj_pos is the drawer handle.",
          "goal_error = |obj_pos - goal_pos| <= 0.03 m (Meta-World drawer-open-v3 info['success'])."),
    _Task("DrawerClose", "drawer-close-v3", "drawer_link", "xyz", 0.065,
          "Close the open drawer by pushing its front (obj_pos) away from the robot (+y) until "
          "it is at goal_pos. obj_pos is a point on the drawer front above the handle.",
          "goal_error = |obj_pos - goal_pos| <= 0.065 m (Meta-World drawer-close-v3 info['success'])."),
    _Task("ButtonPressTopdown", "button-press-topdown-v3", "button", "z", 0.024,
          "Press the button down from above with the hand until its top (obj_pos) reaches the "
          "height of goal_pos. obj_pos is the top of the button.",
          "goal_error = |obj_pos.z - goal_pos.z| <= 0.024 m (Meta-World button-press-topdown-v3 "
          "info['success'])."),
    _Task("PegInsertSide", "peg-insert-side-v3", "peg", "peg", 0.07,
          "Pick up the peg (obj_pos is its grasp point) and insert its head sideways into the "
          "hole of the box, whose entrance is goal_pos.",
          "goal_error = |(peg_head - goal_pos) * (1, 2, 2)| <= 0.07 m, the peg head being the "
          "peg's end site (Meta-World peg-insert-side-v3 info['success'])."),
    _Task("WindowOpen", "window-open-v3", "site:handleOpenStart", "x", 0.05,
          "Slide the window open to the right (+x) by pushing its handle until the handle "
          "(obj_pos) reaches goal_pos's x coordinate. obj_pos is the window handle.",
          "goal_error = |obj_pos.x - goal_pos.x| <= 0.05 m (Meta-World window-open-v3 info['success'])."),
    _Task("WindowClose", "window-close-v3", "site:handleCloseStart", "x", 0.05,
          "Slide the open window closed to the left (-x) by pushing its handle until the handle "
          "(obj_pos) reaches goal_pos's x coordinate. obj_pos is the window handle.",
          "goal_error = |obj_pos.x - goal_pos.x| <= 0.05 m (Meta-World window-close-v3 info['success'])."),
]


class MetaWorldSeeding(gym.Wrapper):
    """Makes ``reset(seed=s)`` seed a Meta-World env (which ignores the argument).

    Meta-World v3 envs draw object/goal positions from ``env.np_random`` when
    ``seeded_rand_vec`` is set, but only ``env.seed(s)`` reseeds it; this forwards the seed.
    """

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(seed)
        return self.env.reset(seed=None, options=options)


class MetaWorldTaskEnv(TaskEnv):
    """A Meta-World v3 env reporting the ``metaworld`` view's raw row.

    ``read_raw`` copies a few MuJoCo arrays (fingertip sites, the object point, one body
    quaternion) and scans the contact list once (vectorised) for the pad/object test.
    """

    def __init__(self, env: gym.Env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        import mujoco

        mw = self.sim
        model = mw.model
        row: _Task = task.extra["mw"]
        if row.obj_body.startswith("site:"):
            self._obj_body = int(model.site_bodyid[model.site(row.obj_body[5:]).id])
        else:
            self._obj_body = int(model.body(row.obj_body).id)
        self._pads = (int(model.geom("leftpad_geom").id), int(model.geom("rightpad_geom").id))
        self._right_tip = int(model.site("rightEndEffector").id)
        self._left_tip = int(model.site("leftEndEffector").id)
        self._right_claw = int(model.body("rightclaw").id)
        self._left_claw = int(model.body("leftclaw").id)
        self._peg_head = int(model.site("pegHead").id) if row.error == "peg" else -1
        self._error = row.error
        self._tolerance = float(row.tolerance)
        self._geom_body = np.asarray(model.geom_bodyid)
        self._geom_body_list = self._geom_body.tolist()
        self._mujoco = mujoco
        self._task_success = False
        self._obj_init = np.zeros(3)
        self._hand_init = np.zeros(3)
        self._err_init = 0.0

    # -- helpers --------------------------------------------------------------
    def _hand(self) -> np.ndarray:
        xpos = self.sim.data.site_xpos
        return 0.5 * (xpos[self._right_tip] + xpos[self._left_tip])

    def _goal_error(self, hand: np.ndarray, obj: np.ndarray, goal: np.ndarray) -> float:
        kind = self._error
        if kind == "hand":
            return float(np.linalg.norm(hand - goal))
        if kind == "xyz":
            return float(np.linalg.norm(obj - goal))
        if kind == "x":
            return float(abs(obj[0] - goal[0]))
        if kind == "z":
            return float(abs(obj[2] - goal[2]))
        head = self.sim.data.site_xpos[self._peg_head]
        return float(np.linalg.norm((head - goal) * np.array([1.0, 2.0, 2.0])))

    def _grasped(self) -> bool:
        """Both pads press on the object: Meta-World's ``touching_main_object`` on each pad
        (sum of the normal forces of the pad's contacts with the object body > 0).

        A loop over the few active contacts (``ncon`` is a handful): a dozen numpy calls on
        arrays of that size cost more than the loop."""
        data = self.sim.data
        n = data.ncon
        if n == 0:
            return False
        body, obj = self._geom_body_list, self._obj_body
        left, right = self._pads
        force = address = None
        sums = {left: 0.0, right: 0.0}
        for i, (a, b) in enumerate(data.contact.geom[:n].tolist()):
            if body[b] == obj:
                pad = a
            elif body[a] == obj:
                pad = b
            else:
                continue
            if pad in sums:
                if force is None:
                    force, address = data.efc_force, data.contact.efc_address
                sums[pad] += float(force[address[i]])
        return sums[left] > 0.0 and sums[right] > 0.0

    # -- TaskEnv hooks --------------------------------------------------------
    def on_reset(self, obs: Any, info: dict) -> None:
        mw = self.sim
        # Some resets (window-close) set joint positions without recomputing kinematics;
        # mj_forward makes site/body positions match qpos (it does not change the state).
        self._mujoco.mj_forward(mw.model, mw.data)
        self._task_success = False
        self._hand_init = self._hand().copy()
        self._obj_init = np.array(mw._get_pos_objects(), dtype=np.float64)[:3].copy()
        self._err_init = self._goal_error(self._hand_init, self._obj_init,
                                          np.asarray(mw._target_pos, dtype=np.float64))

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        self._task_success = bool(info.get("success", 0.0))

    def read_raw(self) -> dict[str, Any]:
        mw = self.sim
        data = mw.data
        hand = self._hand()
        obj = np.array(mw._get_pos_objects(), dtype=np.float64)[:3]
        goal = np.array(mw._target_pos, dtype=np.float64)
        claws = data.xpos[self._right_claw] - data.xpos[self._left_claw]
        return {
            "hand_pos": hand,
            "gripper_opening": float(np.clip(np.linalg.norm(claws) / 0.1, 0.0, 1.0)),
            "obj_pos": obj,
            "obj_quat": data.xquat[self._obj_body].copy(),
            "goal_pos": goal,
            "obj_init_pos": self._obj_init,
            "hand_init_pos": self._hand_init,
            "goal_error": self._goal_error(hand, obj, goal),
            "goal_error_init": self._err_init,
            "goal_tolerance": self._tolerance,
            "grasped": self._grasped(),
            "task_success": self._task_success,
        }


def _available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("metaworld") is None:
        return False, "metaworld is not installed (pip install metaworld)"
    return True, ""


def make_metaworld_base(env_name: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """A Meta-World v3 env with observable goal, per-reset randomisation and seedable reset.

    Args:
        env_name: Meta-World v3 name, e.g. ``"reach-v3"``.
        render_mode: passed to the env class (``"rgb_array"``, ``"human"``, ...).
        **kwargs: other constructor arguments (``camera_name``, ``width``, ``height``,
            ``reward_function_version``).
    """
    try:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise TaskUnavailableError(f"metaworld is not installed: {e}") from e
    env = ALL_V3_ENVIRONMENTS[env_name](render_mode=render_mode, **kwargs)
    env._partially_observable = False  # goal in the last 3 observation entries
    env._freeze_rand_vec = False  # new object/goal positions on every reset ...
    env.seeded_rand_vec = True  # ... drawn from env.np_random (seedable)
    env._set_task_called = True
    if "sawyer_observation_space" in env.__dict__:  # cached for the goal-hidden setting
        del env.sawyer_observation_space
    env.observation_space = env.sawyer_observation_space
    # SimulatorEnv: Meta-World classes define compute_reward, which checkers take for the goal-env API.
    return SimulatorEnv(MetaWorldSeeding(env))


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> MetaWorldTaskEnv:
    """Build the task ``task_id`` (module-level and picklable through functools.partial)."""
    spec = _SPECS[task_id]
    base = make_metaworld_base(spec.base_id, render_mode=render_mode, **base_kwargs)
    return MetaWorldTaskEnv(base, spec, state_in_info=state_in_info)


def success(state: StateView) -> np.ndarray:
    """Meta-World's own success flag (``info['success']``), (B,) bool."""
    return np.asarray(state.task_success, dtype=np.bool_)


MT10 = ("Reach", "Push", "PickPlace", "DoorOpen", "DrawerOpen", "DrawerClose",
        "ButtonPressTopdown", "PegInsertSide", "WindowOpen", "WindowClose")

TASKS: list[TaskSpec] = [
    TaskSpec(
        id=f"rewardgym/MetaWorld-{t.name}-v0",
        family="metaworld",
        base_id=t.env_name,
        instruction=t.instruction,
        success_doc=t.success_doc,
        success=success,
        view=VIEW,
        make_env=functools.partial(make_env, f"rewardgym/MetaWorld-{t.name}-v0"),
        max_episode_steps=MAX_EPISODE_STEPS,
        expert=f"MetaWorld-{t.name}.py",
        available=_available,
        tags=("standard", "MT10") if t.name in MT10 else ("standard",),
        extra={"mw": t},
    )
    for t in _T
]
_SPECS = {spec.id: spec for spec in TASKS}
