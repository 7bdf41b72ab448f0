"""MuJoCo locomotion tasks on Gymnasium's v5 models (HalfCheetah, Hopper, Walker2d, Ant, Humanoid).

Standard tasks (tag ``"standard"``) run forward, with the base env's own reward as the
``"env"`` reward; new behaviours (tag ``"new-behaviour"``) are defined only by an
instruction and a success test, as in Text2Reward (Xie et al., 2024): flips, lying down,
walking backwards.

The view is read from ``MjData.qpos``/``qvel`` (exact at the end of the control step),
``MjData.subtree_com`` and ``MjData.contact``. :meth:`LocomotionTaskEnv.read_raw` copies
only those (a few small arrays, about 2.5 µs per step on HalfCheetah); everything else
(world positions of the torso, quaternions, Euler angles, healthy tests) is derived lazily
from them in the fields' ``compute`` functions, per model, from the static layouts in
:data:`MODELS` (checked against the MjModel when an env is made).

Pitch sign (checked in ``tests/test_family_locomotion.py``): the planar models' ``rooty``
hinge turns about world +y, and for all five models positive pitch tips the torso's front
(+x) down and its top forward, the direction of a front flip; a back flip is negative.

Size: above 600 lines because one family: four MuJoCo robots' view fields, readers and
tasks, which share their readers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, RawBatch, StateView, ViewSpec, raw

MAX_EPISODE_STEPS = 1000  # the v5 envs' own TimeLimit, kept on the base env


# --------------------------------------------------------------------------------------
# Static model layouts
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelLayout:
    """Where one v5 model keeps its torso and actuated joints in ``qpos``/``qvel``.

    Attributes:
        base_id: the Gymnasium id (``"Hopper-v5"``).
        code: the integer stored in the raw row so lazy fields know the model.
        planar: True for the ``rootx, rootz, rooty`` planar models; False for a free joint.
        torso_z_offset: planar models only: world z of the torso = ``qpos[1] + offset``.
        act_qpos: ``qpos`` index of each actuated joint, in action order.
        act_qvel: ``qvel`` index of each actuated joint, in action order.
        feet: geom names whose contact with the floor is reported, in ``foot_contact`` order.
        joints: joint names in action order (documentation).
    """

    base_id: str
    code: int
    planar: bool
    torso_z_offset: float
    act_qpos: tuple[int, ...]
    act_qvel: tuple[int, ...]
    feet: tuple[str, ...]
    joints: tuple[str, ...]


def _planar(base_id: str, code: int, z_offset: float, joints: tuple[str, ...],
            feet: tuple[str, ...]) -> ModelLayout:
    idx = tuple(range(3, 3 + len(joints)))
    return ModelLayout(base_id, code, True, z_offset, idx, idx, feet, joints)


_HUMANOID_JOINTS = ("abdomen_y", "abdomen_z", "abdomen_x", "right_hip_x", "right_hip_z",
                    "right_hip_y", "right_knee", "left_hip_x", "left_hip_z", "left_hip_y",
                    "left_knee", "right_shoulder1", "right_shoulder2", "right_elbow",
                    "left_shoulder1", "left_shoulder2", "left_elbow")

MODELS: dict[str, ModelLayout] = {m.base_id: m for m in (
    _planar("HalfCheetah-v5", 0, 0.7, ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"),
            ("bfoot", "ffoot")),
    _planar("Hopper-v5", 1, 0.0, ("thigh_joint", "leg_joint", "foot_joint"), ("foot_geom",)),
    _planar("Walker2d-v5", 2, 0.0,
            ("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint", "leg_left_joint",
             "foot_left_joint"),
            ("foot_geom", "foot_left_geom")),
    ModelLayout("Ant-v5", 3, False, 0.0, (13, 14, 7, 8, 9, 10, 11, 12), (12, 13, 6, 7, 8, 9, 10, 11),
                ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom"),
                ("hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3")),
    ModelLayout("Humanoid-v5", 4, False, 0.0, (8, 7) + tuple(range(9, 24)), (7, 6) + tuple(range(8, 23)),
                ("right_foot", "left_foot"), _HUMANOID_JOINTS),
)}
_BY_CODE: tuple[ModelLayout, ...] = tuple(sorted(MODELS.values(), key=lambda m: m.code))

# Raw row layout of ``episode`` (one small float array per env, to keep the row short).
_EP_X_START, _EP_PITCH, _EP_DT, _EP_MODEL, _EP_FEET = range(5)


def _layout(batch: RawBatch) -> ModelLayout:
    """The model of a raw batch (a batch always holds one task, hence one model)."""
    return _BY_CODE[int(batch["episode"][0, _EP_MODEL])]


# --------------------------------------------------------------------------------------
# Lazy field computations (batched numpy)
# --------------------------------------------------------------------------------------
def _torso_pos(batch: RawBatch) -> np.ndarray:
    qpos = batch["qpos"]
    lay = _layout(batch)
    if not lay.planar:
        return qpos[:, 0:3].astype(np.float64)
    out = np.zeros((qpos.shape[0], 3))
    out[:, 0] = qpos[:, 0]
    out[:, 2] = qpos[:, 1] + lay.torso_z_offset
    return out


def _torso_height(batch: RawBatch) -> np.ndarray:
    qpos = batch["qpos"]
    lay = _layout(batch)
    return qpos[:, 1] + lay.torso_z_offset if lay.planar else qpos[:, 2].astype(np.float64)


def _torso_quat(batch: RawBatch) -> np.ndarray:
    qpos = batch["qpos"]
    if not _layout(batch).planar:
        return qpos[:, 3:7].astype(np.float64)
    half = 0.5 * qpos[:, 2]
    out = np.zeros((qpos.shape[0], 4))
    out[:, 0] = np.cos(half)
    out[:, 2] = np.sin(half)
    return out


def _wrap(theta: np.ndarray) -> np.ndarray:
    """Angle to (-pi, pi]."""
    return np.pi - np.mod(np.pi - theta, 2.0 * np.pi)


def _torso_euler(batch: RawBatch) -> np.ndarray:
    qpos = batch["qpos"]
    if _layout(batch).planar:
        out = np.zeros((qpos.shape[0], 3))
        out[:, 1] = _wrap(qpos[:, 2])
        return out
    w, x, y, z = (qpos[:, 3 + i] for i in range(4))
    roll = np.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2.0 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=-1)


def _torso_up(batch: RawBatch) -> np.ndarray:
    qpos = batch["qpos"]
    if _layout(batch).planar:
        return np.cos(qpos[:, 2])
    return 1.0 - 2.0 * (qpos[:, 4] ** 2 + qpos[:, 5] ** 2)


def _torso_lin_vel(batch: RawBatch) -> np.ndarray:
    qvel = batch["qvel"]
    if not _layout(batch).planar:
        return qvel[:, 0:3].astype(np.float64)  # free joint: world-frame linear velocity
    out = np.zeros((qvel.shape[0], 3))
    out[:, 0] = qvel[:, 0]
    out[:, 2] = qvel[:, 1]
    return out


def _quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (B, 3) by unit quaternions ``q`` (B, 4) (w, x, y, z)."""
    u = q[:, 1:4]
    t = 2.0 * np.cross(u, v)
    return v + q[:, :1] * t + np.cross(u, t)


