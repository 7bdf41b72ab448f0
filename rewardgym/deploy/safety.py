"""The safety layer between a policy and a robot, and the e-stop.

Every action goes through :meth:`SafetyLayer.filter`, which applies, in this order:

1. **non-finite guard** — a NaN/inf action stops the robot (a policy that emits one is broken);
2. **action-bound clamp** — to the policy manifest's bounds;
3. **maximum change per step** — ``|a_t - a_{t-1}| <= max_delta`` per entry (LeRobot's
   ``max_relative_target``); the first step is measured from zero (a robot at rest);
4. **low-pass** (optional) — ``a_t <- alpha * a_t + (1 - alpha) * a_{t-1}``;
5. **state limits** — torso tilt, torso height, joint positions outside their range by more
   than a tolerance, joint speed: the robot is stopped;
6. **e-stop** — an :class:`EStop` that anything (Ctrl-C, SIGTERM, an e-stop file, your code)
   can trigger: the robot is stopped.

Steps 2-4 change the action and are reported as interventions; 1, 5 and 6 end the
deployment with ``safe_stop``. Limits come from a TOML file (``rewardgym deploy --safety``)::

    max_delta = 0.5              # action units per step (None: off)
    low_pass = 0.8               # alpha in (0, 1] (None: off)
    max_tilt_rad = 1.0           # torso tilt from upright (None: off)
    min_height_m = 0.5           # torso height (None: off)
    joint_limit_tolerance_rad = 0.3   # beyond the model's joint range (None: off)
    max_joint_vel = 30.0         # rad/s (None: off)
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rewardgym.envs.config import check_keys, read_table
from rewardgym.envs.observation import ObservationLayout


class SafetyConfigError(ValueError):
    """An invalid safety configuration (names the file and key)."""


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of the safety layer (None switches a check off).

    Attributes:
        max_delta: largest change of any action entry per step, action units.
        low_pass: first-order filter coefficient alpha in (0, 1] (1: no filtering).
        max_tilt_rad: largest torso tilt from upright, rad (default: 1.2, about 70 degrees).
        min_height_m: lowest torso height, m.
        joint_limit_tolerance_rad: how far a joint may leave its model range, rad (default 0.3:
            MuJoCo's joint limits are soft, and trained Hopper policies push joints up to 0.17 rad
            past them in normal running; more than 0.3 means something else is wrong).
        max_joint_vel: largest joint speed, rad/s.
    """

    max_delta: float | None = None
    low_pass: float | None = None
    max_tilt_rad: float | None = 1.2
    min_height_m: float | None = None
    joint_limit_tolerance_rad: float | None = 0.3
    max_joint_vel: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "safety config") -> "SafetyConfig":
        check_keys(data, tuple(f.name for f in fields(cls)), SafetyConfigError, source, "safety key")
        values: dict[str, float | None] = {}
        for key, value in data.items():
            if value is None or value == "none":
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SafetyConfigError(f"{source}: {key} = {value!r} must be a finite number (or \"none\")")
            if value < 0 or (key in ("max_delta", "low_pass", "max_tilt_rad", "max_joint_vel") and value == 0):
                raise SafetyConfigError(f"{source}: {key} = {value!r} must be positive")
            if key == "low_pass" and value > 1:
                raise SafetyConfigError(f"{source}: low_pass = {value!r} must be in (0, 1]")
            values[key] = float(value)
        return cls(**{**asdict(cls()), **values})

    @classmethod
    def load(cls, path: str | Path) -> "SafetyConfig":
        """Read a ``.toml``/``.json`` file (a ``[safety]`` table, or the top level)."""
        return cls.from_dict(read_table(path, SafetyConfigError, "safety config", section="safety"), source=str(path))

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


