"""Any Gymnasium environment as a rewardgym task: :func:`register_task`.

The built-in families use the same pieces (a :class:`~rewardgym.envs.view.ViewSpec`, a
:class:`~rewardgym.envs.task.TaskEnv` that reads raw rows, a success test); this module
lets you declare them for your own env in a few lines::

    import gymnasium as gym, numpy as np, rewardgym
    from rewardgym import TaskField

    rewardgym.register_task(
        "Pendulum-Upright", env="Pendulum-v1",
        instruction="Swing the pendulum up and hold it upright.",
        fields=[TaskField("angle", "(B,)", "rad", "Pole angle from upright, in (-pi, pi].",
                          lambda env: (env.unwrapped.state[0] + np.pi) % (2 * np.pi) - np.pi),
                TaskField("angular_velocity", "(B,)", "rad/s", "Pole angular velocity.",
                          lambda env: env.unwrapped.state[1])],
        success=lambda s: np.abs(s.angle) < 0.1, success_doc="|angle| < 0.1 rad")
    env = gym.make("rewardgym/Pendulum-Upright-v0", reward="my_reward.py")

A reader takes the env (under its wrappers; use ``env.unwrapped`` for simulator state)
and returns one env's value; rows are stacked into the batch-first fields programs read.
Without ``fields`` a *generic view* (:func:`generic_view`) is built from the observation
space and the numeric ``info`` keys, so an env nobody described yet still gets ``describe``,
``check``, ``train`` and ``synthesize``. For the command line, put the registration in a
module or file and pass it with ``rewardgym --tasks my_tasks.py ...`` (or set
``REWARDGYM_TASKS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from rewardgym.envs.registry import add_task
from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, StateView, ViewSpec, common_fields, raw

COMMON_FIELD_NAMES = frozenset(f.name for f in common_fields())


@dataclass(frozen=True)
class TaskField:
    """A state-view field of a declared task, read from each env.

    Attributes:
        name: ``state.<name>``.
        shape: ``"(B,)"``, ``"(B, 3)"`` ...: ``B`` then the shape of one env's value.
        unit: physical unit, ``"-"`` when dimensionless, ``"bool"`` for flags.
        doc: one sentence saying what the value means (it is what an LLM is shown).
        read: ``env -> value`` for one env (``env`` is the task env under your wrappers;
            ``env.unwrapped`` is the simulator).
        previous: whether ``state.prev.<name>`` is meaningful.
    """

    name: str
    shape: str
    unit: str
    doc: str
    read: Callable[[gym.Env], Any]
    previous: bool = True

    def row_shape(self) -> tuple[int, ...]:
        """The shape of one env's value, from ``shape`` (``"(B, 3)"`` -> ``(3,)``)."""
        parts = [p.strip() for p in self.shape.strip().strip("()").split(",") if p.strip()]
        if not parts or parts[0] != "B" or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"field {self.name!r}: shape {self.shape!r} must read (B,) or (B, n, ...) with integers")
        return tuple(int(p) for p in parts[1:])


class DeclaredTaskEnv(TaskEnv):
    """The :class:`TaskEnv` of a declared task: each raw row is what the fields' readers return."""

    def __init__(self, env: gym.Env, task: TaskSpec, readers: Sequence[TaskField], state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        self._readers = list(readers)
        self._shapes = {f.name: f.row_shape() for f in readers}
        self._checked = False
        self._info: dict = {}

    def on_reset(self, obs: Any, info: dict) -> None:
        self._info = info

    def on_step(self, obs: Any, action: Any, info: dict) -> None:
        self._info = info

    def read_raw(self) -> dict[str, Any]:
        row = {}
        for f in self._readers:
            value = f.read(self)
            if not self._checked:  # the first row proves every reader's shape and type
                self._check(f, value)
            row[f.name] = np.array(value, dtype=np.float64) if np.ndim(value) else value
        self._checked = True
        return row

    def _check(self, f: TaskField, value: Any) -> None:
        shape = np.shape(value)
        if shape != self._shapes[f.name]:
            raise ValueError(f"task {self.task.id}: field {f.name!r} reader returned shape {shape}, but the field is "
                             f"declared {f.shape} (one env's value must have shape {self._shapes[f.name]})")
        try:
            number = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"task {self.task.id}: field {f.name!r} reader returned {type(value).__name__}, not a "
                             f"number or an array of numbers") from None
        if not np.isfinite(number).all():
            raise ValueError(f"task {self.task.id}: field {f.name!r} reader returned non-finite values {value!r}")