def _torso_ang_vel(batch: RawBatch) -> np.ndarray:
    qvel = batch["qvel"]
    if _layout(batch).planar:
        out = np.zeros((qvel.shape[0], 3))
        out[:, 1] = qvel[:, 2]
        return out
    # free joint: qvel[3:6] is the angular velocity in the torso frame; rotate to world.
    return _quat_rotate(batch["qpos"][:, 3:7], qvel[:, 3:6])


def _joint_pos(batch: RawBatch) -> np.ndarray:
    return batch["qpos"][:, list(_layout(batch).act_qpos)].astype(np.float64)


def _joint_vel(batch: RawBatch) -> np.ndarray:
    return batch["qvel"][:, list(_layout(batch).act_qvel)].astype(np.float64)


def _foot_contact(batch: RawBatch) -> np.ndarray:
    n_feet = len(_layout(batch).feet)
    mask = batch["episode"][:, _EP_FEET].astype(np.int64)
    return ((mask[:, None] >> np.arange(n_feet)) & 1).astype(bool)


def _episode(index: int):
    def compute(batch: RawBatch) -> np.ndarray:
        return batch["episode"][:, index].astype(np.float64)

    compute.__name__ = f"episode_{index}"
    return compute


def _healthy(batch: RawBatch) -> np.ndarray:
    """The v5 envs' own ``is_healthy`` with their default ranges (see the field doc)."""
    qpos, qvel = batch["qpos"], batch["qvel"]
    code = _layout(batch).code
    if code == 0:  # HalfCheetah has no health test
        return np.ones(qpos.shape[0], dtype=bool)
    if code == 1:  # Hopper: z > 0.7, |angle| < 0.2, |qpos[2:], qvel| < 100
        state = np.concatenate([qpos[:, 2:], qvel], axis=1)
        return ((qpos[:, 1] > 0.7) & (np.abs(qpos[:, 2]) < 0.2)
                & np.all(np.abs(state) < 100.0, axis=1))
    if code == 2:  # Walker2d: 0.8 < z < 2, |angle| < 1
        return (qpos[:, 1] > 0.8) & (qpos[:, 1] < 2.0) & (np.abs(qpos[:, 2]) < 1.0)
    if code == 3:  # Ant: finite state and 0.2 <= z <= 1
        finite = np.all(np.isfinite(qpos), axis=1) & np.all(np.isfinite(qvel), axis=1)
        return finite & (qpos[:, 2] >= 0.2) & (qpos[:, 2] <= 1.0)
    return (qpos[:, 2] > 1.0) & (qpos[:, 2] < 2.0)  # Humanoid: 1 < z < 2