class EStop:
    """An emergency stop anything may trigger (thread- and signal-safe); optionally a file too.

    Args:
        file: when given, the e-stop is also set while this file exists (``touch`` it to stop).
    """

    def __init__(self, file: str | Path | None = None):
        self._event = threading.Event()
        self.reason: str | None = None
        self.file = Path(file) if file else None

    def trigger(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self.file is not None and self.file.exists():
            self.trigger(f"e-stop file {self.file} exists")
        return self._event.is_set()


@dataclass
class SafetyResult:
    """What :meth:`SafetyLayer.filter` decided for one step.

    Attributes:
        action: the action to send ``(act_dim,)`` (None when ``stop`` is set).
        interventions: names of the filters that changed the action (``clamp``, ``rate``, ``low_pass``).
        stop: why the robot must stop now, or None.
    """

    action: np.ndarray | None
    interventions: tuple[str, ...]
    stop: str | None


class SafetyLayer:
    """Filters policy actions and watches the robot's state (see the module docstring).

    Args:
        config: the limits.
        layout: the task's observation layout (joint names and ranges, torso tilt/height).
        low, high: ``(act_dim,)`` action bounds (the policy manifest's).
        estop: the e-stop to honour (a fresh one if None).
    """

    def __init__(self, config: SafetyConfig, layout: ObservationLayout, low: np.ndarray, high: np.ndarray,
                 estop: EStop | None = None):
        self.config = config
        self.layout = layout
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.estop = estop or EStop()
        ranges = np.asarray(layout.joint_range, dtype=np.float64).reshape(-1, 2)
        tol = config.joint_limit_tolerance_rad
        self._joint_low = ranges[:, 0] - (tol or 0.0)
        self._joint_high = ranges[:, 1] + (tol or 0.0)
        self.previous = np.clip(np.zeros_like(self.low), self.low, self.high)
        self.counts: dict[str, int] = {"clamp": 0, "rate": 0, "low_pass": 0}

    def filter(self, action: np.ndarray, readings: Mapping[str, np.ndarray]) -> SafetyResult:
        """Apply the six stages to one raw policy action, given the robot's current readings."""
        cfg = self.config
        raw = np.asarray(action, dtype=np.float64).reshape(-1)
        if raw.shape != self.low.shape:
            return SafetyResult(None, (), f"policy action has {raw.size} entries, the robot takes {self.low.size}")
        if not np.all(np.isfinite(raw)):
            return SafetyResult(None, (), f"non-finite action from the policy: {np.array2string(raw, precision=3)}")
        interventions = []
        a = np.clip(raw, self.low, self.high)
        if not np.array_equal(a, raw):
            interventions.append("clamp")
        if cfg.max_delta is not None:
            limited = self.previous + np.clip(a - self.previous, -cfg.max_delta, cfg.max_delta)
            if not np.array_equal(limited, a):
                interventions.append("rate")
            a = limited
        if cfg.low_pass is not None and cfg.low_pass < 1.0:
            filtered = cfg.low_pass * a + (1.0 - cfg.low_pass) * self.previous
            if not np.allclose(filtered, a, rtol=0.0, atol=1e-12):
                interventions.append("low_pass")
            a = filtered
        stop = self.state_violation(readings)
        if stop is None and self.estop.is_set():
            stop = f"e-stop: {self.estop.reason}"
        if stop is not None:
            return SafetyResult(None, tuple(interventions), stop)
        for name in interventions:
            self.counts[name] += 1
        self.previous = a
        return SafetyResult(a, tuple(interventions), None)

    def state_violation(self, readings: Mapping[str, np.ndarray]) -> str | None:
        """The first state limit the readings break (as a sentence), or None."""
        cfg, layout = self.config, self.layout
        if cfg.max_tilt_rad is not None:
            tilt = layout.torso_tilt(readings)
            if tilt > cfg.max_tilt_rad:
                return f"state limit: torso tilt {tilt:.3f} rad > max_tilt_rad {cfg.max_tilt_rad:g}"
        if cfg.min_height_m is not None:
            height = layout.torso_height(readings)
            if height < cfg.min_height_m:
                return f"state limit: torso height {height:.3f} m < min_height_m {cfg.min_height_m:g}"
        if cfg.joint_limit_tolerance_rad is not None:
            q = layout.joint_pos(readings)
            bad = np.flatnonzero((q < self._joint_low) | (q > self._joint_high))
            if bad.size:
                i = int(bad[0])
                lo, hi = layout.joint_range[i]
                return (f"state limit: joint {layout.action_names[i]} at {q[i]:.3f} rad is outside its range "
                        f"[{lo:.3f}, {hi:.3f}] by more than {cfg.joint_limit_tolerance_rad:g} rad")
        if cfg.max_joint_vel is not None:
            qd = layout.joint_vel(readings)
            bad = np.flatnonzero(np.abs(qd) > cfg.max_joint_vel)
            if bad.size:
                i = int(bad[0])
                return (f"state limit: joint {layout.action_names[i]} speed {abs(qd[i]):.2f} rad/s > "
                        f"max_joint_vel {cfg.max_joint_vel:g}")
        return None
