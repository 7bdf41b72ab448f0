"""ManiSkill 3 table-top manipulation on SAPIEN/PhysX CPU physics, on any machine.

Each env is one ManiSkill env (``num_envs=1``, ``sim_backend="physx_cpu"``,
``obs_mode="state"``, ``render_backend="none"``) behind ManiSkill's own
``CPUGymWrapper``, which returns numpy observations ``(D,)`` and scalar rewards; the
task's raw row is read from the simulator's actors (torch tensors, row 0) into numpy like
every other family, so ``gym.make_vec`` batches single envs with Gymnasium's Sync or
Async vector env (ManiSkill itself refuses ``num_envs > 1`` on the CPU backend).
Episodes end when ManiSkill's ``evaluate()`` reports success (``terminated``) or at the
registered step limit (``truncated``). ``mani-skill`` is a default dependency.

No render device
----------------
ManiSkill builds SAPIEN render materials (``sapien.render.RenderMaterial``) while it loads
actors and the robot's URDF even when nothing is rendered, and a material needs a Vulkan
device: on a machine without one (no GPU, no Vulkan driver) every task fails with
``RuntimeError: failed to find a rendering device``. Where -- and only where -- creating a
material fails like that, :func:`ensure_physics_only` replaces the material and texture
classes, in the modules that name them, by :class:`InertRenderMaterial`, which accepts and
drops every setting. Materials only colour visual shapes; ManiSkill attaches visual shapes
only to scenes that can render (``scene.can_render()``), which a scene without a render
device cannot, so physics, observations, rewards and ``evaluate()`` are unaffected (the
test suite checks that the patched path is deterministic and that the view reads what
ManiSkill's own observation and ``evaluate()`` report). Camera observations and
``render_mode`` need a real device: asking for them without one is a one-line
:class:`TaskUnavailableError`.

Downloads
---------
rewardgym never downloads at run time. ManiSkill asks on stdin before it downloads a
task's missing assets; tasks whose assets are missing are reported unavailable (with the
command that fetches them) before ManiSkill is reached, so nothing prompts or hangs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rewardgym.envs.task import SimulatorEnv, TaskEnv, TaskSpec, TaskUnavailableError
from rewardgym.envs.view import Field, StateView, ViewSpec, raw, raw_distance

CPU_BACKENDS = ("physx_cpu", "cpu")
"""``sim_backend`` values of the single-env path (ManiSkill's ``CPUGymWrapper`` accepts no other)."""

STATE_OBS_MODES = ("state", "state_dict", "none")
"""Observation modes that need no camera (and so no render device)."""


# -- availability ---------------------------------------------------------------------------
def asset_dir() -> Path:
    """ManiSkill's download folder for non-package data (``$MS_ASSET_DIR/data``, default
    ``~/.maniskill/data``), computed as ManiSkill does, without importing it."""
    return Path(os.getenv("MS_ASSET_DIR", os.path.join(os.path.expanduser("~"), ".maniskill"))) / "data"


@functools.lru_cache(maxsize=1)
def installed() -> tuple[bool, str]:
    """(ok, reason): ``mani_skill`` and ``sapien`` importable (not imported: ``list`` stays fast)."""
    for module, package in (("mani_skill", "mani-skill"), ("sapien", "sapien")):
        if importlib.util.find_spec(module) is None:
            return False, (f"{package} is not installed (a default dependency of rewardgym: "
                           f"pip install 'mani-skill>=3.0.1,<3.1')")
    return True, ""


def _needs_assets(*relative: str, download: str) -> Callable[[], tuple[bool, str]]:
    """An ``available`` test: the package, plus ManiSkill data under :func:`asset_dir`."""

    def available() -> tuple[bool, str]:
        ok, reason = installed()
        if not ok:
            return ok, reason
        missing = [r for r in relative if not (asset_dir() / r).exists()]
        if missing:
            return False, (f"needs the ManiSkill assets [{download}], missing at {asset_dir() / missing[0]}; "
                           f"rewardgym never downloads: run `python -m mani_skill.utils.download_asset "
                           f"{download}` first")
        return True, ""

    return available


# -- the no-render-device patch ---------------------------------------------------------------
class InertRenderMaterial:
    """Stands in for ``sapien.render.RenderMaterial`` / ``RenderTexture2D`` where no render
    device exists: takes any arguments, drops every attribute set and every ``set_*`` call.
    Reading an attribute that was never a setter raises ``AttributeError`` (nothing renders
    with it: visual shapes are not attached to a scene that cannot render)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("set_"):
            return lambda *args, **kwargs: None
        raise AttributeError(f"{name}: an inert render material (no render device) has no {name}")


_PATCHED_MODULES = ("sapien.render", "sapien.pysapien.render", "sapien.wrapper.urdf_loader",
                    "sapien.wrapper.renderer", "mani_skill.utils.building._mjcf_loader")
_PATCHED_NAMES = ("RenderMaterial", "RenderTexture2D")
_STATE: dict[str, Any] = {}


def _import_quietly(name: str) -> Any:
    """Import a SAPIEN/ManiSkill module without its import-time warnings (the Vulkan loader's
    "Failed to find system libvulkan" fallback notice, deprecations): printed before every
    command's output they read like errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def render_device_error() -> str | None:
    """None if this process can create a SAPIEN render material (a Vulkan device exists), else
    SAPIEN's reason. Probed once per process, before any patch."""
    if "render_error" not in _STATE:
        render = _import_quietly("sapien.render")
        try:
            render.RenderMaterial()
            _STATE["render_error"] = None
        except RuntimeError as exc:  # "failed to find a rendering device"
            _STATE["render_error"] = str(exc) or type(exc).__name__
    return _STATE["render_error"]


def patched() -> bool:
    """Whether :func:`ensure_physics_only` replaced SAPIEN's render materials in this process."""
    return bool(_STATE.get("patched"))


def ensure_physics_only() -> bool:
    """Make ManiSkill's physics runnable in this process; True if the patch was needed.

    Where a render material can be created nothing changes. Where it cannot, the material and
    texture classes are replaced by :class:`InertRenderMaterial` in exactly the modules that
    hold a reference to them (``sapien.render``, ``sapien.pysapien.render``, SAPIEN's URDF
    loader and renderer wrapper, ManiSkill's MJCF loader). Idempotent."""
    if render_device_error() is None:
        return False
    if not _STATE.get("patched"):
        originals = {}
        for module_name in _PATCHED_MODULES:
            module = _import_quietly(module_name)
            for name in _PATCHED_NAMES:
                if hasattr(module, name):
                    originals[(module_name, name)] = getattr(module, name)
                    setattr(module, name, InertRenderMaterial)
        _STATE["originals"] = originals
        _STATE["patched"] = True
    return True


# -- the view -----------------------------------------------------------------------------------
VIEW = ViewSpec.build(
    "maniskill",
    doc=(
        "ManiSkill 3 (SAPIEN/PhysX): a 7-DoF Franka Panda arm with a parallel gripper at a "
        "table. World frame, metres: the table top is the plane z = 0, the robot base stands "
        "at x = -0.615 facing +x, y to the robot's left, z up. Quaternions are (w, x, y, z). "
        "The action (control mode pd_ee_delta_pos) is (dx, dy, dz, grip) in [-1, 1]: a target "
        "displacement of the tool centre point of up to 0.1 m per axis per step (world axes) "
        "and the finger target (-1 closes, +1 opens fully); PegInsertionSide uses "
        "pd_ee_delta_pose, (dx, dy, dz, drx, dry, drz, grip), adding an axis-angle rotation of "
        "up to 0.1 rad per axis. One step is 0.05 s (20 Hz control, 100 Hz physics). `obj` is "
        "the object the task moves (the cube, cube A, or the peg); `goal` is where its head "
        "must go (PickCube: the goal point; PushCube/PullCube: the centre of the target disc "
        "on the table; StackCube: the point one cube height above cube B's centre, with cube "
        "B's orientation; PegInsertionSide: the centre of the hole's mouth, x axis along the "
        "hole towards its far side). The episode ends on success."
    ),
    fields=[
        Field("tcp_pos", "(B, 3)", "m",
              "Tool centre point (between the fingertips, link panda_hand_tcp), world frame.",
              raw("tcp_pos")),
        Field("tcp_quat", "(B, 4)", "-", "Orientation of the tool centre point frame, world frame.",
              raw("tcp_quat")),
        Field("gripper_width", "(B,)", "m",
              "Sum of the two finger joint positions ~ gap between the fingers: 0.08 fully open, "
              "0 closed on nothing.", raw("gripper_width")),
        Field("qpos", "(B, 9)", "rad | m", "Arm joint angles (7, rad) and finger joint positions (2, m).",
              raw("qpos")),
        Field("qvel", "(B, 9)", "rad/s | m/s", "Arm and finger joint velocities.", raw("qvel")),
        Field("obj_pos", "(B, 3)", "m", "Origin of the task's object frame (the cube's or the peg's centre), world frame.",
              raw("obj_pos")),
        Field("obj_quat", "(B, 4)", "-", "Orientation of the task's object, world frame.", raw("obj_quat")),
        Field("obj_lin_vel", "(B, 3)", "m/s", "Linear velocity of the object, world frame.",
              raw("obj_lin_vel")),
        Field("obj_ang_vel", "(B, 3)", "rad/s", "Angular velocity of the object, world frame.",
              raw("obj_ang_vel")),
        Field("obj_head_pos", "(B, 3)", "m",
              "The point of the object that must reach the goal, world frame: the peg's head (the "
              "end at +half-length along the peg's x axis) in PegInsertionSide, else obj_pos.",
              raw("obj_head_pos")),
        Field("goal_pos", "(B, 3)", "m", "Origin of the goal frame (see above), world frame.",
              raw("goal_pos")),
        Field("goal_quat", "(B, 4)", "-", "Orientation of the goal frame, world frame.", raw("goal_quat")),
        Field("head_in_goal", "(B, 3)", "m",
              "obj_head_pos expressed in the goal frame (x, y, z): in PegInsertionSide x >= -0.015 "
              "means inserted past the mouth and |y|, |z| <= goal_radius means inside the hole.",
              raw("head_in_goal")),
        Field("goal_radius", "(B,)", "m",
              "The task's success tolerance around the goal (PickCube 0.025 3-D; PushCube/PullCube "
              "0.1 in x-y; StackCube 0.0333 in x-y; PegInsertionSide the hole radius); constant "
              "within an episode.", raw("goal_radius"), previous=False),
        Field("tcp_to_obj", "(B,)", "m", "Euclidean distance |tcp_pos - obj_pos|.",
              raw_distance("tcp_pos", "obj_pos")),
        Field("obj_to_goal", "(B,)", "m", "Euclidean distance |obj_head_pos - goal_pos|.",
              raw_distance("obj_head_pos", "goal_pos")),
        Field("is_grasped", "(B,)", "bool",
              "ManiSkill's grasp test (agent.is_grasping): both fingers press the object with "
              "at least 0.5 N at less than 85 degrees from their closing direction.",
              raw("is_grasped", np.bool_)),
        Field("is_robot_static", "(B,)", "bool",
              "Every arm joint moves slower than 0.2 rad/s (ManiSkill's agent.is_static(0.2)).",
              raw("is_robot_static", np.bool_)),
        Field("is_obj_static", "(B,)", "bool",
              "The object moves slower than 0.01 m/s and turns slower than 0.5 rad/s.",
              raw("is_obj_static", np.bool_)),
        Field("task_success", "(B,)", "bool",
              "ManiSkill's own success test (evaluate()['success']) on this state.",
              raw("task_success", np.bool_)),
    ],
)


# -- per-task readers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """What a task reader returns from the simulator env (ManiSkill ``Pose`` s, batch 1)."""

    obj: Any  # the Actor the task moves
    head: Any  # Pose of the object's head
    goal: Any  # Pose of the goal frame
    goal_radius: Any  # float or (1,) tensor


def _cube_goal(u, obj, goal_actor, radius) -> Reading:
    return Reading(obj=obj, head=obj.pose, goal=goal_actor.pose, goal_radius=radius)


def _read_pick_cube(u) -> Reading:
    return _cube_goal(u, u.cube, u.goal_site, u.goal_thresh)


def _read_pick_ycb(u) -> Reading:
    return _cube_goal(u, u.obj, u.goal_site, u.goal_thresh)


def _read_push_pull(u) -> Reading:
    return _cube_goal(u, u.obj, u.goal_region, u.goal_radius)


def _read_stack(u) -> Reading:
    import torch
    from mani_skill.utils.structs.pose import Pose

    half = u.cube_half_size  # (3,) tensor
    b = u.cubeB.pose
    goal = Pose.create_from_pq(p=b.p + torch.tensor([0.0, 0.0, 2.0 * float(half[2])], device=b.p.device), q=b.q)
    radius = float(torch.linalg.norm(half[:2])) + 0.005
    return Reading(obj=u.cubeA, head=u.cubeA.pose, goal=goal, goal_radius=radius)


def _read_peg(u) -> Reading:
    return Reading(obj=u.peg, head=u.peg.pose * u.peg_head_offsets, goal=u.box_hole_pose,
                   goal_radius=u.box_hole_radii)


def _row0(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy()[0], dtype=np.float64)


def rotate_inverse(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``R(q)^T v`` for a unit quaternion ``q = (w, x, y, z)``: ``v`` (world axes) in the frame ``q``."""
    w, u = q[0], -q[1:]  # the conjugate rotation
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


GRASP_REACH = 0.3
"""m: farther than this from the tool centre point, no finger can touch the task's object (the
fingertips are within 0.07 m of it and no object point is more than 0.15 m from the object's
origin), so ``is_grasped`` is False without ManiSkill's contact query (about 2 ms a step)."""


class ManiSkillTaskEnv(TaskEnv):
    """A single ManiSkill env (``num_envs=1``, CPU physics) reporting the ``maniskill`` view's raw row."""

    def __init__(self, env, task: TaskSpec, reader: Callable[[Any], Reading], state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        self._reader = reader
        self._grasp_key = task.extra.get("grasp_info_key")
        self._success = False
        self._grasped: bool | None = None

    def _take_success(self, info: dict) -> None:
        """Keep what ManiSkill's ``evaluate()`` just computed for this state (it runs in every
        reset and step): success, and the grasp test where the task's evaluate() makes it."""
        self._success = bool(np.asarray(info.get("success", False)).reshape(-1)[0])
        grasped = info.get(self._grasp_key) if self._grasp_key else None
        self._grasped = None if grasped is None else bool(np.asarray(grasped).reshape(-1)[0])

    def on_reset(self, obs: Any, info: dict) -> None:
        self._take_success(info)

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        self._take_success(info)

    def read_raw(self) -> dict[str, Any]:
        u = self.sim
        r = self._reader(u)
        tcp = u.agent.tcp.pose
        robot = u.agent.robot
        qpos = _row0(robot.get_qpos())
        radius = r.goal_radius
        radius = float(radius) if isinstance(radius, (int, float)) else float(_row0(radius.reshape(-1, 1))[0])
        tcp_pos, obj_pos = _row0(tcp.p), _row0(r.obj.pose.p)
        head, goal_pos, goal_quat = _row0(r.head.p), _row0(r.goal.p), _row0(r.goal.q)
        grasped = self._grasped
        if grasped is None:
            grasped = (np.linalg.norm(tcp_pos - obj_pos) <= GRASP_REACH
                       and bool(u.agent.is_grasping(r.obj).reshape(-1)[0]))
        return {
            "tcp_pos": tcp_pos, "tcp_quat": _row0(tcp.q),
            "gripper_width": float(qpos[7] + qpos[8]), "qpos": qpos, "qvel": _row0(robot.get_qvel()),
            "obj_pos": obj_pos, "obj_quat": _row0(r.obj.pose.q),
            "obj_lin_vel": _row0(r.obj.linear_velocity), "obj_ang_vel": _row0(r.obj.angular_velocity),
            "obj_head_pos": head, "goal_pos": goal_pos, "goal_quat": goal_quat,
            "head_in_goal": rotate_inverse(goal_quat, head - goal_pos), "goal_radius": radius,
            "is_grasped": bool(grasped),
            "is_robot_static": bool(u.agent.is_static(0.2).reshape(-1)[0]),
            "is_obj_static": bool(r.obj.is_static(lin_thresh=1e-2, ang_thresh=0.5).reshape(-1)[0]),
            "task_success": self._success,
        }


class ManiSkillSimulator(SimulatorEnv):
    """The ManiSkill env as ``env.unwrapped`` (the simulator stays reachable as ``.sim``).

    ManiSkill seeds its own episode generators from ``reset(seed=...)`` and never creates
    Gymnasium's ``np_random``, which Gymnasium's and SB3's env checkers require of a seeded
    env; this env owns a generator seeded with the same seed at every seeded reset (used by
    nothing in the simulator: ManiSkill's randomness stays ManiSkill's)."""

    def __init__(self, sim):
        super().__init__(sim)
        self._own_rng: np.random.Generator | None = None

    @property
    def np_random(self) -> np.random.Generator:
        if self._own_rng is None:
            self._own_rng = np.random.default_rng()
        return self._own_rng

    @property
    def _np_random(self) -> np.random.Generator | None:
        return self._own_rng

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._own_rng = np.random.default_rng(seed)
        return self.sim.reset(seed=seed, options=options)


def _check_assets(task_id: str, base_id: str) -> None:
    """TaskUnavailableError if ManiSkill would ask to download assets for ``base_id`` (its
    ``make`` prompts on stdin, and exits when told no)."""
    from mani_skill.utils import assets
    from mani_skill.utils.registration import REGISTERED_ENVS

    missing = []
    for asset_id in REGISTERED_ENVS[base_id].asset_download_ids or []:
        ids = (assets.expand_data_group_into_individual_data_source_ids(asset_id)
               if asset_id in assets.DATA_GROUPS else [asset_id])
        missing += [i for i in ids if not assets.is_data_source_downloaded(i)]
    if missing:
        raise TaskUnavailableError(
            f"{task_id}: ManiSkill's {base_id} needs assets not on this machine ({missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); rewardgym never downloads: run "
            f"`python -m mani_skill.utils.download_asset {base_id}` first")


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **kwargs: Any) -> ManiSkillTaskEnv:
    """Build the task ``task_id``: one ManiSkill env on CPU physics behind ``CPUGymWrapper``.

    Keyword arguments go to ManiSkill's ``gym.make`` (``robot_init_qpos_noise``,
    ``control_mode`` ...) after these checks, each a one-line error naming the task:

    Raises:
        TaskUnavailableError: ManiSkill is not installed; the task's assets are missing; a
            camera observation mode or ``render_mode`` without a render device.
        ValueError: ``num_envs`` other than 1 or a GPU ``sim_backend`` (use ``gym.make_vec``).
    """
    ok, reason = installed()
    if not ok:
        raise TaskUnavailableError(f"{task_id}: {reason}")
    spec = _SPECS[task_id]
    if kwargs.get("num_envs", 1) != 1:
        raise ValueError(f"{task_id}: num_envs={kwargs['num_envs']!r}: ManiSkill's CPU backend runs one env per "
                         f"object; use gym.make_vec({task_id!r}, num_envs=N) for a vector of them")
    backend = kwargs.pop("sim_backend", "physx_cpu")
    if backend not in CPU_BACKENDS:
        raise ValueError(f"{task_id}: sim_backend={backend!r} is not supported: rewardgym's ManiSkill tasks run "
                         f"one env per object on CPU physics (sim_backend='physx_cpu'); ManiSkill's GPU-batched "
                         f"env is not wired into rewardgym yet")
    kwargs.pop("num_envs", None)
    gym = _import_quietly("gymnasium")
    patched_now = ensure_physics_only()
    obs_mode = kwargs.setdefault("obs_mode", "state")
    if patched_now and (obs_mode not in STATE_OBS_MODES or render_mode is not None):
        what = f"render_mode={render_mode!r}" if render_mode is not None else f"obs_mode={obs_mode!r}"
        raise TaskUnavailableError(
            f"{task_id}: {what} needs a Vulkan render device and none was found here "
            f"({render_device_error()}); use obs_mode='state' without render_mode, or install a Vulkan "
            f"driver (a GPU's, or Mesa >= 25 lavapipe)")
    kwargs.setdefault("render_backend", "none" if patched_now else "gpu")
    kwargs.setdefault("control_mode", spec.extra["control_mode"])
    kwargs.setdefault("enhanced_determinism", True)  # unseeded resets follow the last seed, not torch's global RNG
    _import_quietly("mani_skill.envs")  # registers ManiSkill's ids
    logger = _import_quietly("mani_skill.utils.logging_utils").logger
    if logger.level in (logging.NOTSET, logging.INFO, logging.WARNING):  # unless you chose a level
        logger.setLevel(logging.ERROR)  # its per-build notices ("No initial pose set ...") read like errors
    _check_assets(task_id, spec.base_id)
    wrappers = _import_quietly("mani_skill.utils.wrappers.gymnasium")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ManiSkill warns about the CPU backend's speed, once per env
        base = gym.make(spec.base_id, num_envs=1, sim_backend="physx_cpu", render_mode=render_mode, **kwargs)
    return ManiSkillTaskEnv(ManiSkillSimulator(wrappers.CPUGymWrapper(base)), spec, spec.extra["reader"],
                            state_in_info=state_in_info)


def success(state: StateView) -> np.ndarray:
    """ManiSkill's own ``evaluate()['success']``, (B,) bool."""
    return np.asarray(state.task_success, dtype=np.bool_)


def _task(name: str, base_id: str, reader: Callable[[Any], Reading], instruction: str, success_doc: str,
          steps: int, control_mode: str = "pd_ee_delta_pos", grasp_info_key: str | None = None,
          available: Callable[[], tuple[bool, str]] = installed, tags: tuple[str, ...] = ("cpu",)) -> TaskSpec:
    task_id = f"rewardgym/ManiSkill-{name}-v0"
    return TaskSpec(
        id=task_id, family="maniskill", base_id=base_id, instruction=instruction,
        success_doc=success_doc + " (ManiSkill's evaluate()['success']; the episode ends on it).",
        success=success, view=VIEW, make_env=functools.partial(make_env, task_id),
        max_episode_steps=steps, expert=f"ManiSkill-{name}.py", available=available, tags=tags,
        extra={"reader": reader, "control_mode": control_mode, "grasp_info_key": grasp_info_key})


TASKS: list[TaskSpec] = [
    _task("PickCube", "PickCube-v1", _read_pick_cube,
          "Pick up the 4 cm cube (obj_pos) and hold it at the goal point goal_pos, which may be up to "
          "0.3 m above the table, keeping the arm still.",
          "obj_pos within 0.025 m of goal_pos (3-D) and every arm joint slower than 0.2 rad/s", 50,
          grasp_info_key="is_grasped"),
    _task("PushCube", "PushCube-v1", _read_push_pull,
          "Push the 4 cm cube (obj_pos) along the table onto the red-white target disc (centre goal_pos, "
          "0.1 m radius), which lies in front of the cube in +x, without lifting it.",
          "obj_pos within 0.1 m of goal_pos in x-y and obj_pos z < 0.025 m (the cube on the table)", 50),
    _task("PullCube", "PullCube-v1", _read_push_pull,
          "Pull the 4 cm cube (obj_pos) back along the table towards the robot onto the red-white target "
          "disc (centre goal_pos, 0.1 m radius), which lies behind the cube in -x.",
          "obj_pos within 0.1 m of goal_pos in x-y", 50),
    _task("StackCube", "StackCube-v1", _read_stack,
          "Pick up cube A (obj_pos, 4 cm) and place it on top of cube B so that it rests there (goal_pos is "
          "where cube A's centre must be), then let go of it.",
          "cube A's centre within 0.0333 m of cube B's in x-y and 0.04 +- 0.005 m above it, cube A static "
          "(< 0.01 m/s, < 0.5 rad/s) and not grasped", 50, grasp_info_key="is_cubeA_grasped"),
    _task("PegInsertionSide", "PegInsertionSide-v1", _read_peg,
          "Grasp the peg lying on the table and insert its head (obj_head_pos) sideways into the hole of "
          "the box (goal_pos is the hole's mouth, goal_quat its frame) at least half-way.",
          "head_in_goal x >= -0.015 m and y, z both within +-goal_radius (the hole radius: peg radius + 3 mm)", 100,
          control_mode="pd_ee_delta_pose"),
    _task("PickSingleYCB", "PickSingleYCB-v1", _read_pick_ycb,
          "Pick up the YCB object (obj_pos) and hold it at the goal point goal_pos, keeping the arm still.",
          "obj_pos within 0.025 m of goal_pos (3-D) and the robot static", 50, grasp_info_key="is_grasped",
          available=_needs_assets("assets/mani_skill2_ycb", download="ycb"), tags=("cpu", "download")),
]
_SPECS = {spec.id: spec for spec in TASKS}