def _joint_list(lay: ModelLayout) -> str:
    name = lay.base_id.removesuffix("-v5")
    return f"{name} ({len(lay.joints)}: {', '.join(lay.joints)})"


VIEW = ViewSpec.build(
    "locomotion",
    doc=(
        "MuJoCo locomotion (Gymnasium v5 models). World frame: x is the forward direction "
        "(the direction the standard running tasks reward), z is up, y is to the robot's "
        "left; lengths in metres, angles in radians. HalfCheetah, Hopper and Walker2d are "
        "planar (they move in the x-z plane: y and roll/yaw are always 0); Ant and Humanoid "
        "move freely in 3D. The torso is the root body. Pitch sign, for every model: "
        "positive pitch tips the front of the torso (+x) down and its top forward (the "
        "direction of a front flip); negative pitch tips it nose-up and backwards (a back "
        "flip). One step lasts `dt` seconds (HalfCheetah 0.05, Hopper 0.008, Walker2d "
        "0.008, Ant 0.05, Humanoid 0.015); the action is the actuator command in [-1, 1] "
        "per actuated joint (Humanoid [-0.4, 0.4]). Actuated joints in action order: "
        + "; ".join(_joint_list(m) for m in _BY_CODE) + ". Feet (`foot_contact` columns): "
        "HalfCheetah (back foot, front foot); Hopper (foot); Walker2d (right foot, left "
        "foot); Ant (the lower-leg ankle geoms of legs 1-4, whose hips point to "
        "(+x,+y), (-x,+y), (-x,-y), (+x,-y)); Humanoid (right foot, left foot)."
    ),
    fields=[
        Field("torso_pos", "(B, 3)", "m",
              "Torso (root body) origin in the world frame, read from qpos (planar models: "
              "y = 0).", _torso_pos),
        Field("torso_height", "(B,)", "m",
              "Torso origin height above the floor (z of torso_pos).", _torso_height),
        Field("torso_quat", "(B, 4)", "-",
              "Torso orientation as a unit quaternion (w, x, y, z), torso frame to world "
              "frame (planar models: a rotation about world y by the rooty angle).", _torso_quat),
        Field("torso_euler", "(B, 3)", "rad",
              "Torso (roll, pitch, yaw): planar models give (0, rooty angle wrapped to "
              "(-pi, pi], 0); Ant/Humanoid give Z-Y-X Tait-Bryan angles of torso_quat "
              "(roll about x, pitch about y in [-pi/2, pi/2], yaw about z).", _torso_euler),
        Field("torso_up", "(B,)", "-",
              "World z component of the torso's up axis: 1 upright, 0 on its side or "
              "vertical, -1 upside down.", _torso_up),
        Field("torso_lin_vel", "(B, 3)", "m/s",
              "Linear velocity of the torso origin in the world frame (instantaneous, from "
              "qvel; x is forward speed).", _torso_lin_vel),
        Field("torso_ang_vel", "(B, 3)", "rad/s",
              "Angular velocity of the torso in the world frame (planar models: (0, pitch "
              "rate, 0); positive y = pitching nose-down/forward).", _torso_ang_vel),
        Field("joint_pos", "(B, n_joints)", "rad",
              "Angles of the actuated joints in action order (n_joints: HalfCheetah 6, "
              "Hopper 3, Walker2d 6, Ant 8, Humanoid 17; names in the view description).",
              _joint_pos),
        Field("joint_vel", "(B, n_joints)", "rad/s",
              "Angular velocities of the actuated joints, same order as joint_pos.", _joint_vel),
        Field("foot_contact", "(B, n_feet)", "bool",
              "Whether each foot geom touches the floor, from MjData contacts of the last "
              "physics substep (n_feet: HalfCheetah 2, Hopper 1, Walker2d 2, Ant 4, "
              "Humanoid 2; order in the view description).", _foot_contact),
        Field("com_pos", "(B, 3)", "m",
              "Whole-body centre of mass in the world frame (MjData.subtree_com of the "
              "torso, as computed at the start of the last physics substep, as Humanoid-v5's "
              "own forward reward uses it).", raw("com")),
        Field("healthy", "(B,)", "bool",
              "The base env's own is_healthy test with the v5 default ranges (Hopper: "
              "z > 0.7, |rooty| < 0.2, |qpos[2:], qvel| < 100; Walker2d: 0.8 < z < 2, "
              "|rooty| < 1; Ant: finite state, 0.2 <= z <= 1; Humanoid: 1 < z < 2; "
              "HalfCheetah: always True).", _healthy),
        Field("dt", "(B,)", "s", "Duration of one env step (frame_skip x physics timestep).",
              _episode(_EP_DT), previous=False),
        Field("torso_x_start", "(B,)", "m",
              "torso_pos x at the start (reset) of this episode.", _episode(_EP_X_START),
              previous=False),
        Field("pitch_unwrapped", "(B,)", "rad",
              "Signed rotation of the torso about the world y axis accumulated since reset, "
              "not wrapped (-2*pi = one full back flip, +2*pi = one front flip); planar "
              "models: rooty angle minus its reset value; Ant/Humanoid: sum over steps of "
              "each step's rotation vector y component.", _episode(_EP_PITCH)),
    ],
)