def generic_view(env: gym.Env, name: str = "generic") -> tuple[ViewSpec, list[TaskField]]:
    """A view for an env nobody described: its observation and numeric ``info`` entries.

    ``obs`` ``(B, n)`` is the flattened observation (a ``Dict`` space gives ``obs_<key>``
    per entry); every ``info`` key whose value is a number or a small numeric array after
    a reset and one random step becomes ``info_<key>``. The env is stepped once to find
    the keys.
    """
    fields: list[TaskField] = []
    space = env.observation_space

    def add_obs(field_name: str, sub: gym.Space, pick: Callable[[Any], Any]) -> None:
        if isinstance(sub, gym.spaces.Discrete):
            fields.append(TaskField(field_name, "(B,)", "-", f"The observation {field_name} (a discrete index).",
                                    lambda e, pick=pick: float(pick(e._obs))))
        elif isinstance(sub, gym.spaces.Box) and 0 < math.prod(sub.shape) <= 4096:
            n = math.prod(sub.shape)
            fields.append(TaskField(field_name, f"(B, {n})", "-",
                                    f"The observation {field_name}, flattened ({sub.shape} in the space; "
                                    f"bounds {_bounds(sub)}).",
                                    lambda e, pick=pick: np.asarray(pick(e._obs), dtype=np.float64).reshape(-1)))

    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            add_obs(f"obs_{_identifier(key)}", sub, lambda o, key=key: o[key])
    else:
        add_obs("obs", space, lambda o: o)
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[-1]
    for key, value in info.items():
        if isinstance(value, (bool, int, float, np.number, np.bool_)) or (
                isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and 0 < value.size <= 64):
            size = int(np.size(value))
            fields.append(TaskField(f"info_{_identifier(key)}", "(B,)" if np.ndim(value) == 0 else f"(B, {size})",
                                    "-", f"The env's info[{key!r}].",
                                    lambda e, key=key, nd=np.ndim(value): (
                                        float(e._info.get(key, 0.0)) if nd == 0 else
                                        np.asarray(e._info.get(key, np.zeros(size)), dtype=np.float64).reshape(-1))))
    view = ViewSpec.build(name, "A generic view built from the env's observation space and info keys: no simulator "
                                "state beyond what the env reports.",
                          [Field(f.name, f.shape, f.unit, f.doc, raw(f.name), f.previous) for f in fields])
    return view, fields


def _bounds(space: gym.spaces.Box) -> str:
    low, high = np.min(space.low), np.max(space.high)
    return f"[{low:g}, {high:g}]"


def _identifier(key: Any) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in str(key)).strip("_").lower()
    return text if text and not text[0].isdigit() else f"k_{text}"


