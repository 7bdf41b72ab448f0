"""The reward critic: does an LLM-written program run, and can it possibly work?

:func:`critique` is the "reward critic" of Auto MC-Reward (Li et al., 2024) and the
execution-feedback step of Eureka (Ma et al., 2024): it writes the program to a file,
validates it with the sandbox (:func:`rewardgym.rewards.sandbox.validate_source`), runs it
on random-action rollouts of the real simulator (the program in its reward worker)
(:func:`rewardgym.rewards.check.check_program`), and returns a :class:`CriticResult` whose
``reason`` is the short, precise text sent back to the LLM for repair.

Stages, in order (``stage`` of the first failure, ``"ok"`` when none):

============  ========================================================================
``validate``  the sandbox rejected the source (syntax, imports, names, unknown state fields)
``load``      the module failed while being loaded (module-level code)
``runtime``   ``compute_reward`` raised, or returned a non-finite value or a wrong shape
``timeout``   no result within ``timeout_s`` (an endless loop, or far too slow)
``memory``    the child exceeded ``memory_mb``
``crash``     the evaluation process failed otherwise (simulator error, killed by a signal)
``stats``     it ran, but the reward statistics show it cannot teach anything
============  ========================================================================

Which statistics are fatal (decided here): the **total reward constant** over every step
of the rollouts (all zero included: a sparse reward that random actions never trigger gives
PPO no gradient) and a **total reward beyond** :data:`EXPLODING` in magnitude (it swamps
value learning). The check report's per-term warnings (a term constant, never non-zero,
exploding, or dominating the others) are **advisory**: a constant survival bonus or a
success bonus random actions never reach is normal; they are returned in ``warnings`` and
the synthesis loop may show them to the LLM in a reflection.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from rewardgym.envs.registry import get_task
from rewardgym.rewards.check import CheckReport, check_program
from rewardgym.rewards.prelude import prelude_namespace
from rewardgym.rewards.program import RewardProgramError
from rewardgym.rewards.sandbox import ProgramRejected, validate_source

EXPLODING = 1e4
"""Largest total reward magnitude (per step) accepted on random rollouts."""

MAX_VIOLATIONS = 5
"""Validation violations listed in ``reason`` (the rest are counted)."""

STAGES = ("ok", "validate", "load", "runtime", "timeout", "memory", "crash", "stats")


@dataclass
class CriticResult:
    """Outcome of :func:`critique`.

    Attributes:
        ok: the program passed every stage.
        stage: the failing stage (:data:`STAGES`), ``"ok"`` when none.
        reason: short text for the LLM: what failed, where, and (when known) why; ``""`` if ok.
        file: the program file the line refers to.
        line: 1-based line of the failure in the program, when known.
        term: the construct or term concerned (``"import os"``, ``"state.foo"``,
            ``"reward"``, a term name), when known.
        report: the check report (per-term statistics) when the program ran.
        warnings: advisory findings (not failures), from the check report.
        elapsed_s: seconds the critique took.
    """

    ok: bool
    stage: str
    reason: str
    file: str | None = None
    line: int | None = None
    term: str | None = None
    report: CheckReport | None = None
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """One line for logs: ``ok`` or ``stage file:line [term]: first line of the reason``."""
        if self.ok:
            if not self.warnings:
                return "ok"
            more = f" (+{len(self.warnings) - 2} more)" if len(self.warnings) > 2 else ""
            return "ok; warning: " + "; ".join(self.warnings[:2]) + more
        where = f"{Path(self.file).name if self.file else '?'}" + (f":{self.line}" if self.line else "")
        term = f" [{self.term}]" if self.term else ""
        return f"{self.stage} {where}{term}: {self.reason.splitlines()[0] if self.reason else ''}"


def _short_paths(text: str, path: Path) -> str:
    """Replace the program's absolute path by its file name (shorter for the LLM)."""
    return text.replace(str(path), path.name)


def _location(message: str, path: Path) -> int | None:
    m = re.search(re.escape(str(path)) + r":(\d+)", message) or re.search(re.escape(path.name) + r":(\d+)", message)
    return int(m.group(1)) if m else None


def _term(message: str) -> str | None:
    m = re.search(r"\bterm '([^']+)'", message)
    if m:
        return m.group(1)
    m = re.search(r"state has no field '([^']+)'", message)
    if m:
        return f"state.{m.group(1)}"
    if "the reward " in message:
        return "reward"
    if "the potential " in message:
        return "potential"
    return None