# --------------------------------------------------------------------------------------
# The task env
# --------------------------------------------------------------------------------------
def _rotation_about_world_y(q0: np.ndarray, q1: np.ndarray) -> float:
    """World-y component of the rotation vector taking orientation ``q0`` to ``q1`` (rad).

    ``dq = q1 * conj(q0)`` is the world-frame rotation of one step; its rotation vector is
    ``angle * axis`` with ``angle = 2 atan2(|v|, w)`` (shortest way, so steps must rotate
    less than pi, which holds for any physical control step). Pure-Python floats: this
    runs every step for the free-joint models and numpy is slower on 4-vectors.
    """
    w0, x0, y0, z0 = float(q0[0]), -float(q0[1]), -float(q0[2]), -float(q0[3])
    w1, x1, y1, z1 = float(q1[0]), float(q1[1]), float(q1[2]), float(q1[3])
    w = w1 * w0 - x1 * x0 - y1 * y0 - z1 * z0
    x = w1 * x0 + x1 * w0 + y1 * z0 - z1 * y0
    y = w1 * y0 - x1 * z0 + y1 * w0 + z1 * x0
    z = w1 * z0 + x1 * y0 - y1 * x0 + z1 * w0
    if w < 0.0:
        w, x, y, z = -w, -x, -y, -z
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return 2.0 * y
    return 2.0 * math.atan2(s, w) * y / s


