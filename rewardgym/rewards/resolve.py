"""What ``reward=`` and ``shaping=`` accept, and how new kinds register themselves.

:func:`resolve_reward` turns a ``reward=`` argument into a :class:`RewardSource`:

=======================  ==========================================================
``"env"``                the base environment's own reward
``"sparse"``             1.0 on steps where the task's success test holds, else 0.0
``"expert"``             the task's expert program from the reward library
``"path/to/r.py"``       a reward program (validated as untrusted unless ``trusted=True``)
a registered kind        e.g. ``"oni"`` (learned intrinsic reward), ``"model.pt"`` (a
                         perceptual model): see :func:`reward_kinds`
``"sparse + 0.1*r.py"``  a weighted sum of any of the above (``+``, ``-``, ``w*``)
a RewardSource           used as is (e.g. ``RewardProgram``, ``WeightedSum``)
``[(w, src), ...]``      a weighted sum
=======================  ==========================================================

:func:`resolve_potential` does the same for ``shaping=`` (Φ of potential-based shaping):
``"expert"`` or a program path (their ``compute_potential``), a registered potential kind
(a perceptual model, a trained run's value function), a :class:`RewardProgram` or any
callable ``StateView -> (B,)``.

This package is a leaf: kinds defined above it (ONI in :mod:`rewardgym.intrinsic`,
perceptual models in :mod:`rewardgym.perceptual`, value potentials in
:mod:`rewardgym.runs`) register a *resolver* here, by object or lazily as a
``"module:function"`` string imported on first use, so ``import rewardgym`` stays light
and nothing here imports upwards. A resolver is called as
``resolver(spec, task, trusted=..., options=...)`` and returns a source (or potential) if
it recognises ``spec``, else ``None``. ``options`` is ``reward_kwargs[kind]`` from
``gym.make(..., reward_kwargs={kind: {...}})``: options travel with the env, never through
process-global state.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rewardgym.envs.view import StateView
from rewardgym.rewards.program import RewardProgram
from rewardgym.rewards.shaping import PotentialShaping
from rewardgym.rewards.source import EnvReward, RewardSource, SparseReward, WeightedSum, finite_weight, parse_expression

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec

Resolver = Callable[..., Any]
"""``resolver(spec, task, *, trusted, options) -> source | None``."""


@dataclass
class Kind:
    """A registered kind of reward source or potential.

    Attributes:
        name: the kind's name; ``reward_kwargs[name]`` are its options.
        resolver: the resolver, or ``"module:function"`` imported on first use.
        describe: one phrase for error messages and docs (``"'oni': ONI's intrinsic reward"``).
    """

    name: str
    resolver: Resolver | str
    describe: str

    def resolve(self, spec: Any, task: "TaskSpec", trusted: bool, options: dict[str, Any]) -> Any:
        if isinstance(self.resolver, str):
            module, _, attr = self.resolver.partition(":")
            self.resolver = getattr(importlib.import_module(module), attr)
        return self.resolver(spec, task, trusted=trusted, options=options)


_REWARD_KINDS: dict[str, Kind] = {}
_POTENTIAL_KINDS: dict[str, Kind] = {}


def task_agents(task: "TaskSpec") -> tuple[str, ...] | None:
    """The agent names of a multi-agent task (its programs return per-agent values), else None."""
    return getattr(task, "agents", None) or None


def register_reward_kind(name: str, resolver: Resolver | str, describe: str) -> None:
    """Make a new kind of reward source usable in ``reward=`` (and in weighted sums).

    Args:
        name: the kind's name (its options are ``reward_kwargs[name]``).
        resolver: ``resolver(spec: str, task, *, trusted, options) -> RewardSource | None``,
            or its ``"module:function"`` path (imported when a spec is first resolved).
        describe: how the user writes it, for messages (``"MODEL.pt: a perceptual model"``).
    """
    _REWARD_KINDS[name] = Kind(name, resolver, describe)


def register_potential_kind(name: str, resolver: Resolver | str, describe: str) -> None:
    """Make a new kind of potential Φ usable in ``shaping=``; the resolver returns a callable
    ``StateView -> (B,)`` (optionally with ``requires()`` and ``close()``) or None."""
    _POTENTIAL_KINDS[name] = Kind(name, resolver, describe)


def reward_kinds() -> list[str]:
    """How each accepted ``reward=`` form is written (for messages and ``--help``)."""
    return ["'env'", "'sparse'", "'expert'", "PROGRAM.py", *(k.describe for k in _REWARD_KINDS.values())]


def resolve_reward(spec: Any, task: "TaskSpec", trusted: bool = False, limits: Any = None,
                   reward_kwargs: dict[str, dict[str, Any]] | None = None) -> RewardSource:
    """Turn a ``reward=`` argument into a :class:`RewardSource` for ``task``.

    Args:
        spec: see the module docstring for the accepted forms.
        task: the task (its view validates programs; its expert program is ``"expert"``).
        trusted: run program files as trusted code (skip sandbox validation, run in-process).
        limits: time and memory limits of untrusted programs' workers
            (:class:`~rewardgym.rewards.worker.ProgramLimits` or a dict; default limits).
        reward_kwargs: options of registered kinds, ``{kind: {option: value}}``.

    Raises:
        ValueError: the spec names nothing known; the message lists the accepted forms.
        FileNotFoundError: a program path that does not exist.
        rewardgym.rewards.sandbox.ProgramRejected: a program broke a sandbox rule.
    """
    kwargs = _check_kwargs(reward_kwargs)
    if isinstance(spec, RewardSource):
        return spec
    if isinstance(spec, (list, tuple)):
        return WeightedSum([(finite_weight(w, spec), resolve_reward(s, task, trusted, limits, kwargs)) for w, s in spec])
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str):
        raise TypeError(f"reward= takes a string, a path, a RewardSource or [(weight, source)]; "
                        f"got {type(spec).__name__}")
    text = spec.strip()
    if text == "env":
        return EnvReward()
    if text == "sparse":
        return SparseReward()
    if text == "expert":
        if task.expert_path is None or not task.expert_path.is_file():
            raise ValueError(f"task {task.id} has no expert reward program")
        # Shipped programs are validated like any other: they prove the sandbox admits real rewards.
        return RewardProgram.from_file(task.expert_path, view=task.view, name="expert", limits=limits,
                                       agents=task_agents(task))
    single = " " not in text and "*" not in text
    if single and text.endswith(".py"):
        return RewardProgram.from_file(text, view=task.view, trusted=trusted, limits=limits,
                                       agents=task_agents(task))
    if single:
        for kind in _REWARD_KINDS.values():
            source = kind.resolve(text, task, trusted, kwargs.get(kind.name, {}))
            if source is not None:
                return source
    parts = parse_expression(text)
    programs = [name for _, name in parts if name == "expert" or name.endswith(".py")]
    if len(programs) > MAX_PROGRAMS and not trusted:
        raise ValueError(f"reward {text[:200]!r} names {len(programs)} reward programs; at most {MAX_PROGRAMS} are "
                         f"allowed in one reward (each runs in its own worker, with its own time and memory limits)")
    if len(parts) > 1 or (parts and parts[0][0] != 1.0):
        return WeightedSum([(w, resolve_reward(name, task, trusted, limits, kwargs)) for w, name in parts])
    if text.endswith(".pt") and not Path(text).exists():
        raise FileNotFoundError(f"reward model not found: {text}")
    raise ValueError(f"unknown reward {spec!r}: use {', '.join(reward_kinds())}, or a weighted sum such as "
                     f"'sparse + 0.1*my_reward.py'")


MAX_PROGRAMS = 4
"""Distinct untrusted reward programs in one ``reward=`` expression. Each runs in its own
worker under :class:`~rewardgym.rewards.worker.ProgramLimits`, so one expression holds at
most ``MAX_PROGRAMS`` workers (plus one for a ``shaping=`` program): its memory is bounded
by ``(MAX_PROGRAMS + 1) x memory_mb``, whatever the expression repeats."""


def resolve_potential(spec: Any, task: "TaskSpec", trusted: bool = False, limits: Any = None,
                      reward_kwargs: dict[str, dict[str, Any]] | None = None) -> Callable[[StateView], Any]:
    """Φ for ``shaping=`` (see the module docstring); ``trusted`` and ``limits`` apply to program files."""
    kwargs = _check_kwargs(reward_kwargs)
    if isinstance(spec, RewardProgram):
        program = spec
    elif callable(spec):
        return spec
    elif spec == "expert":
        if task.expert_path is None:
            raise ValueError(f"task {task.id} has no expert program to take a potential from")
        program = RewardProgram.from_file(task.expert_path, view=task.view, name="expert", limits=limits,
                                          agents=task_agents(task))
    elif isinstance(spec, (str, Path)) and str(spec).endswith(".py"):
        program = RewardProgram.from_file(spec, view=task.view, trusted=trusted, limits=limits,
                                          agents=task_agents(task))
    else:
        for kind in _POTENTIAL_KINDS.values() if isinstance(spec, (str, Path)) else ():
            potential = kind.resolve(str(spec), task, trusted, kwargs.get(kind.name, {}))
            if potential is not None:
                return potential
        forms = ", ".join(["'expert'", "a reward program (.py) defining compute_potential(state)",
                           *(k.describe for k in _POTENTIAL_KINDS.values()), "a RewardProgram or a callable"])
        raise ValueError(f"shaping= takes {forms}; got {spec!r}")
    if not program.has_potential:
        raise ValueError(f"{program.filename} defines no compute_potential(state), so it cannot be used for shaping")
    return program.compute_potential


def with_shaping(source: RewardSource, shaping: Any, gamma: float | None, task: "TaskSpec",
                 trusted: bool = False, limits: Any = None,
                 reward_kwargs: dict[str, dict[str, Any]] | None = None) -> RewardSource:
    """``source + PotentialShaping(Φ, γ)``; ``gamma`` is required (it must be the agent's)."""
    if shaping is None:
        if gamma is not None:
            raise ValueError("gamma= is only used with shaping=; pass both or neither")
        return source
    if gamma is None:
        raise ValueError("shaping= needs gamma=: the discount of the agent that trains on this env "
                         "(rewardgym train passes it for you)")
    return source + PotentialShaping(resolve_potential(shaping, task, trusted, limits, reward_kwargs), gamma)


def _check_kwargs(reward_kwargs: Any) -> dict[str, dict[str, Any]]:
    if reward_kwargs is None:
        return {}
    if not isinstance(reward_kwargs, dict) or not all(isinstance(v, dict) for v in reward_kwargs.values()):
        raise TypeError("reward_kwargs takes {kind: {option: value}}, e.g. {'oni': {'beta': 0.05}}")
    unknown = set(reward_kwargs) - set(_REWARD_KINDS) - set(_POTENTIAL_KINDS)
    if unknown:
        known = sorted(set(_REWARD_KINDS) | set(_POTENTIAL_KINDS))
        raise ValueError(f"reward_kwargs names unknown kind(s) {sorted(unknown)}; known kinds: {known}")
    return reward_kwargs
