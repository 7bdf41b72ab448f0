"""Domain randomisation for the MuJoCo tasks: ``gym.make(task, randomize=CONFIG)``.

A configuration is a table of parameters (TOML, JSON, a dict or a
:class:`RandomizationConfig`); each value is either a fixed number or a range
``[low, high]`` sampled uniformly once per episode (at ``reset``) from the wrapper's own
generator, which ``reset(seed=...)`` seeds: the same seed gives the same physics.

==================  ===========  ==========================================================
key                 unit         what it changes (nominal = the model as loaded)
==================  ===========  ==========================================================
``friction``        x nominal    sliding friction of every geom (``geom_friction[:, 0]``)
``mass``            x nominal    mass *and* inertia of every body (same shapes, other density)
``com_offset``      m            added to the root body's centre of mass, per axis (x, y, z)
``joint_damping``   x nominal    ``dof_damping`` of every joint
``armature``        x nominal    ``dof_armature`` of every joint
``actuator_gain``   x nominal    actuator force gain (``gainprm[0]``; servos' bias gains too)
``gravity``         m/s^2        z component of gravity (negative: down)
``obs_noise``       obs units    std of Gaussian noise added to every observation entry, each step
``action_noise``    action units std of Gaussian noise added to the applied action, each step (clipped)
``latency``         steps        true delay: the action applied at step t is the one sent at t - k
``push_velocity``   m/s          horizontal velocity kick of the root (random direction), per push
``push_interval``   s            time between pushes (needs ``push_velocity``)
==================  ===========  ==========================================================

``latency`` takes integers (``[0, 2]``: 0, 1 or 2 steps, each equally likely); at the start
of an episode the delay line holds zero actions. ``push_velocity`` and ``push_interval``
are sampled anew for every push. ``com_offset`` and pushes need a root that moves (the
locomotion models); the other keys work on any MuJoCo model (Meta-World, Fetch too).

The sampled values are reported at reset in ``info["randomization"]`` (``com_offset`` as
a ``(3,)`` array, the others as numbers), and a push in ``info["push_velocity"]`` of the
step that received it. An unknown key, a malformed range, or a value outside physical
sense (a negative mass scale, gravity pointing up, a fractional latency) raises
:class:`RandomizationError` naming the key (and the file).

Example (``randomize.toml``)::

    friction = [0.5, 1.5]
    mass = [0.8, 1.2]
    latency = [0, 1]
    obs_noise = 0.01
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from rewardgym.envs.task import SimulatorEnv, TaskEnv


class RandomizationError(ValueError):
    """A randomisation configuration is invalid (the message names the key and the source)."""


@dataclass(frozen=True)
class Param:
    """One randomisable parameter: its unit, meaning and the values that make physical sense.

    Attributes:
        unit: unit of the value.
        doc: what it changes.
        low: smallest sensible value (None: unbounded).
        high: largest sensible value (None: unbounded).
        low_open: ``low`` itself is excluded (a mass scale must be > 0).
        integer: values are whole numbers (latency in steps).
        nominal: the value that changes nothing (sweeps centre on it).
        sweep: default values of a robustness sweep.
    """

    unit: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    nominal: float = 0.0
    sweep: tuple[float, ...] = ()

    def check(self, key: str, value: float, where: str) -> None:
        if self.integer and float(value) != int(value):
            raise RandomizationError(f"{where}: {key} = {value!r}: must be a whole number of {self.unit}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            bound = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
            raise RandomizationError(f"{where}: {key} = {value!r} is outside physical sense: must be {bound} "
                                     f"({self.unit}: {self.doc})")
        if self.high is not None and value > self.high:
            raise RandomizationError(f"{where}: {key} = {value!r} is outside physical sense: must be <= "
                                     f"{self.high:g} ({self.unit}: {self.doc})")


_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
PARAMS: dict[str, Param] = {
    "friction": Param("x nominal", "sliding friction of every geom", 0.0, 100.0, low_open=True, nominal=1.0,
                      sweep=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0)),
    "mass": Param("x nominal", "mass and inertia of every body", 0.0, 100.0, low_open=True, nominal=1.0,
                  sweep=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)),
    "com_offset": Param("m", "offset of the root body's centre of mass, per axis", -1.0, 1.0,
                        sweep=(-0.1, -0.05, 0.0, 0.05, 0.1)),
    "joint_damping": Param("x nominal", "joint damping of every joint", 0.0, 100.0, nominal=1.0, sweep=_SCALE),
    "armature": Param("x nominal", "joint armature of every joint", 0.0, 100.0, nominal=1.0, sweep=_SCALE),
    "actuator_gain": Param("x nominal", "actuator force gain", 0.0, 100.0, low_open=True, nominal=1.0,
                           sweep=(0.5, 0.75, 1.0, 1.25, 1.5)),
    "gravity": Param("m/s^2", "z component of gravity (negative is down)", -100.0, 0.0, nominal=-9.81,
                     sweep=(-14.0, -12.0, -9.81, -8.0, -6.0)),
    "obs_noise": Param("obs units", "std of Gaussian observation noise", 0.0, 1e3,
                       sweep=(0.0, 0.01, 0.02, 0.05, 0.1)),
    "action_noise": Param("action units", "std of Gaussian action noise", 0.0, 1e3,
                          sweep=(0.0, 0.05, 0.1, 0.2, 0.4)),
    "latency": Param("steps", "delay of the applied action", 0, 100, integer=True, sweep=(0, 1, 2, 3, 4)),
    "push_velocity": Param("m/s", "horizontal velocity kick of the root per push", 0.0, 100.0,
                           sweep=(0.0, 0.5, 1.0, 1.5, 2.0)),
    "push_interval": Param("s", "time between pushes", 0.0, 1e6, low_open=True),
}
_ROOT_KEYS = ("com_offset", "push_velocity")


@dataclass(frozen=True)
class RandomizationConfig:
    """Validated randomisation parameters: ``key -> (low, high)`` (a fixed value has ``low == high``).

    Build with :meth:`resolve` (any accepted form) or :meth:`from_dict`.
    """

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = "randomize"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "randomize") -> "RandomizationConfig":
        """Validate ``data`` (``key = value`` or ``key = [low, high]``).

        Raises:
            RandomizationError: unknown key (with the closest valid one), malformed value,
                ``low > high``, or a value outside physical sense.
        """
        if not isinstance(data, Mapping):
            raise RandomizationError(f"{source}: expected a table of parameters, got {type(data).__name__}")
        from rewardgym.envs.config import check_keys

        check_keys(data, tuple(PARAMS), RandomizationError, source, "randomisation parameter")
        ranges = {key: _parse_range(key, value, source) for key, value in data.items()}
        if "push_interval" in ranges and "push_velocity" not in ranges:
            raise RandomizationError(f"{source}: push_interval needs push_velocity (the size of the pushes)")
        if "push_velocity" in ranges and "push_interval" not in ranges:
            raise RandomizationError(f"{source}: push_velocity needs push_interval (seconds between pushes)")
        return cls(ranges, source)

    @classmethod
    def load(cls, path: str | Path) -> "RandomizationConfig":
        """Read a ``.toml`` or ``.json`` file (a ``[randomize]`` table, or the top level)."""
        from rewardgym.envs.config import read_table

        return cls.from_dict(read_table(path, RandomizationError, "randomisation file", section="randomize"),
                             source=str(path))

    @classmethod
    def resolve(cls, spec: Any) -> "RandomizationConfig | None":
        """``None``, a config, a dict, or a path to a ``.toml``/``.json`` file -> a config (or None)."""
        if spec is None or isinstance(spec, RandomizationConfig):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, (str, Path)):
            return cls.load(spec)
        raise RandomizationError(f"randomize= takes a dict, a .toml/.json path or a RandomizationConfig, "
                                 f"got {type(spec).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (fixed values as numbers, ranges as ``[low, high]``)."""
        out: dict[str, Any] = {}
        for key, (low, high) in self.ranges.items():
            cast = int if PARAMS[key].integer else float
            out[key] = cast(low) if low == high else [cast(low), cast(high)]
        return out

    def __bool__(self) -> bool:
        return bool(self.ranges)