class LocomotionTaskEnv(TaskEnv):
    """A v5 MuJoCo locomotion env that reports the ``locomotion`` raw row.

    Raw row (copied every step; everything else is derived lazily by the view):
    ``qpos (nq,)``, ``qvel (nv,)``, ``com (3,)`` (``subtree_com`` of the torso) and
    ``episode (5,)`` = (torso x at reset, pitch_unwrapped, dt, model code, foot-contact
    bit mask). Episode accumulators: the torso x at reset, and the accumulated pitch (for
    planar models the rooty hinge angle is already continuous, so only its reset value is
    kept; for free-joint models the per-step world-y rotation is summed in :meth:`on_step`).
    """

    def __init__(self, env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        base = self.mujoco_env()
        self._layout = MODELS[task.extra.get("model", task.base_id)]
        self._data = base.data
        # Views of MjData's own buffers (allocated once with the data, never moved): read
        # every step, and asking MjData for them again costs a new array object each time.
        self._qpos_view, self._qvel_view = self._data.qpos, self._data.qvel
        self._com_view = self._data.subtree_com[1]
        self._dt = float(base.dt)
        check_layout(base.model, self._layout)
        model = base.model
        floor = model.geom("floor").id
        if floor != 0:
            raise ValueError(f"{task.base_id}: expected the floor to be geom 0, got {floor}")
        # geom id -> bit of that foot in the contact mask (0 for geoms that are not feet)
        self._foot_bits = [0] * model.ngeom
        for i, name in enumerate(self._layout.feet):
            self._foot_bits[model.geom(name).id] = 1 << i
        self._x_start = 0.0
        self._pitch = 0.0        # free joint: accumulated; planar: rooty at reset
        self._prev_quat = np.array([1.0, 0.0, 0.0, 0.0])

    def mujoco_env(self) -> Any:
        """The Gymnasium MuJoCo env whose ``MjData`` the view reads (the simulator itself here;
        MaMuJoCo tasks return the single-agent env their agents share)."""
        return self.env.unwrapped

    # -- episode accumulators ---------------------------------------------------------
    def on_reset(self, obs: Any, info: dict) -> None:
        qpos = self._data.qpos
        self._x_start = float(qpos[0])
        if self._layout.planar:
            self._pitch = float(qpos[2])
        else:
            self._pitch = 0.0
            self._prev_quat = qpos[3:7].copy()

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        if not self._layout.planar:
            quat = self._data.qpos[3:7].copy()
            self._pitch += _rotation_about_world_y(self._prev_quat, quat)
            self._prev_quat = quat

    # -- raw row ------------------------------------------------------------------------
    def _foot_mask(self) -> int:
        if not self._data.ncon:  # no contact at all: skip building the contact view (~1 µs)
            return 0
        bits = self._foot_bits
        mask = 0
        for a, b in self._data.contact.geom.tolist():  # ncon rows; the floor is geom 0
            if a == 0:
                mask |= bits[b]
            elif b == 0:
                mask |= bits[a]
        return mask

    def read_raw(self) -> dict[str, Any]:
        data = self._data
        qpos = data.qpos.copy()
        pitch = float(qpos[2]) - self._pitch if self._layout.planar else self._pitch
        return {
            "qpos": qpos,
            "qvel": data.qvel.copy(),
            "com": data.subtree_com[1].copy(),
            "episode": np.array((self._x_start, pitch, self._dt, self._layout.code,
                                 self._foot_mask())),
        }


    @classmethod
    def read_raw_batch(cls, envs: Sequence["LocomotionTaskEnv"]) -> dict[str, Any]:
        """:meth:`read_raw` of every env, column by column (one copy per key, no dict per env)."""
        qpos = np.array([e._qpos_view for e in envs])  # (B, nq), a copy
        first = envs[0]
        planar = first._layout.planar
        episode = np.array([(e._x_start, e._pitch, e._dt, first._layout.code, e._foot_mask()) for e in envs],
                           dtype=np.float64)
        if planar:
            episode[:, _EP_PITCH] = qpos[:, 2] - episode[:, _EP_PITCH]
        return {
            "qpos": qpos,
            "qvel": np.array([e._qvel_view for e in envs]),
            "com": np.array([e._com_view for e in envs]),
            "episode": episode,
        }


def check_layout(model: Any, layout: ModelLayout) -> None:
    """Raise ``ValueError`` if ``model`` (an ``MjModel``) does not match ``layout``.

    Guards against a custom ``xml_file``: the view's lazy fields rely on the layout.
    """
    import mujoco

    problems = []
    root_type = model.jnt_type[0]
    if layout.planar and (model.njnt < 3 or model.jnt_type[2] != mujoco.mjtJoint.mjJNT_HINGE
                          or model.joint(0).name != "rootx" or model.joint(2).name != "rooty"):
        problems.append("expected planar root joints rootx, rootz, rooty")
    if not layout.planar and root_type != mujoco.mjtJoint.mjJNT_FREE:
        problems.append("expected a free root joint")
    joints = tuple(model.joint(int(model.actuator_trnid[a, 0])).name for a in range(model.nu))
    qpos_idx = tuple(int(model.jnt_qposadr[model.actuator_trnid[a, 0]]) for a in range(model.nu))
    qvel_idx = tuple(int(model.jnt_dofadr[model.actuator_trnid[a, 0]]) for a in range(model.nu))
    if (joints, qpos_idx, qvel_idx) != (layout.joints, layout.act_qpos, layout.act_qvel):
        problems.append(f"actuated joints {joints} at qpos {qpos_idx}")
    if layout.planar:
        offset = model.body_pos[1][2] - model.qpos0[1]
        if abs(offset - layout.torso_z_offset) > 1e-9:
            problems.append(f"torso z offset {offset} != {layout.torso_z_offset}")
    for name in layout.feet:
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name) < 0:
            problems.append(f"no foot geom {name!r}")
    if problems:
        raise ValueError(f"{layout.base_id}: model does not match the locomotion view layout: "
                         + "; ".join(problems))


# --------------------------------------------------------------------------------------
# Success tests
# --------------------------------------------------------------------------------------
def _progress(state: StateView) -> np.ndarray:
    return state.torso_pos[:, 0] - state.torso_x_start


def forward_success(distance: float):
    """The success test "the torso moved at least ``distance`` m forward (+x) this episode"."""
    def success(state: StateView) -> np.ndarray:
        return _progress(state) >= distance

    success.__name__ = f"forward_{distance:g}m"
    return success


def _backward(distance: float):
    def success(state: StateView) -> np.ndarray:
        return _progress(state) <= -distance

    success.__name__ = f"backward_{distance:g}m"
    return success


def _flip(direction: float):
    def success(state: StateView) -> np.ndarray:
        return direction * state.pitch_unwrapped >= 2.0 * np.pi

    success.__name__ = "frontflip" if direction > 0 else "backflip"
    return success


ANT_LIE_HEIGHT = 0.42   # m; lowest upright resting height of Ant-v5 is ~0.38 m
ANT_LIE_UP = 0.9        # torso_up: belly down, tilted at most ~25 degrees
ANT_LIE_SPEED = 0.1     # m/s: at rest