def _rejected(exc: ProgramRejected, path: Path) -> tuple[str, int | None, str | None]:
    lines = [f"{path.name}:{ln}:{col}: {what}: {why}" for ln, col, what, why in exc.violations[:MAX_VIOLATIONS]]
    extra = len(exc.violations) - MAX_VIOLATIONS
    if extra > 0:
        lines.append(f"... and {extra} more violation(s)")
    first = exc.violations[0] if exc.violations else (None, None, None, None)
    return "\n".join(lines), first[0], first[2]


def _fatal_stats(report: CheckReport) -> tuple[str, str] | None:
    """``(reason, term)`` when the report shows a program that cannot teach anything."""
    total = next((t for t in report.terms if t.name == "reward"), None)
    if total is None:
        return None
    n = report.steps * report.num_envs
    if total.std == 0.0:
        what = "zero" if total.nonzero == 0.0 else f"constant ({total.mean:.4g})"
        return (f"the reward is {what} on every one of {n} random-action steps, so it gives the agent no "
                f"learning signal; make it depend on the state with a dense shaping term (e.g. progress "
                f"or a distance to the goal), not only on rare events", "reward")
    peak = max(abs(total.min), abs(total.max))
    if peak > EXPLODING:
        return (f"the reward reaches {peak:.3g} per step on random actions (mean {total.mean:.3g}, std "
                f"{total.std:.3g}): scale or bound the terms (e.g. squash, tolerance, clip) so the per-step "
                f"reward stays within about [-10, 10]", "reward")
    return None


def critique(program_text: str, task_id: str, workdir: str | Path, steps: int = 100, num_envs: int = 4,
             timeout_s: float = 60.0, memory_mb: int | None = 2048, seed: int = 0,
             name: str | None = None) -> CriticResult:
    """Validate ``program_text`` and run it on random rollouts of ``task_id``; find what is wrong.

    Args:
        program_text: the program's source.
        task_id: the task whose view and simulator it runs on (short forms accepted).
        workdir: directory the program file is written to (created if needed).
        steps, num_envs: random-action vector steps and batch size of the rollouts.
        timeout_s, memory_mb: the check's wall-clock budget and the worker's memory limit (:func:`check_program`).
        seed: rollout seed.
        name: file name (default ``program_<sha256[:10]>.py``).

    Returns:
        A :class:`CriticResult`; never raises for a bad program (only for a bad task id
        or an unwritable ``workdir``).
    """
    start = time.monotonic()
    task = get_task(task_id)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not program_text.endswith("\n"):
        program_text += "\n"
    name = name or f"program_{hashlib.sha256(program_text.encode()).hexdigest()[:10]}.py"
    path = workdir / name
    path.write_text(program_text, encoding="utf-8")
    file = str(path)

    def fail(stage: str, reason: str, line: int | None = None, term: str | None = None,
             report: CheckReport | None = None) -> CriticResult:
        return CriticResult(False, stage, _short_paths(reason, path), file, line, term, report,
                            list(report.warnings) if report else [], time.monotonic() - start)

    try:
        validate_source(program_text, file, allowed_globals=set(prelude_namespace("numpy")),
                        view_fields=list(task.view.fields))
    except ProgramRejected as exc:
        reason, line, term = _rejected(exc, path)
        return fail("validate", reason, line, term)
    try:
        report = check_program(path, task.id, steps=steps, num_envs=num_envs, seed=seed, timeout_s=timeout_s,
                               memory_mb=memory_mb)
    except ProgramRejected as exc:  # not expected after the validation above; kept for safety
        reason, line, term = _rejected(exc, path)
        return fail("validate", reason, line, term)
    except RewardProgramError as exc:
        message = str(exc)
        if exc.kind == "timeout":
            return fail("timeout", f"{message}: compute_reward loops forever or is far too slow (loop over the "
                                   f"batch? use vectorised numpy)", exc.line or _location(message, path),
                        "compute_reward")
        if exc.kind == "memory":
            return fail("memory", f"{message}\ndo not build large arrays: compute on the (B, ...) state fields",
                        exc.line or _location(message, path), "compute_reward")
        if exc.kind == "crash":
            return fail("crash", message, exc.line or _location(message, path), "compute_reward")
        stage = "load" if "error in loading" in message else "runtime"
        return fail(stage, message, _location(message, path), _term(message))
    fatal = _fatal_stats(report)
    if fatal is not None:
        return fail("stats", f"{path.name}: {fatal[0]}", None, fatal[1], report)
    return CriticResult(True, "ok", "", file, None, None, report, list(report.warnings), time.monotonic() - start)
