"""Tasks: base environment + instruction + state view + success test + rewards.

A :class:`TaskSpec` describes one ``rewardgym/<Family>-<Task>-v0`` id. A
:class:`TaskEnv` is the base (real simulator) environment wrapped so that it can report
its raw state row each step; families subclass it and implement :meth:`TaskEnv.read_raw`.
Rewards are never computed here: injection lives in :mod:`rewardgym.wrappers`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, SupportsFloat

import gymnasium as gym
import numpy as np

from rewardgym.envs.view import StateView, ViewSpec, stack_raw

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "rewards" / "library"

EXTRA_RAW_KEYS = ("frame", "obs", "global_state")
"""Raw readings added by :meth:`TaskEnv.require` for trusted sources (perceptual models,
value potentials) and learners (a multi-agent task's global state, for centralised critics);
no view field reads them, so reward programs never receive them."""


class TaskUnavailableError(RuntimeError):
    """The task's simulator cannot run on this machine (missing optional package, no GPU)."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one task.

    Attributes:
        id: the Gymnasium id, ``rewardgym/<Family>-<Task>-v0``.
        family: family name (``locomotion``, ``metaworld``, ``fetch``, ``nethack``, ``minihack``, ``maniskill``).
        base_id: the simulator's own id the task is built on (e.g. ``Hopper-v5``).
        instruction: the natural-language instruction (what the LLM is asked to reward).
        success_doc: the success test in words, with thresholds and units.
        success: ``StateView -> (B,) bool``; computed from simulator state.
        view: the family's :class:`ViewSpec`.
        make_env: ``(**kwargs) -> TaskEnv``; builds base env + :class:`TaskEnv`.
        max_episode_steps: episode limit (applied by the base env or the family).
        expert: file name of the expert reward program in the reward library.
        available: ``() -> (ok, reason)``; a task whose simulator is missing is listed, not registered-and-crashing.
        tags: free labels (``"standard"``, ``"new-behaviour"``, ``"MT10"``, ``"sparse"``...).
    """

    id: str
    family: str
    base_id: str
    instruction: str
    success_doc: str
    success: Callable[[StateView], np.ndarray]
    view: ViewSpec
    make_env: Callable[..., "TaskEnv"]
    max_episode_steps: int | None = None
    expert: str | None = None
    available: Callable[[], tuple[bool, str]] = lambda: (True, "")
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        """``Hopper-Backflip`` for ``rewardgym/Hopper-Backflip-v0``."""
        return self.id.removeprefix("rewardgym/").rsplit("-v", 1)[0]

    @property
    def expert_path(self) -> Path | None:
        return LIBRARY_DIR / self.expert if self.expert else None

    def describe(self, meaning: int | None = None, intro: int | None = None, instruction: bool = True,
                 group: bool = False) -> str:
        """The task as shown to people and to the LLM: instruction, success test, view.

        ``meaning``/``intro``: the view's compact form (:meth:`ViewSpec.describe`);
        ``instruction=False`` leaves the instruction line out (a prompt that states the
        behaviour to reward elsewhere)."""
        return "\n".join([
            f"Task {self.id} (family {self.family}, simulator {self.base_id}"
            + (f", at most {self.max_episode_steps} steps per episode" if self.max_episode_steps else "") + ")",
            *([f"Instruction: {self.instruction}"] if instruction else []),
            f"Success test: {self.success_doc}",
            *([""] if meaning is None else []),
            self.view.describe(meaning, intro, group),
        ])


class SimulatorEnv(gym.Env):
    """Holds a simulator env whose class advertises an API the task does not honour.

    Meta-World and Fetch env classes define ``compute_reward`` (the goal-env API), so
    checkers such as SB3's ``check_env`` take them for goal envs with ``Dict``
    observations; rewardgym tasks have ``Box`` observations and inject their own reward.
    This env forwards the Gymnasium API to ``sim`` and is what ``env.unwrapped`` returns;
    the simulator itself stays reachable as ``env.unwrapped.sim`` (and ``TaskEnv.sim``).

    Args:
        sim: the simulator env (possibly wrapped; ``sim.unwrapped`` is the simulator).
    """

    def __init__(self, sim: gym.Env):
        self.sim = sim
        self.observation_space = sim.observation_space
        self.action_space = sim.action_space
        self.metadata = sim.metadata
        self.render_mode = sim.render_mode
        self.spec = sim.spec

    @property
    def np_random(self) -> np.random.Generator:  # the simulator's generator (seeding checks)
        return self.sim.unwrapped.np_random

    @property
    def _np_random(self) -> np.random.Generator | None:  # what Gymnasium's checker inspects
        return self.sim.unwrapped._np_random

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.sim.reset(seed=seed, options=options)

    def step(self, action: Any):
        return self.sim.step(action)

    def render(self):
        return self.sim.render()

    def close(self) -> None:
        self.sim.close()


class TaskEnv(gym.Wrapper):
    """The real simulator environment of a task, able to report its raw state row.

    Observations, actions and the base env's own reward pass through unchanged. After
    every ``reset``/``step``, :meth:`raw_state` returns this env's raw row: the family's
    simulator readings (:meth:`read_raw`) plus ``env_reward`` and ``elapsed_steps``.
    Families keep episode accumulators (e.g. total rotation for a flip) in
    :meth:`on_reset` / :meth:`on_step`.

    Args:
        env: the base environment (from ``gym.make(base_id)``).
        task: the task spec.
        state_in_info: also put the raw row into ``info["state"]`` (used by
            ``AsyncVectorEnv``, where the row must cross the process boundary).
    """

    def __init__(self, env: gym.Env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env)
        self.task = task
        self.state_in_info = state_in_info
        self._elapsed_steps = 0
        self._env_reward = 0.0
        self._terminated = False
        self._raw: dict[str, Any] | None = None
        self._final_raw: dict[str, Any] | None = None
        self._obs: Any = None
        self._frames: Any = None  # FrameRenderer once a reward asks for frames
        self._keep_obs = False
        self._continuous = isinstance(env.action_space, gym.spaces.Box)
        self.actions_checked = False
        """True when whoever steps this env has checked the action is finite already (a vector
        env's injection wrapper checks the whole batch once: one call instead of B)."""

    def require(self, frames: Any = None, obs: bool = False) -> "TaskEnv":
        """Add readings that some reward sources need to every raw row.

        Args:
            frames: a :class:`~rewardgym.envs.frames.FrameSpec`: raw rows get ``"frame"``
                ``(H, W, 3)`` uint8 rendered off-screen from that camera.
            obs: raw rows get ``"obs"``, the observation the agent sees (e.g. for a
                value-function potential).
        """
        if frames is not None and (self._frames is None or self._frames.spec != frames):
            from rewardgym.envs.frames import FrameRenderer

            self._frames = FrameRenderer(self.sim, frames)
        self._keep_obs = self._keep_obs or bool(obs)
        self._raw = None
        return self

    @property
    def sim(self) -> gym.Env:
        """The simulator env itself (MuJoCo env, NLE env ...) for reading state."""
        sim = self.__dict__.get("_sim")
        if sim is None:  # cached: read_raw asks for it every step
            inner = self.env.unwrapped
            sim = inner.sim.unwrapped if isinstance(inner, SimulatorEnv) else inner
            self.__dict__["_sim"] = sim
        return sim

    # -- family hooks -------------------------------------------------------------
    def read_raw(self) -> dict[str, Any]:
        """This env's raw readings (arrays, scalars or strings) for the view's fields."""
        raise NotImplementedError

    @classmethod
    def read_raw_batch(cls, envs: Sequence["TaskEnv"]) -> dict[str, Any] | None:
        """The family's readings of ``envs`` (all of this class) stacked batch-first, or None.

        Optional: a family may read its simulators column by column here (one ``np.stack``
        per key instead of a dict per env and a stack per key), which is what a vector env
        calls every step. It must equal ``stack_raw([e.read_raw() for e in envs])``.
        The default returns None: rows are read one by one (:func:`raw_batch_of`)."""
        return None

    def on_reset(self, obs: Any, info: dict) -> None:
        """Reset episode accumulators (after the base env reset)."""

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        """Update episode accumulators (after the base env step, before reading)."""

    # -- gymnasium API ------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._elapsed_steps = 0
        self._env_reward = 0.0
        self._terminated = False
        self.on_reset(obs, info)
        self._obs = obs
        self._raw = None
        if self.state_in_info:
            info["state"] = self.raw_state()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self._continuous and not self.actions_checked and not np.isfinite(action).all():
            raise_non_finite_action(self.task.id, action)  # NaN must not reach a simulator
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._elapsed_steps += 1
        self._env_reward = float(reward)
        self._terminated = bool(terminated)
        self.on_step(obs, action, info)
        self._obs = obs
        self._raw = None
        if terminated or truncated:  # kept: a same-step autoreset replaces the state before it is read
            self._final_raw = self.raw_state()
        if self.state_in_info:
            info["state"] = self.raw_state()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        super().close()

    def final_raw_state(self) -> dict[str, Any]:
        """The raw row of the state the last episode ended in (for Gymnasium's same-step autoreset)."""
        if self._final_raw is None:
            raise RuntimeError(f"{self.task.id}: no episode has ended yet")
        return self._final_raw

    def raw_state(self) -> dict[str, Any]:
        """The raw row of the current state (cached until the next step/reset)."""
        if self._raw is None:
            row = self.read_raw()
            row["env_reward"] = self._env_reward
            row["elapsed_steps"] = self._elapsed_steps
            row["terminated"] = self._terminated
            if self._frames is not None:
                row["frame"] = self._frames.render()
            if self._keep_obs:
                row["obs"] = np.array(self._obs, dtype=np.float32, copy=True)
            self._raw = row
        return self._raw


def raise_non_finite_action(task_id: str, action: Any) -> None:
    """The error for an action with NaN or infinite entries (which must not reach a simulator)."""
    raise ValueError(f"{task_id}: the action {np.asarray(action).tolist()} has non-finite values")


def _defined_by(cls: type, name: str) -> type:
    return next(k for k in cls.__mro__ if name in k.__dict__)


@functools.cache  # per class, once: raw_batch_of runs every vector step
def _batch_reader_applies(cls: type) -> bool:
    """Whether ``cls.read_raw_batch`` reads what ``cls``'s rows are: the class that defines it
    also defines the ``read_raw`` in use, and no subclass changed ``raw_state``. A subclass
    that adds readings (e.g. a multi-agent env over a single-agent family) falls back to
    its own rows instead of silently losing them."""
    reader = _defined_by(cls, "read_raw_batch")
    return (reader is not TaskEnv and _defined_by(cls, "read_raw") is reader
            and _defined_by(cls, "raw_state") is TaskEnv)


def raw_batch_of(envs: Sequence[TaskEnv]) -> dict[str, Any]:
    """The raw batch of ``envs``' current states, row ``i`` from ``envs[i]`` (never aliasing
    simulator memory): the family's :meth:`TaskEnv.read_raw_batch` where it has one and no
    env carries extra readings (frames, observations), else the rows stacked one by one."""
    cls = type(envs[0])
    if _batch_reader_applies(cls) and all(type(e) is cls and e._frames is None and not e._keep_obs for e in envs):
        batch = cls.read_raw_batch(envs)
        if batch is not None:
            batch["env_reward"] = np.array([e._env_reward for e in envs], dtype=np.float64)
            batch["elapsed_steps"] = np.array([e._elapsed_steps for e in envs], dtype=np.int64)
            batch["terminated"] = np.array([e._terminated for e in envs], dtype=bool)
            return batch
    return stack_raw([e.raw_state() for e in envs])