def _ant_lie_down(state: StateView) -> np.ndarray:
    speed = np.sqrt(np.sum(np.square(state.torso_lin_vel), axis=-1))
    return ((state.torso_height <= ANT_LIE_HEIGHT) & (state.torso_up >= ANT_LIE_UP)
            & (speed <= ANT_LIE_SPEED))


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------
def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> LocomotionTaskEnv:
    """Build task ``task_id``: ``gym.make(base_id, **defaults, **base_kwargs)`` + task env.

    Module-level and picklable through ``functools.partial(make_env, task_id)``.
    """
    import gymnasium as gym

    spec = _SPECS[task_id]
    kwargs = {**spec.extra.get("base_kwargs", {}), **base_kwargs}
    base = gym.make(spec.base_id, render_mode=render_mode, **kwargs)
    return LocomotionTaskEnv(base, spec, state_in_info=state_in_info)


# Forward distances for the standard tasks, from the known returns of the v5 envs: the
# forward term summed over an episode equals displacement / dt, so displacement =
# forward return x dt. A return of ~2000 from the forward term (well below the envs'
# "solved" reward_threshold: HalfCheetah 4800, Hopper 3800, Ant 6000) gives: HalfCheetah
# 2000 x 0.05 = 100 m (2 m/s over 50 s); Ant 1000 x 0.05 = 50 m (1 m/s over 50 s);
# Hopper/Walker2d 1250 x 0.008 = 10 m (1.25 m/s over 8 s); Humanoid 10 m over 15 s
# (0.67 m/s, while staying up). Random policies reach none of these (measured: |x| < 7 m
# over whole HalfCheetah episodes, < 1 m for the others before they terminate).
_RUN = {
    "HalfCheetah": ("Run", 100.0, "Run forward (in the +x direction) as fast as possible."),
    "Hopper": ("Hop", 10.0, "Hop forward (in the +x direction) as fast as possible without falling over."),
    "Walker2d": ("Walk", 10.0, "Walk forward (+x) as fast as possible without falling over."),
    "Ant": ("Run", 50.0, "Run forward (in the +x direction) as fast as possible without flipping over."),
    "Humanoid": ("Run", 10.0, "Run forward (in the +x direction) as fast as possible without falling over."),
}


def _standard(model: str, task: str, distance: float, instruction: str) -> TaskSpec:
    task_id = f"rewardgym/{model}-{task}-v0"
    step_s = {"HalfCheetah": 0.05, "Ant": 0.05, "Humanoid": 0.015}.get(model, 0.008)
    episode_s = MAX_EPISODE_STEPS * step_s
    return TaskSpec(
        id=task_id, family="locomotion", base_id=f"{model}-v5",
        instruction=instruction,
        success_doc=(f"The torso has moved at least {distance:g} m forward (+x) from where it "
                     f"started the episode (torso_pos x - torso_x_start >= {distance:g} m; an "
                     f"average of {distance / episode_s:.2f} m/s over a full {episode_s:g} s "
                     "episode). Base env defaults"
                     + (" (HalfCheetah never terminates early)." if model == "HalfCheetah" else
                        ", including its own termination when unhealthy (fallen).")),
        success=forward_success(distance), view=VIEW,
        make_env=functools.partial(make_env, task_id),
        max_episode_steps=MAX_EPISODE_STEPS, expert=f"{model}-{task}.py", tags=("standard",),
    )


_FLIP_NOTE = ("The base env's termination when unhealthy is disabled (terminate_when_unhealthy"
              "=False), since Hopper-v5 ends an episode as soon as the torso tilts more than "
              "0.2 rad, which would make any flip impossible; episodes last 1000 steps (8 s).")