def _parse_range(key: str, value: Any, source: str) -> tuple[float, float]:
    param = PARAMS[key]
    if isinstance(value, bool):
        raise RandomizationError(f"{source}: {key} = {value!r}: expected a number or [low, high]")
    if isinstance(value, (int, float)):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise RandomizationError(f"{source}: {key} = {value!r}: expected a number or a range [low, high] "
                                 f"({param.unit})")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise RandomizationError(f"{source}: {key} = {value!r}: values must be finite")
    if low > high:
        raise RandomizationError(f"{source}: {key} = {value!r}: low {low:g} is above high {high:g}")
    param.check(key, low, source)
    param.check(key, high, source)
    return low, high


def mujoco_sim(env: gym.Env) -> Any:
    """The MuJoCo simulator env under ``env`` (has ``.model`` and ``.data``), or raise ``TypeError``."""
    inner = env
    while isinstance(inner, gym.Wrapper) and not isinstance(inner, TaskEnv):
        inner = inner.env
    sim = inner.sim if isinstance(inner, TaskEnv) else env.unwrapped
    if isinstance(sim, SimulatorEnv):
        sim = sim.sim.unwrapped
    if not (hasattr(sim, "model") and hasattr(sim, "data")):
        raise TypeError(f"domain randomisation needs a MuJoCo simulator; {type(sim).__name__} has no model/data")
    return sim


