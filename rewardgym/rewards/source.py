"""Reward sources and their composition.

A :class:`RewardSource` turns a batch of states (and the actions taken) into a reward
``(B,)`` and named terms ``{name: (B,)}``. Sources compose: ``0.1 * a + b`` is a
:class:`WeightedSum`, itself a source. What ``reward=`` accepts is resolved by
:func:`rewardgym.rewards.resolve.resolve_reward`.

Terms of a composition are the weighted contributions of its parts, named
``<source>/<term>``, so they add up to the reward whenever each part's terms do.

The batch contract: a source always receives all ``B`` rows of a vector env, row ``i``
being env ``i``. On the autoreset step of Gymnasium's next-step mode a row is *inactive*
(:func:`rewardgym.envs.view.active_rows`): its state and previous state are both the reset
state, the wrapper discards what the source returns for it, and a stateful source must
not count it (ONI's per-episode counts, running statistics). :meth:`RewardSource.on_episode_start`
names the rows whose episode starts.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

import numpy as np

from rewardgym.envs.view import StateView

Terms = dict[str, Any]


class RewardSource:
    """Base class: ``compute(state, action) -> (reward (B,), terms)``.

    Subclasses set ``name`` (used to prefix terms in compositions) and implement
    :meth:`compute` over all ``B`` rows (see the module docstring for inactive rows).
    Stateful sources (running statistics, learned models) may override
    :meth:`on_episode_start`, called with the batch indices of environments that reset, keep
    their per-env state by row, and report numbers for the training log in :meth:`stats`.
    Sources that read more than the state view (camera frames, the agent's observation)
    say so in :meth:`requires`; the env builders then add those readings to the raw batch
    (:func:`rewardgym.envs.view.raw_batch`).
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

    def stats(self) -> dict[str, Any]:
        """Numbers for the training log (``metrics.jsonl``), e.g. ``{"oni/labels": 120}`` (default none)."""
        return {}

    def __add__(self, other: "RewardSource") -> "WeightedSum":
        return WeightedSum.of(self) + other

    def __radd__(self, other: Any) -> "RewardSource":
        if other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: "RewardSource") -> "WeightedSum":
        return WeightedSum.of(self) + (-1.0) * other

    def __mul__(self, weight: float) -> "WeightedSum":
        return WeightedSum([(finite_weight(weight, f"{weight}*{self.name}"), self)])

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
        self.parts = [(finite_weight(w, f"{w}*{s.name}"), s) for w, s in parts]
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
        return WeightedSum([(w * finite_weight(weight, repr(self)), s) for w, s in self.parts])

    __rmul__ = __mul__

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        total = None
        terms: Terms = {}
        for (weight, source), prefix in zip(self.parts, self._prefixes):
            reward, part_terms = source.compute(state, action)
            contribution = reward * weight if weight != 1.0 else reward
            total = contribution if total is None else add_aligned(total, contribution)
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

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _, source in self.parts:
            out.update(source.stats())
        return out

    def requires(self) -> dict[str, Any]:
        return merge_requirements(part.requires() for _, part in self.parts)

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{s.name}" for w, s in self.parts)


def add_aligned(a: Any, b: Any) -> Any:
    """``a + b`` where a team value ``(B,)`` meets a per-agent one ``(B, N)`` (multi-agent tasks):
    the team value is given to every agent (``a[:, None] + b``), never aligned with the agent axis."""
    nd_a, nd_b = getattr(a, "ndim", 0), getattr(b, "ndim", 0)
    if nd_a and nd_b and nd_a != nd_b:
        if nd_a < nd_b:
            a = a.reshape(tuple(a.shape) + (1,) * (nd_b - nd_a))
        else:
            b = b.reshape(tuple(b.shape) + (1,) * (nd_a - nd_b))
    return a + b


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


_TERM = re.compile(r"^\s*(?:(?P<weight>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?(?P<name>\S+?)\s*$")


def finite_weight(weight: Any, spec: Any) -> float:
    """``weight`` as a finite float, or a ValueError naming it and the reward it is part of."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"reward weight {weight!r} in {spec!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"reward weight {weight!r} in {spec!r} is not finite ({value}); weights must be finite "
                         f"numbers") from None
    return value


def split_sum(spec: str) -> list[tuple[float, str]]:
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
        weight = finite_weight(match.group("weight"), spec) if match.group("weight") else 1.0
        parts.append((sign * weight, match.group("name")))
        sign = 1.0
    return parts


def is_file_term(name: str) -> bool:
    """Whether a term of an expression names a file (a program, a model, a run directory)
    rather than a kind (``env``, ``sparse``, ``expert``, ``oni`` ...)."""
    return name.endswith((".py", ".pt")) or "/" in name or os.sep in name


def parse_expression(text: str) -> list[tuple[float, str]]:
    """``"sparse + 0.1*r.py - 2*env"`` -> ``[(1.0, "sparse"), (0.1, "r.py"), (-2.0, "env")]``,
    with repeats of one source merged (``r.py + ./r.py`` is ``2*r.py``: one program, one worker).

    The one parser of reward expressions; a single term without a weight is ``[(1.0, text)]``.

    Raises:
        ValueError: a term that cannot be parsed or a weight that is not finite, naming it.
    """
    text = text.strip()
    if " " not in text and "*" not in text:
        return [(1.0, text)]
    merged: dict[str, list] = {}
    for weight, name in split_sum(text):
        key = os.path.realpath(name) if is_file_term(name) else name
        if key in merged:
            merged[key][0] += weight
        else:
            merged[key] = [weight, name]
    return [(weight, name) for weight, name in merged.values()]


def format_expression(terms: list[tuple[float, str]]) -> str:
    """The expression :func:`parse_expression` reads back as ``terms`` (weights of 1 omitted)."""
    parts = []
    for i, (weight, name) in enumerate(terms):
        size = abs(weight)
        text = name if size == 1.0 else f"{size!r}*{name}"
        if i == 0:
            parts.append(text if weight >= 0 else f"-1.0*{name}" if size == 1.0 else f"-{text}")
        else:
            parts.append(f"{'-' if weight < 0 else '+'} {text}")
    return " ".join(parts)
