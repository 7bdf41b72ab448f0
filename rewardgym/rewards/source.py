"""Reward sources and their composition.

A :class:`RewardSource` turns a batch of states (and the actions taken) into a reward
``(B,)`` and named terms ``{name: (B,)}``. Sources compose: ``0.1 * a + b`` is a
:class:`WeightedSum`, itself a source. What ``reward=`` accepts is resolved by
:func:`resolve_reward`:

=====================  ==========================================================
``"env"``              the base environment's own reward
``"sparse"``           1.0 on steps where the task's success test holds, else 0.0
``"expert"``           the task's expert program from the reward library
``"path/to/r.py"``     a reward program (validated as untrusted unless ``trusted=True``)
``"path/to/m.pt"``     a perceptual reward model (``rewardgym demos fit``; reads camera frames)
``"sparse + 0.1*r.py"``  a weighted sum of any of the above (``+``, ``-``, ``w*``)
a RewardSource         used as is (e.g. ``RewardProgram``, ``WeightedSum``)
``[(w, src), ...]``    a weighted sum
=====================  ==========================================================

Terms of a composition are the weighted contributions of its parts, named
``<source>/<term>``, so they add up to the reward whenever each part's terms do.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from rewardgym.envs.view import StateView

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec

Terms = dict[str, Any]


class RewardSource:
    """Base class: ``compute(state, action) -> (reward (B,), terms)``.

    Subclasses set ``name`` (used to prefix terms in compositions) and implement
    :meth:`compute`. Stateful sources (running statistics, learned models) may override
    :meth:`on_episode_start`, called with the batch indices of environments that reset.
    Sources that read more than the state view (camera frames, the agent's observation)
    say so in :meth:`requires`; the env builders then add those readings to ``state.raw``.
    """

    name: str = "source"

    def requires(self) -> dict[str, Any]:
        """Extra raw readings this source needs: ``{"frames": FrameSpec, "obs": True}`` (default none).

        Passed to :meth:`rewardgym.envs.task.TaskEnv.require` by ``gym.make``/``make_vec``.
        """
        return {}

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        raise NotImplementedError

    def on_episode_start(self, env_indices: np.ndarray) -> None:
        """Environments ``env_indices`` began a new episode (default: nothing to do)."""

    def close(self) -> None:
        """Release what the source holds (worker processes, threads); called by ``env.close()``."""

    def __add__(self, other: "RewardSource") -> "WeightedSum":
        return WeightedSum.of(self) + other

    def __radd__(self, other: Any) -> "RewardSource":
        if other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: "RewardSource") -> "WeightedSum":
        return WeightedSum.of(self) + (-1.0) * other

    def __mul__(self, weight: float) -> "WeightedSum":
        return WeightedSum([(float(weight), self)])

    __rmul__ = __mul__

    def __neg__(self) -> "WeightedSum":
        return self * -1.0


class EnvReward(RewardSource):
    """The base environment's own reward (``state.env_reward``)."""

    name = "env"

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        reward = state.env_reward
        return reward, {"env": reward}


class SparseReward(RewardSource):
    """1.0 where the task's success test holds on the new state, else 0.0."""

    name = "sparse"

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        success = state.success
        reward = success.float() if hasattr(success, "float") and not isinstance(success, np.ndarray) \
            else success.astype(np.float64)
        return reward, {"success": reward}


class WeightedSum(RewardSource):
    """``Σ_i w_i · r_i`` over sources; terms are ``<name>/<term>`` weighted contributions.

    Args:
        parts: ``[(weight, source), ...]``.
    """

    name = "sum"

    def __init__(self, parts: Sequence[tuple[float, RewardSource]]):
        if not parts:
            raise ValueError("a weighted sum needs at least one reward source")
        self.parts = [(_finite_weight(w, f"{w}*{s.name}"), s) for w, s in parts]
        names = [s.name for _, s in self.parts]
        # Disambiguate repeated names so terms never overwrite each other.
        self._prefixes = [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]

    @classmethod
    def of(cls, source: RewardSource) -> "WeightedSum":
        return source if isinstance(source, WeightedSum) else cls([(1.0, source)])

    def __add__(self, other: RewardSource) -> "WeightedSum":
        other_parts = other.parts if isinstance(other, WeightedSum) else [(1.0, other)]
        return WeightedSum(self.parts + list(other_parts))

    def __mul__(self, weight: float) -> "WeightedSum":
        return WeightedSum([(w * _finite_weight(weight, repr(self)), s) for w, s in self.parts])

    __rmul__ = __mul__

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        total = None
        terms: Terms = {}
        for (weight, source), prefix in zip(self.parts, self._prefixes):
            reward, part_terms = source.compute(state, action)
            contribution = reward * weight if weight != 1.0 else reward
            total = contribution if total is None else total + contribution
            if part_terms and set(part_terms) == {prefix}:  # e.g. shaping's single term "shaping"
                terms[prefix] = part_terms[prefix] * weight if weight != 1.0 else part_terms[prefix]
            elif part_terms:
                for key, value in part_terms.items():
                    terms[f"{prefix}/{key}"] = value * weight if weight != 1.0 else value
            else:
                terms[prefix] = contribution
        return total, terms

    def on_episode_start(self, env_indices: np.ndarray) -> None:
        for _, source in self.parts:
            source.on_episode_start(env_indices)

    def close(self) -> None:
        for _, source in self.parts:
            source.close()

    def requires(self) -> dict[str, Any]:
        return merge_requirements(part.requires() for _, part in self.parts)

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{s.name}" for w, s in self.parts)


def merge_requirements(requirements: Any) -> dict[str, Any]:
    """Union of several sources' :meth:`RewardSource.requires`; two different frame specs are an error."""
    merged: dict[str, Any] = {}
    for req in requirements:
        for key, value in req.items():
            if key in merged and merged[key] != value and key == "frames":
                raise ValueError(f"reward sources need different camera frames ({merged[key]} and {value}); "
                                 f"compose sources that use the same camera and size")
            merged[key] = merged.get(key) or value
    return merged


# Named sources beyond env/sparse/expert (e.g. learned intrinsic rewards) register here:
# factory(task, **options) -> RewardSource.
SOURCE_FACTORIES: dict[str, Callable[..., RewardSource]] = {}


def register_source(name: str, factory: Callable[..., RewardSource]) -> None:
    """Make ``name`` usable in ``reward=`` strings (``"sparse + 0.1*name"``)."""
    SOURCE_FACTORIES[name] = factory


_TERM = re.compile(r"^\s*(?:(?P<weight>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?(?P<name>\S+?)\s*$")


def _finite_weight(weight: Any, spec: Any) -> float:
    """``weight`` as a finite float, or a ValueError naming it and the reward it is part of."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"reward weight {weight!r} in {spec!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"reward weight {weight!r} in {spec!r} is not finite ({value}); weights must be finite "
                         f"numbers") from None
    return value


def _split_sum(spec: str) -> list[tuple[float, str]]:
    """``"sparse + 0.1*r.py - 2*env"`` -> ``[(1, "sparse"), (0.1, "r.py"), (-2, "env")]``."""
    parts: list[tuple[float, str]] = []
    # Split on + or - that separate terms (surrounded by spaces or followed by a weight).
    tokens = re.split(r"\s+([+-])\s+", " " + spec.strip() + " ")
    sign = 1.0
    for token in tokens:
        token = token.strip()
        if token in ("+", "-"):
            sign = 1.0 if token == "+" else -1.0
            continue
        if not token:
            continue
        match = _TERM.match(token)
        if match is None:
            raise ValueError(f"cannot parse reward term {token!r} in {spec!r}")
        weight = _finite_weight(match.group("weight"), spec) if match.group("weight") else 1.0
        parts.append((sign * weight, match.group("name")))
        sign = 1.0
    return parts


def resolve_reward(spec: Any, task: "TaskSpec", trusted: bool = False, limits: Any = None) -> RewardSource:
    """Turn a ``reward=`` argument into a :class:`RewardSource` for ``task``.

    Args:
        spec: see the module docstring for the accepted forms.
        task: the task (its view validates programs; its expert program is ``"expert"``).
        trusted: run program files as trusted code (skip sandbox validation, run in-process).
        limits: time and memory limits of untrusted programs' workers
            (:class:`~rewardgym.rewards.worker.ProgramLimits` or a dict; default limits).

    Raises:
        ValueError: the spec names nothing known; the message lists the accepted forms.
        FileNotFoundError: a program path that does not exist.
        rewardgym.rewards.sandbox.ProgramRejected: a program broke a sandbox rule.
    """
    from rewardgym.rewards.program import RewardProgram

    if isinstance(spec, RewardSource):
        return spec
    if isinstance(spec, (list, tuple)):
        return WeightedSum([(_finite_weight(w, spec), resolve_reward(s, task, trusted, limits)) for w, s in spec])
    if isinstance(spec, Path) and spec.suffix == ".pt":
        return _perceptual(spec, task, trusted)
    if isinstance(spec, Path):
        return RewardProgram.from_file(spec, view=task.view, trusted=trusted, limits=limits)
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
        return RewardProgram.from_file(task.expert_path, view=task.view, name="expert", limits=limits)
    if text == "oni" and text not in SOURCE_FACTORIES:
        import rewardgym.intrinsic  # noqa: F401 - registers "oni" (imported on use: it is not small)
    if text in SOURCE_FACTORIES:
        return SOURCE_FACTORIES[text](task)
    if text.endswith(".py") and " " not in text and "*" not in text:
        return RewardProgram.from_file(text, view=task.view, trusted=trusted, limits=limits)
    if text.endswith(".pt") and " " not in text and "*" not in text:
        return _perceptual(text, task, trusted)
    parts = _split_sum(text)
    if len(parts) > 1 or (parts and parts[0][0] != 1.0):
        return WeightedSum([(w, resolve_reward(name, task, trusted, limits)) for w, name in parts])
    known = ["env", "sparse", "expert", *sorted(set(SOURCE_FACTORIES) | {"oni"})]
    raise ValueError(f"unknown reward {spec!r}: use one of {', '.join(map(repr, known))}, a path to a "
                     f"reward program (.py) or a perceptual model (.pt, from `rewardgym demos fit`), or a "
                     f"weighted sum such as 'sparse + 0.1*my_reward.py'")


def _perceptual(path: str | Path, task: "TaskSpec", trusted: bool = False) -> RewardSource:
    from rewardgym.perceptual.reward import PerceptualReward  # torch-heavy: imported on use

    return PerceptualReward(path, task, trusted)