class DomainRandomization(gym.Wrapper):
    """Randomise a MuJoCo env's physics per episode, and add noise, latency and pushes per step.

    Args:
        env: a rewardgym task env (or any Gymnasium env whose ``unwrapped`` is a MuJoCo env)
            with a ``Box`` action space.
        config: what :meth:`RandomizationConfig.resolve` accepts.

    Physical parameters are set on the ``MjModel`` before the base env's reset (so the
    initial state is computed with them), from the nominal values saved at construction,
    followed by ``mj_setConst`` (derived quantities: subtree masses, inverse weights).
    Observations and the action's shape are unchanged. Reward programs see the agent's
    action (the wrapper sits under the reward injection) and the true simulator state.
    """

    def __init__(self, env: gym.Env, config: Any):
        super().__init__(env)
        cfg = RandomizationConfig.resolve(config)
        self.config: RandomizationConfig = cfg if cfg is not None else RandomizationConfig()
        if not isinstance(env.action_space, gym.spaces.Box):
            raise TypeError(f"domain randomisation needs a Box action space, got {env.action_space}")
        sim = mujoco_sim(env)
        self._sim = sim
        model = sim.model
        self._root_dofs = _root_horizontal_dofs(model)
        for key in _ROOT_KEYS:
            if key in self.config.ranges and not self._root_dofs:
                raise RandomizationError(f"{self.config.source}: {key} needs a floating or planar root body "
                                         f"(the locomotion models); {type(sim).__name__} has none")
        self._nominal = {
            "geom_friction": model.geom_friction[:, 0].copy(), "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(), "body_ipos": model.body_ipos.copy(),
            "dof_damping": model.dof_damping.copy(), "dof_armature": model.dof_armature.copy(),
            "gainprm": model.actuator_gainprm[:, 0].copy(), "biasprm": model.actuator_biasprm[:, 1:3].copy(),
            "gravity": model.opt.gravity.copy(),
        }
        self._servo = np.asarray(model.actuator_biastype) != 0  # affine bias: position/velocity servos
        self._low = np.asarray(env.action_space.low, dtype=np.float64)
        self._high = np.asarray(env.action_space.high, dtype=np.float64)
        self._dt = float(getattr(sim, "dt", model.opt.timestep))
        max_latency = int(self.config.ranges.get("latency", (0, 0))[1])
        self._delay = np.zeros((max_latency + 1,) + env.action_space.shape)
        self._rng: np.random.Generator | None = None
        self.sampled: dict[str, Any] = {}
        self._latency = 0
        self._obs_noise = 0.0
        self._action_noise = 0.0
        self._steps = 0
        self._next_push = math.inf

    # -- sampling --------------------------------------------------------------------------
    def _sample(self, key: str) -> float:
        low, high = self.config.ranges[key]
        if PARAMS[key].integer:
            return float(self._rng.integers(int(low), int(high) + 1))
        return float(self._rng.uniform(low, high)) if high > low else low

    def _apply_physics(self) -> dict[str, Any]:
        import mujoco

        model, nominal, ranges = self._sim.model, self._nominal, self.config.ranges
        out: dict[str, Any] = {}
        model.geom_friction[:, 0] = nominal["geom_friction"]
        model.body_mass[:] = nominal["body_mass"]
        model.body_inertia[:] = nominal["body_inertia"]
        model.body_ipos[:] = nominal["body_ipos"]
        model.dof_damping[:] = nominal["dof_damping"]
        model.dof_armature[:] = nominal["dof_armature"]
        model.actuator_gainprm[:, 0] = nominal["gainprm"]
        model.actuator_biasprm[:, 1:3] = nominal["biasprm"]
        model.opt.gravity[:] = nominal["gravity"]
        if "friction" in ranges:
            out["friction"] = s = self._sample("friction")
            model.geom_friction[:, 0] = nominal["geom_friction"] * s
        if "mass" in ranges:
            out["mass"] = s = self._sample("mass")
            model.body_mass[:] = nominal["body_mass"] * s
            model.body_inertia[:] = nominal["body_inertia"] * s
        if "com_offset" in ranges:
            low, high = ranges["com_offset"]
            offset = self._rng.uniform(low, high, size=3) if high > low else np.full(3, low)
            out["com_offset"] = offset
            model.body_ipos[1] = nominal["body_ipos"][1] + offset
        if "joint_damping" in ranges:
            out["joint_damping"] = s = self._sample("joint_damping")
            model.dof_damping[:] = nominal["dof_damping"] * s
        if "armature" in ranges:
            out["armature"] = s = self._sample("armature")
            model.dof_armature[:] = nominal["dof_armature"] * s
        if "actuator_gain" in ranges:
            out["actuator_gain"] = s = self._sample("actuator_gain")
            model.actuator_gainprm[:, 0] = nominal["gainprm"] * s
            model.actuator_biasprm[self._servo, 1:3] = nominal["biasprm"][self._servo] * s
        if "gravity" in ranges:
            out["gravity"] = g = self._sample("gravity")
            model.opt.gravity[2] = g
        mujoco.mj_setConst(model, self._sim.data)
        return out

    # -- gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # a stream of its own, seeded by the episode seed
            self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0xD0,))))
        elif self._rng is None:
            self._rng = np.random.default_rng()
        sampled = self._apply_physics()
        ranges = self.config.ranges
        for key in ("obs_noise", "action_noise", "latency"):  # pushes are sampled per push
            if key in ranges:
                sampled[key] = self._sample(key)
        self._obs_noise = float(sampled.get("obs_noise", 0.0))
        self._action_noise = float(sampled.get("action_noise", 0.0))
        self._latency = int(sampled.get("latency", 0))
        if "latency" in sampled:
            sampled["latency"] = self._latency
        self._delay[:] = 0.0
        self._steps = 0
        self._next_push = self._sample("push_interval") if "push_interval" in ranges else math.inf
        self.sampled = sampled
        obs, info = self.env.reset(seed=seed, options=options)
        info["randomization"] = dict(sampled)
        return self._noisy(obs), info

    def step(self, action: Any):
        action = np.asarray(action, dtype=np.float64).reshape(self._delay.shape[1:])
        if self._latency > 0:
            self._delay[1:self._latency + 1] = self._delay[0:self._latency]
            self._delay[0] = action
            applied = self._delay[self._latency].copy()
        else:
            applied = action
        if self._action_noise > 0.0:
            applied = np.clip(applied + self._rng.normal(0.0, self._action_noise, applied.shape), self._low, self._high)
        push = self._maybe_push()
        obs, reward, terminated, truncated, info = self.env.step(applied)
        if push is not None:
            info["push_velocity"] = push
        return self._noisy(obs), reward, terminated, truncated, info

    # -- per-step perturbations ---------------------------------------------------------------
    def _noisy(self, obs: Any) -> Any:
        if self._obs_noise <= 0.0:
            return obs
        obs = np.asarray(obs)
        return (obs + self._rng.normal(0.0, self._obs_noise, obs.shape)).astype(obs.dtype, copy=False)

    def _maybe_push(self) -> np.ndarray | None:
        self._steps += 1
        if self._steps * self._dt < self._next_push:
            return None
        self._next_push += self._sample("push_interval")
        speed = self._sample("push_velocity")
        qvel = self._sim.data.qvel
        if len(self._root_dofs) == 1:  # planar: along x, either way
            kick = np.array([speed * (1.0 if self._rng.random() < 0.5 else -1.0)])
        else:
            angle = self._rng.uniform(0.0, 2.0 * math.pi)
            kick = speed * np.array([math.cos(angle), math.sin(angle)])
        qvel[list(self._root_dofs)] += kick
        return kick


def _root_horizontal_dofs(model: Any) -> tuple[int, ...]:
    """``qvel`` indices of the root's horizontal velocity: (x, y) of a free joint, (x,) of a planar
    ``rootx`` slide, () otherwise."""
    import mujoco

    if model.njnt == 0 or model.jnt_bodyid[0] != 1:
        return ()
    kind = model.jnt_type[0]
    if kind == mujoco.mjtJoint.mjJNT_FREE:
        return (int(model.jnt_dofadr[0]), int(model.jnt_dofadr[0]) + 1)
    if kind == mujoco.mjtJoint.mjJNT_SLIDE and model.joint(0).name == "rootx":
        return (int(model.jnt_dofadr[0]),)
    return ()
