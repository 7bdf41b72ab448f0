"""``rewardgym check``: validate a reward program and run it on random rollouts, with limits.

The same report feeds the LLM synthesis loop (Auto MC-Reward's critic): per-term
statistics over random-action rollouts of the real simulator, plus warnings for terms
that are constant, never non-zero, or much larger than the rest.

The program is validated in this process (fast, precise line/column errors), then the
rollouts run here with the program in its reward worker (:mod:`rewardgym.rewards.worker`,
the one isolation engine: the same limits, seccomp filter and crash containment as
``gym.make`` and training), so an infinite loop, a runaway allocation or a crash in an
untrusted program cannot take the caller down. The whole check also has a wall-clock
budget, checked after every vector step (the simulators are trusted code, as everywhere).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.envs.registry import get_task


@dataclass
class TermStats:
    """Statistics of one term over every step of the rollouts (units of the reward)."""

    name: str
    mean: float
    std: float
    min: float
    max: float
    nonzero: float  # fraction of steps with a non-zero value


@dataclass
class CheckReport:
    """Result of :func:`check_program`."""

    program: str
    task: str
    steps: int
    num_envs: int
    episodes: int
    success_rate: float
    terms: list[TermStats] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """Plain-text table (what the LLM critic is shown)."""
        lines = [f"check {self.program} on {self.task}: {self.steps} steps x {self.num_envs} envs of "
                 f"random actions, {self.episodes} finished episodes, success rate {self.success_rate:.2f}",
                 f"{'term':<24} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} {'nonzero':>8}"]
        for t in self.terms:
            lines.append(f"{t.name:<24} {t.mean:>10.4g} {t.std:>10.4g} {t.min:>10.4g} {t.max:>10.4g} "
                         f"{t.nonzero:>8.2f}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _stats(name: str, values: np.ndarray) -> TermStats:
    return TermStats(name, float(values.mean()), float(values.std()), float(values.min()),
                     float(values.max()), float(np.mean(values != 0)))


def _warnings(terms: list[TermStats]) -> list[str]:
    out = []
    parts = [t for t in terms if t.name != "reward"]
    scale = {t.name: max(abs(t.mean), t.std) for t in parts}
    for t in parts:
        if t.nonzero == 0.0:
            out.append(f"term {t.name!r} was zero on every step")
        elif t.std == 0.0:
            out.append(f"term {t.name!r} is constant ({t.mean:.4g}) on random rollouts")
        if max(abs(t.min), abs(t.max)) > 1e4:
            out.append(f"term {t.name!r} reaches {max(abs(t.min), abs(t.max)):.3g}: exploding scale")
    if len(parts) > 1:
        total = sum(scale.values())
        for name, s in scale.items():
            if total > 0 and s / total > 0.95:
                out.append(f"term {name!r} dominates the reward ({100 * s / total:.0f}% of the total scale)")
    return out


def _rollout_loop(env, steps: int, seed: int, deadline: float | None = None,
                  on_late: Any = None) -> dict[str, Any]:
    """``steps`` random-action vector steps; every reward, term and finished episode.
    ``on_late()`` is raised once ``time.monotonic()`` passes ``deadline``."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    rewards, terms, successes = [], {}, []
    episodes = 0
    for _ in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            raise on_late()
        _, reward, _, _, info = env.step(env.action_space.sample())
        rewards.append(np.asarray(reward, dtype=np.float64))
        for name, value in info["reward_terms"].items():
            if name.startswith("_"):  # Gymnasium's masks
                continue
            terms.setdefault(name, []).append(np.asarray(value, dtype=np.float64))
        if "episode_stats" in info:
            mask = info["_episode_stats"]
            episodes += int(mask.sum())
            successes.extend(info["episode_stats"]["success"][mask].tolist())
    last_success = np.asarray(info["success"], dtype=bool)
    return {"reward": np.concatenate(rewards),
            "terms": {k: np.concatenate(v) for k, v in terms.items()},
            "episodes": episodes,
            "success_rate": float(np.mean(successes)) if successes else float(last_success.mean())}


def check_program(program: str | Path, task_id: str, steps: int = 200, num_envs: int = 4, seed: int = 0,
                  timeout_s: float = 120.0, memory_mb: int | None = 4096, trusted: bool = False) -> CheckReport:
    """Validate ``program`` against ``task_id``'s view and run it on random rollouts.

    Args:
        program: path of the reward program.
        task_id: task id (short forms accepted).
        steps: vector steps of random actions (``steps * num_envs`` transitions).
        num_envs: environments in the batch.
        seed: seed of the environments and of the action sampler.
        timeout_s: wall-clock budget of the whole check, seconds (each reward call also
            gets at most :class:`~rewardgym.rewards.worker.ProgramLimits`' default).
        memory_mb: memory limit of the program's worker, MiB (None: the default limit).
        trusted: skip sandbox validation and run the program in this process (your own code).

    Raises:
        ProgramRejected: validation failed (file, line, column, construct).
        RewardProgramError: the program failed at run time (file, line, term), or ran out of
            time (``kind="timeout"``) or memory (``kind="memory"``), or crashed its worker.
    """
    from rewardgym.rewards.prelude import prelude_namespace
    from rewardgym.rewards.program import ProgramLimits, RewardProgramError
    from rewardgym.rewards.sandbox import validate_source

    for option, value in (("steps", steps), ("num_envs", num_envs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value!r}")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if memory_mb is not None and (not isinstance(memory_mb, int) or memory_mb < 1):
        raise ValueError(f"memory_mb must be a positive number of MiB (or None), got {memory_mb!r}")
    task = get_task(task_id)
    path = Path(program)
    if not path.is_file():
        raise FileNotFoundError(f"reward program not found: {path}")
    if not trusted:  # validate here (precise line/column errors); the program itself runs in its worker
        validate_source(path.read_text(encoding="utf-8"), str(path),
                        allowed_globals=set(prelude_namespace("numpy")), view_fields=list(task.view.fields))
    limits = ProgramLimits(timeout_s=min(float(timeout_s), ProgramLimits().timeout_s),
                           memory_mb=memory_mb if memory_mb is not None else ProgramLimits().memory_mb)

    def late() -> RewardProgramError:
        return RewardProgramError(f"{program}: no result within {timeout_s:g} s for {steps} steps x {num_envs} envs "
                                  f"on {task.id}", str(program), kind="timeout")

    env = gym.make_vec(task.id, num_envs=num_envs, reward=str(program), trusted=trusted, reward_limits=limits)
    try:
        out = _rollout_loop(env, steps, seed, deadline=time.monotonic() + timeout_s, on_late=late)
    finally:
        env.close()
    stats = [_stats("reward", out["reward"])] + [_stats(k, v) for k, v in out["terms"].items()]
    return CheckReport(program=str(program), task=task.id, steps=steps, num_envs=num_envs,
                       episodes=out["episodes"], success_rate=out["success_rate"], terms=stats,
                       warnings=_warnings(stats))