def register_task(name: str, env: str | Callable[..., gym.Env], *, instruction: str,
                  fields: Sequence[TaskField] | None = None, success: Callable[[StateView], Any] | None = None,
                  success_doc: str | None = None, expert: str | Path | None = None, doc: str = "",
                  max_episode_steps: int | None = None, env_kwargs: dict[str, Any] | None = None,
                  family: str | None = None, replace: bool = False) -> TaskSpec:
    """Declare a task on any Gymnasium env and register its id (``gym.make``, the CLI, synthesis).

    Args:
        name: ``"MyRobot-Reach"`` (id ``rewardgym/MyRobot-Reach-v0``) or a full id ending ``-v<N>``.
        env: a Gymnasium id (``"Pendulum-v1"``) or a factory ``(**kwargs) -> gym.Env``
            (it receives ``render_mode`` and ``env_kwargs``).
        instruction: what the reward should make the agent do (shown to people and LLMs).
        fields: the state view's fields (:class:`TaskField`); None builds :func:`generic_view`.
        success: ``StateView -> (B,) bool``, read from the fields (None: never succeeds).
        success_doc: the success test in words, with thresholds and units.
        expert: path of a reward program for ``reward="expert"`` (optional).
        doc: a paragraph introducing the view (frames, conventions) for reward writers.
        max_episode_steps: episode limit (a ``TimeLimit`` beneath the reward wrapper).
        env_kwargs: keyword arguments for the env.
        family: the family name shown by ``rewardgym list`` (default: ``"user"``).
        replace: allow re-declaring an id (e.g. in a notebook).

    Raises:
        ValueError: a bad declaration, naming the field or argument (a name that shadows a
            common field or an array attribute, a duplicate field or id, a malformed shape).
    """
    task_id = name if name.startswith("rewardgym/") else f"rewardgym/{name}"
    if not task_id.rsplit("-", 1)[-1].startswith("v"):
        task_id += "-v0"
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"task {task_id}: instruction must be a sentence saying what to reward")
    env_kwargs = dict(env_kwargs or {})

    def base(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
        made = gym.make(env, render_mode=render_mode, **{**env_kwargs, **kwargs}) if isinstance(env, str) \
            else env(render_mode=render_mode, **{**env_kwargs, **kwargs})
        if max_episode_steps is not None:
            made = gym.wrappers.TimeLimit(made, max_episode_steps)
        return made

    if fields is None:
        probe = base()
        try:
            view, readers = generic_view(probe, name=task_id.removeprefix("rewardgym/").rsplit("-v", 1)[0])
        finally:
            probe.close()
    else:
        readers = list(fields)
        for f in readers:
            if not isinstance(f, TaskField):
                raise TypeError(f"task {task_id}: fields must be TaskField(name, shape, unit, doc, read), got "
                                f"{type(f).__name__}")
            if f.name in COMMON_FIELD_NAMES:
                raise ValueError(f"task {task_id}: field {f.name!r} shadows the common field {f.name!r} that every "
                                 f"view has (rewardgym fills it); choose another name")
            if not callable(f.read):
                raise TypeError(f"task {task_id}: field {f.name!r}: read must be a function env -> value")
            f.row_shape()
        try:
            view = ViewSpec.build(task_id.removeprefix("rewardgym/").rsplit("-v", 1)[0].lower(),
                                  doc or f"The state of {env if isinstance(env, str) else 'your env'}, read each step.",
                                  [Field(f.name, f.shape, f.unit, f.doc, raw(f.name, None), f.previous) for f in readers])
        except ValueError as exc:
            raise ValueError(f"task {task_id}: {exc}") from None
    expert_path = None
    if expert is not None:
        expert_path = Path(expert).resolve()
        if not expert_path.is_file():
            raise FileNotFoundError(f"task {task_id}: expert program not found: {expert}")
    spec_holder: list[TaskSpec] = []

    def make_env(render_mode: str | None = None, state_in_info: bool = False, **kwargs: Any) -> TaskEnv:
        return DeclaredTaskEnv(base(render_mode=render_mode, **kwargs), spec_holder[0], readers,
                               state_in_info=state_in_info)

    never = (lambda s: np.zeros(s.batch_size, dtype=bool))
    spec = TaskSpec(id=task_id, family=family or "user", base_id=env if isinstance(env, str) else
                    getattr(env, "__name__", "custom"), instruction=instruction.strip(),
                    success_doc=success_doc or ("declared success test" if success else "none declared (never succeeds)"),
                    success=success or never, view=view, make_env=make_env, max_episode_steps=max_episode_steps,
                    expert=str(expert_path) if expert_path else None, tags=("user",))
    spec_holder.append(spec)
    return add_task(spec, replace=replace)