TASKS: list[TaskSpec] = [_standard(m, t, d, ins) for m, (t, d, ins) in _RUN.items()] + [
    TaskSpec(
        id="rewardgym/Hopper-Backflip-v0", family="locomotion", base_id="Hopper-v5",
        instruction="Do a backflip: jump up and rotate backwards (nose up, head going back "
                    "over the heels) through a full turn.",
        success_doc="The torso has rotated at least one full turn backwards since the episode "
                    "started (pitch_unwrapped <= -2*pi rad, i.e. accumulated rotation about "
                    "world y with negative = nose-up/backwards). " + _FLIP_NOTE,
        success=_flip(-1.0), view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/Hopper-Backflip-v0"),
        max_episode_steps=MAX_EPISODE_STEPS, expert="Hopper-Backflip.py", tags=("new-behaviour",),
        # Unhealthy termination off: see _FLIP_NOTE.
        extra={"base_kwargs": {"terminate_when_unhealthy": False}},
    ),
    TaskSpec(
        id="rewardgym/Hopper-Frontflip-v0", family="locomotion", base_id="Hopper-v5",
        instruction="Do a front flip: jump up and rotate forwards (head going down and over "
                    "to the front) through a full turn.",
        success_doc="The torso has rotated at least one full turn forwards since the episode "
                    "started (pitch_unwrapped >= 2*pi rad, positive = nose-down/forwards). "
                    + _FLIP_NOTE,
        success=_flip(1.0), view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/Hopper-Frontflip-v0"),
        max_episode_steps=MAX_EPISODE_STEPS, expert="Hopper-Frontflip.py", tags=("new-behaviour",),
        # Unhealthy termination off: see _FLIP_NOTE.
        extra={"base_kwargs": {"terminate_when_unhealthy": False}},
    ),
    TaskSpec(
        id="rewardgym/HalfCheetah-Backflip-v0", family="locomotion", base_id="HalfCheetah-v5",
        instruction="Do a backflip: rear up and rotate backwards (head up and over the back) "
                    "through a full turn.",
        success_doc="The torso has rotated at least one full turn backwards since the episode "
                    "started (pitch_unwrapped <= -2*pi rad, negative = nose-up/backwards). "
                    "HalfCheetah-v5 never terminates early; episodes last 1000 steps (50 s).",
        success=_flip(-1.0), view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/HalfCheetah-Backflip-v0"),
        max_episode_steps=MAX_EPISODE_STEPS, expert="HalfCheetah-Backflip.py",
        tags=("new-behaviour",),
    ),
    TaskSpec(
        id="rewardgym/Ant-LieDown-v0", family="locomotion", base_id="Ant-v5",
        instruction="Lie down: lower your body as close to the ground as you can, belly down "
                    "(do not roll over), and rest there without moving.",
        success_doc=(f"The torso is low, level and at rest: torso_height <= {ANT_LIE_HEIGHT} m "
                     f"(Ant-v5's ankles cannot fold under the body, so the lowest upright "
                     f"resting height is about 0.38 m; it spawns at 0.75 m and stands "
                     f"at about 0.5 m with its legs extended), torso_up >= {ANT_LIE_UP} "
                     f"(belly down, tilted < ~25 deg; a random policy usually ends upside "
                     f"down) and torso speed <= "
                     f"{ANT_LIE_SPEED} m/s. Base env defaults (terminates when z leaves "
                     "[0.2, 1.0] m)."),
        success=_ant_lie_down, view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/Ant-LieDown-v0"),
        max_episode_steps=MAX_EPISODE_STEPS, expert="Ant-LieDown.py", tags=("new-behaviour",),
    ),
    TaskSpec(
        id="rewardgym/Walker2d-Backward-v0", family="locomotion", base_id="Walker2d-v5",
        instruction="Walk backwards (in the -x direction) without falling over.",
        success_doc="The torso has moved at least 5 m backwards (-x) from where it started the "
                    "episode (torso_pos x - torso_x_start <= -5 m; 0.63 m/s over a full 8 s "
                    "episode). Base env defaults, including its termination when unhealthy "
                    "(fallen: torso z outside (0.8, 2) m or |rooty| >= 1 rad).",
        success=_backward(5.0), view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/Walker2d-Backward-v0"),
        max_episode_steps=MAX_EPISODE_STEPS, expert="Walker2d-Backward.py", tags=("new-behaviour",),
    ),
]

_SPECS: dict[str, TaskSpec] = {spec.id: spec for spec in TASKS}


