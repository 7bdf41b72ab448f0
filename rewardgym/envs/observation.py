"""Robot observation layouts: raw sensor readings -> the policy observation.

A policy trained in simulation sees the simulator env's observation vector. On a robot
the same vector has to be assembled from sensor readings. :class:`ObservationLayout` is
that assembly, written once and used by both sides:

* ``layout.read(data)`` copies the *readings* (named after the ``MjData`` arrays they
  come from: ``qpos``, ``qvel``, ``cfrc_ext`` ...) out of a MuJoCo simulator — this is
  what :class:`~rewardgym.deploy.simrobot.SimRobot` publishes, and what a real robot's
  driver produces from its encoders and IMU;
* ``layout.build(readings)`` turns readings into the observation, ``(obs_dim,)`` float64,
  exactly as the task's simulator env computes it (slices, clipping), so a deployed
  policy gets bit-identical inputs for identical states
  (``tests/test_observation.py`` checks every locomotion model against the simulator);
* ``layout.entries`` names every observation entry with its unit (the export manifest
  lists them), and ``layout.digest`` identifies the layout: a policy exported for one
  layout is refused by a robot that builds another.

Layouts also describe what the safety layer reads from the readings: the actuated joints
with their ranges, the torso's tilt and height. Only families that can be deployed have
a layout (:func:`observation_layout` says which).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

LAYOUT_VERSION = 1  # bumped when build() changes meaning for the same parts


class ReadingsError(ValueError):
    """Readings are missing, have the wrong shape, or are not finite (the message names the reading)."""


@dataclass(frozen=True)
class ObsPart:
    """One contiguous block of the observation, taken from one reading.

    Attributes:
        reading: the reading it comes from (``"qpos"``, ``"qvel"``, ``"cfrc_ext"`` ...).
        start: first row of the reading's leading axis that is kept (``qpos[1:]``: 1).
        clip: ``(low, high)`` applied to the block, or None.
        names: one name per entry of the block (after flattening).
        units: one unit per entry (``m``, ``rad``, ``m/s``, ``rad/s``, ``N``, ``N m`` ...).
    """

    reading: str
    start: int
    clip: tuple[float, float] | None
    names: tuple[str, ...]
    units: tuple[str, ...]


@dataclass(frozen=True)
class ObservationLayout:
    """How a task's observation is built from readings, and what the robot's body looks like.

    Attributes:
        task: the task id.
        base_id: the simulator id (``Hopper-v5``).
        readings: ``((name, shape), ...)`` the readings a robot must provide.
        parts: the observation blocks, in order.
        control_period_s: one policy step, seconds (the simulator env's ``dt``).
        action_names: actuated joint of each action entry.
        action_low, action_high: action bounds (the task's action space), action units.
        action_gear: physical effort per action unit (MuJoCo ``actuator_gear``: N m per unit
            for a motor on a hinge).
        planar: the root moves in the x-z plane (``rootx, rootz, rooty``); else a free joint.
        torso_z_offset: planar models: torso height = ``qpos[1] + offset``.
        joint_qpos, joint_qvel: ``qpos`` / ``qvel`` index of each actuated joint (action order).
        joint_range: ``(low, high)`` rad of each actuated joint (``(-inf, inf)`` when unlimited).
    """

    task: str
    base_id: str
    readings: tuple[tuple[str, tuple[int, ...]], ...]
    parts: tuple[ObsPart, ...]
    control_period_s: float
    action_names: tuple[str, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    action_gear: tuple[float, ...]
    planar: bool
    torso_z_offset: float
    joint_qpos: tuple[int, ...]
    joint_qvel: tuple[int, ...]
    joint_range: tuple[tuple[float, float], ...]

    # -- description ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Observation size ``obs_dim``."""
        return sum(len(p.names) for p in self.parts)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """``[{"index", "name", "unit"}, ...]``, one per observation entry."""
        out = []
        for part in self.parts:
            for name, unit in zip(part.names, part.units):
                out.append({"index": len(out), "name": name, "unit": unit})
        return out

    @functools.cached_property
    def digest(self) -> str:
        """sha256 (hex) of what ``build`` does: base id, readings, parts (names, units, slices, clips)."""
        spec = {"version": LAYOUT_VERSION, "base_id": self.base_id,
                "readings": [[n, list(s)] for n, s in self.readings],
                "parts": [[p.reading, p.start, list(p.clip) if p.clip else None, list(p.names), list(p.units)]
                          for p in self.parts]}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The layout as the export manifest records it."""
        return {
            "digest": self.digest, "size": self.size, "entries": self.entries,
            "readings": {name: list(shape) for name, shape in self.readings},
            "build": [{"reading": p.reading, "start": p.start, "clip": list(p.clip) if p.clip else None,
                       "size": len(p.names)} for p in self.parts],
        }

    # -- the shared function -------------------------------------------------------------
    def build(self, readings: Mapping[str, Any]) -> np.ndarray:
        """The policy observation ``(obs_dim,)`` float64 from ``readings``.

        Raises:
            ReadingsError: a reading is missing, has the wrong shape or is not finite.
        """
        arrays = self.check(readings)
        blocks = []
        for part in self.parts:
            block = arrays[part.reading][part.start:].reshape(-1)
            if part.clip is not None:
                block = np.clip(block, part.clip[0], part.clip[1])
            blocks.append(block)
        return np.concatenate(blocks)

    def check(self, readings: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``readings`` as float64 arrays of the declared shapes, all finite."""
        out = {}
        for name, shape in self.readings:
            if name not in readings:
                raise ReadingsError(f"readings lack {name!r} (expected {self.reading_names})")
            value = np.asarray(readings[name], dtype=np.float64)
            if value.shape != shape:
                value = value.reshape(-1)
                if value.size != math.prod(shape):
                    raise ReadingsError(f"reading {name!r} has {value.size} values, expected shape {shape}")
                value = value.reshape(shape)
            if not np.all(np.isfinite(value)):
                raise ReadingsError(f"reading {name!r} is not finite: {value.reshape(-1)[:8]}")
            out[name] = value
        return out

    @property
    def reading_names(self) -> list[str]:
        return [name for name, _ in self.readings]

    def read(self, data: Any) -> dict[str, np.ndarray]:
        """Copies of the readings from a MuJoCo ``MjData`` (what a simulated robot reports)."""
        return {name: np.array(getattr(data, name), dtype=np.float64) for name, _ in self.readings}

    # -- body state for the safety layer ----------------------------------------------------
    def joint_pos(self, readings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Actuated joint angles ``(n_joints,)`` rad, action order."""
        return np.asarray(readings["qpos"], dtype=np.float64)[list(self.joint_qpos)]

    def joint_vel(self, readings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Actuated joint velocities ``(n_joints,)`` rad/s, action order."""
        return np.asarray(readings["qvel"], dtype=np.float64)[list(self.joint_qvel)]

    def torso_tilt(self, readings: Mapping[str, np.ndarray]) -> float:
        """Angle (rad, in [0, pi]) between the torso's up axis and world up."""
        qpos = np.asarray(readings["qpos"], dtype=np.float64)
        if self.planar:
            return abs(math.remainder(float(qpos[2]), 2.0 * math.pi))
        up_z = 1.0 - 2.0 * (float(qpos[4]) ** 2 + float(qpos[5]) ** 2)
        return math.acos(max(-1.0, min(1.0, up_z)))

    def torso_height(self, readings: Mapping[str, np.ndarray]) -> float:
        """Height of the torso origin above the floor, m."""
        qpos = np.asarray(readings["qpos"], dtype=np.float64)
        return float(qpos[1]) + self.torso_z_offset if self.planar else float(qpos[2])


# Families whose tasks can be deployed: family -> "module:function(task_id) -> ObservationLayout".
_LAYOUT_FUNCTIONS = {"locomotion": "rewardgym.envs.families.locomotion:observation_layout"}


class NotDeployableError(ValueError):
    """The task's family has no robot observation layout."""


@functools.lru_cache(maxsize=None)
def observation_layout(task_id: str) -> ObservationLayout:
    """The :class:`ObservationLayout` of ``task_id`` (built once per process from the task's model).

    Raises:
        NotDeployableError: the task's family cannot be deployed (the message lists those that can).
    """
    import importlib

    from rewardgym.envs.registry import get_task

    task = get_task(task_id)
    target = _LAYOUT_FUNCTIONS.get(task.family)
    if target is None:
        raise NotDeployableError(f"{task.id} (family {task.family}) has no robot observation layout; deployable "
                                 f"families: {', '.join(sorted(_LAYOUT_FUNCTIONS))}")
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(task.id)
