"""The reward specification: one small immutable value for "which reward, how".

:class:`RewardSpec` gathers what the entry points (``gym.make``, ``gym.make_vec``,
``rewardgym.make_parallel(_vec)``, the SB3 adapter, ``rewardgym train``) used to pass as
loose keyword arguments: the ``reward=`` expression, ``trusted``, ``shaping=`` and its
``gamma``, the program limits, and the options of registered kinds (``reward_kwargs``).
It is parsed once, by the one parser of reward expressions
(:func:`~rewardgym.rewards.source.parse_expression`), knows
its terms, the kinds it names and the files it reads (which ``rewardgym train`` copies into a
run, and a resumed run reads from its own directory), and resolves to a
:class:`~rewardgym.rewards.source.RewardSource` (:meth:`RewardSpec.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from rewardgym.rewards.resolve import resolve_reward, with_shaping
from rewardgym.rewards.source import RewardSource, format_expression, is_file_term, parse_expression
from rewardgym.rewards.worker import ProgramLimits

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec

__all__ = ["RewardSpec", "format_expression", "is_file_term", "parse_expression"]


@dataclass(frozen=True)
class RewardSpec:
    """Which reward an environment gets, and how (module docstring).

    Attributes:
        reward: the ``reward=`` value: an expression string (``"sparse + 0.1*r.py"``), a
            :class:`RewardSource` or ``[(weight, source), ...]``.
        trusted: run program files as trusted code (no sandbox: your own code only).
        shaping: the potential of potential-based shaping (``"expert"``, a program, a
            perceptual model, a run directory, a callable), or None.
        gamma: the discount of the agent (required with ``shaping``).
        limits: time and memory limits of untrusted programs' workers.
        options: options of registered kinds, ``{kind: {option: value}}`` (``reward_kwargs``).
    """

    reward: Any = "env"
    trusted: bool = False
    shaping: Any = None
    gamma: float | None = None
    limits: ProgramLimits = field(default_factory=ProgramLimits)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, reward: Any = "env", *, trusted: bool = False, shaping: Any = None, gamma: float | None = None,
           reward_limits: Any = None, reward_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> "RewardSpec":
        """A spec from the entry points' keyword arguments (``reward`` may already be a spec)."""
        if isinstance(reward, RewardSpec):
            return reward
        if isinstance(reward, Path):
            reward = str(reward)
        return cls(reward, bool(trusted), shaping, gamma, ProgramLimits.of(reward_limits), dict(reward_kwargs or {}))

    # -- what it names ------------------------------------------------------------------
    def terms(self) -> list[tuple[float, str]]:
        """The expression's ``(weight, name)`` terms (``[]`` when ``reward`` is not a string)."""
        return parse_expression(self.reward) if isinstance(self.reward, str) else []

    def names(self) -> set[str]:
        """The names of the terms (kinds and files)."""
        return {name for _, name in self.terms()}

    def uses(self, kind: str) -> bool:
        """Whether the expression names ``kind`` (``"oni"``, ``"expert"`` ...)."""
        return kind in self.names()

    def files(self) -> list[str]:
        """Reward and shaping entries that name files (programs, models, run directories)."""
        files = [name for _, name in self.terms() if is_file_term(name)]
        if isinstance(self.shaping, (str, Path)) and is_file_term(str(self.shaping)):
            files.append(str(self.shaping))
        return files

    def plus(self, kind: str) -> "RewardSpec":
        """The same spec with ``+ kind`` added to the expression (unless it names it already)."""
        if not isinstance(self.reward, str) or self.uses(kind):
            return self
        return RewardSpec(f"{self.reward} + {kind}", self.trusted, self.shaping, self.gamma, self.limits,
                          self.options)

    def with_files(self, mapping: Mapping[str, str]) -> "RewardSpec":
        """The same spec with file names replaced (``{name in the expression: new path}``)."""
        terms = [(w, mapping.get(name, name)) for w, name in self.terms()]
        shaping = mapping.get(str(self.shaping), self.shaping) if self.shaping is not None else None
        reward = format_expression(terms) if terms else self.reward
        return RewardSpec(reward, self.trusted, shaping, self.gamma, self.limits, self.options)

    # -- what it becomes ----------------------------------------------------------------
    def resolve(self, task: "TaskSpec") -> RewardSource:
        """The reward source for ``task``: the expression resolved, plus shaping when given."""
        source = resolve_reward(self.reward, task, trusted=self.trusted, limits=self.limits,
                                reward_kwargs=dict(self.options))
        try:
            return with_shaping(source, self.shaping, self.gamma, task, self.trusted, self.limits,
                                dict(self.options))
        except BaseException:
            source.close()
            raise