# --------------------------------------------------------------------------------------
# Robot observation layout (deployment): readings -> the v5 env's observation
# --------------------------------------------------------------------------------------
def _qpos_names(model: Any) -> tuple[list[str], list[str]]:
    """Name and unit of every ``qpos`` slot (free joints: x, y, z, qw, qx, qy, qz)."""
    import mujoco

    names, units = [], []
    for j in range(model.njnt):
        joint, kind = model.joint(j).name, model.jnt_type[j]
        if kind == mujoco.mjtJoint.mjJNT_FREE:
            names += [f"{joint}.{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
            units += ["m"] * 3 + ["-"] * 4
        elif kind == mujoco.mjtJoint.mjJNT_BALL:
            names += [f"{joint}.{c}" for c in ("qw", "qx", "qy", "qz")]
            units += ["-"] * 4
        else:
            names.append(joint)
            units.append("m" if kind == mujoco.mjtJoint.mjJNT_SLIDE else "rad")
    return names, units


def _qvel_names(model: Any) -> tuple[list[str], list[str]]:
    """Name and unit of every ``qvel`` slot (free joints: linear then angular velocity)."""
    import mujoco

    names, units = [], []
    for j in range(model.njnt):
        joint, kind = model.joint(j).name, model.jnt_type[j]
        if kind == mujoco.mjtJoint.mjJNT_FREE:
            names += [f"{joint}.v{c}" for c in "xyz"] + [f"{joint}.w{c}" for c in "xyz"]
            units += ["m/s"] * 3 + ["rad/s"] * 3
        elif kind == mujoco.mjtJoint.mjJNT_BALL:
            names += [f"{joint}.w{c}" for c in "xyz"]
            units += ["rad/s"] * 3
        else:
            names.append(f"{joint}.vel")
            units.append("m/s" if kind == mujoco.mjtJoint.mjJNT_SLIDE else "rad/s")
    return names, units


def _body_part(model: Any, reading: str, columns: tuple[str, ...], units: tuple[str, ...],
               clip: tuple[float, float] | None = None):
    """An observation block of per-body rows ``reading[1:]`` (the world body left out, as v5 does)."""
    from rewardgym.envs.observation import ObsPart

    bodies = [model.body(b).name for b in range(1, model.nbody)]
    return ObsPart(reading, 1, clip, tuple(f"{reading}.{b}.{c}" for b in bodies for c in columns),
                   tuple(units) * len(bodies))


_CFRC = (("tx", "ty", "tz", "fx", "fy", "fz"), ("N m",) * 3 + ("N",) * 3)
_CINERT = (("ixx", "iyy", "izz", "ixy", "ixz", "iyz", "mcx", "mcy", "mcz", "m"),
           ("kg m^2",) * 6 + ("kg m",) * 3 + ("kg",))
_CVEL = (("wx", "wy", "wz", "vx", "vy", "vz"), ("rad/s",) * 3 + ("m/s",) * 3)


@functools.lru_cache(maxsize=None)
def observation_layout(task_id: str):
    """The :class:`~rewardgym.envs.observation.ObservationLayout` of a locomotion task.

    Built from the task's own simulator env (its model and its v5 observation options), so
    ``layout.build(layout.read(env.data))`` is exactly the env's observation.
    """
    from rewardgym.envs.observation import ObservationLayout, ObsPart

    env = _SPECS[task_id].make_env()
    try:
        base = env.unwrapped
        model = base.model
        lay = MODELS[_SPECS[task_id].base_id]
        skip = (2 if not lay.planar else 1) if base._exclude_current_positions_from_observation else 0
        qpos_names, qpos_units = _qpos_names(model)
        qvel_names, qvel_units = _qvel_names(model)
        vel_clip = (-10.0, 10.0) if lay.base_id in ("Hopper-v5", "Walker2d-v5") else None
        parts = [ObsPart("qpos", skip, None, tuple(qpos_names[skip:]), tuple(qpos_units[skip:])),
                 ObsPart("qvel", 0, vel_clip, tuple(qvel_names), tuple(qvel_units))]
        readings: list[tuple[str, tuple[int, ...]]] = [("qpos", (model.nq,)), ("qvel", (model.nv,))]
        nbody = model.nbody
        if lay.base_id == "Ant-v5" and base._include_cfrc_ext_in_observation:
            parts.append(_body_part(model, "cfrc_ext", *_CFRC, clip=tuple(map(float, base._contact_force_range))))
            readings.append(("cfrc_ext", (nbody, 6)))
        if lay.base_id == "Humanoid-v5":
            if base._include_cinert_in_observation:
                parts.append(_body_part(model, "cinert", *_CINERT))
                readings.append(("cinert", (nbody, 10)))
            if base._include_cvel_in_observation:
                parts.append(_body_part(model, "cvel", *_CVEL))
                readings.append(("cvel", (nbody, 6)))
            if base._include_qfrc_actuator_in_observation:
                parts.append(ObsPart("qfrc_actuator", 6, None, tuple(f"qfrc_actuator.{n}" for n in qvel_names[6:]),
                                     tuple("N m" for _ in qvel_names[6:])))
                readings.append(("qfrc_actuator", (model.nv,)))
            if base._include_cfrc_ext_in_observation:
                parts.append(_body_part(model, "cfrc_ext", *_CFRC))
                readings.append(("cfrc_ext", (nbody, 6)))
        space = env.action_space
        joint_ids = [int(model.actuator_trnid[a, 0]) for a in range(model.nu)]
        ranges = tuple((float(model.jnt_range[j, 0]), float(model.jnt_range[j, 1])) if model.jnt_limited[j]
                       else (-math.inf, math.inf) for j in joint_ids)
        return ObservationLayout(
            task=task_id, base_id=lay.base_id, readings=tuple(readings), parts=tuple(parts),
            control_period_s=float(base.dt), action_names=lay.joints,
            action_low=tuple(float(x) for x in space.low), action_high=tuple(float(x) for x in space.high),
            action_gear=tuple(float(g) for g in model.actuator_gear[:, 0]), planar=lay.planar,
            torso_z_offset=lay.torso_z_offset, joint_qpos=lay.act_qpos, joint_qvel=lay.act_qvel,
            joint_range=ranges)
    finally:
        env.close()
