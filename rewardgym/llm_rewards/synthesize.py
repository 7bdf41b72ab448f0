"""``rewardgym synthesize``: LLM reward synthesis (Text2Reward + Auto MC-Reward + Eureka-style search).

One round:

1. **Designer** (Text2Reward): the LLM gets the instruction, the task's documentation
   (exactly ``rewardgym describe``), the program rules and few-shot programs retrieved
   from the reward library, and writes ``samples`` programs.
2. **Critic** (Auto MC-Reward): each program is extracted, validated by the sandbox and
   run on random rollouts (the program in its reward worker); a failure goes back to the LLM
   with the exact error for at most ``max_repairs`` repairs.
3. **Judge** every valid candidate before any RL (:mod:`rewardgym.analysis`): EPIC/STARC
   distance to the task's expert and to sparse success, alignment with the success test,
   flags. With ``prescreen`` K only the K best-judged candidates of a round are trained.
4. **Train and evaluate** every (kept) valid candidate with PPO for ``steps`` env steps, in
   parallel (a local process pool, or Ray), then evaluate it on the task's success test.
5. **Trajectory analysis / reward reflection** (Auto MC-Reward, Eureka): per-term
   statistics over training, how episodes end, success over training, the judgement of
   step 3; this summary,
   the best program so far and optional human feedback make the next round's prompt.

**Edit mode** (for weak models, :mod:`rewardgym.llm_rewards.edit`): instead of whole
programs the round asks ``samples`` times for one JSON edit (new values for the named
numbers, terms removed or added) of a base program that works: the best so far, else the
library program written for this task, else the closest one for this task's state view,
marked as written for another task with its unrelated terms flagged
(:meth:`Synthesizer._base`). ``mode="edit"`` uses it from the first round; ``mode="auto"``
(default) switches to it once ``edit_after`` rounds in a row produced no valid candidate,
and stays there.

Requests are fitted to the model's context window (``context_size``; else what the server
says or what its refusal said; :func:`rewardgym.llm_rewards.prompts.fit_request`), with what
was shortened and the reply cap recorded per round; a reflection that cannot fit becomes a
round of edits of the best program. Every reply is capped at ``max_reply_tokens`` (lower
where the window demands) and a cut reply is reported.

The best program (by success rate, ties by env return) is written as a standalone reward
program, ``best_reward.py``, with ``report.md`` and ``report.png``.

Everything is recorded in the run directory, and ``state.json`` is rewritten atomically
after every step, so any stop (a budget, Ctrl-C, the server down, a crash) leaves
``report.md`` with the reason and the resume command, and ``--resume RUN`` continues at
the same step: finished LLM calls are not repeated (and are answered from the client's
content-addressed cache), a received program is validated once, a request that got no
reply is sent again, finished training is kept (a half-trained candidate resumes from its
checkpoint). Budgets and the cost line count the whole run, every process (from the
transcript).

Size: above 600 lines because the synthesis loop with its resumable state (received state is
validated here) and its report; the report is the next candidate to move out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rewardgym.envs.registry import get_task
from rewardgym.files import NAME_PATTERN, atomic_write_text, no_links_out, read_json, save_figure
from rewardgym.llm.client import (BudgetExceeded, ContextLengthError, LLMError, LLMRequestError, LLMTimeoutError,
                                  LLMUnavailableError)
from rewardgym.llm_rewards.critic import critique
from rewardgym.llm_rewards.edit import EditError, adapt_base, apply_edit, edit_schema, parameterize, parse_edit
from rewardgym.llm_rewards.extract import NoCodeFound, extract_programs
from rewardgym.llm_rewards.library import rank, retrieve
from rewardgym.llm_rewards.prompts import (CALIBRATED_MARGIN, CONTEXT_MARGIN, MIN_EDIT_REPLY_TOKENS, MIN_REPLY_TOKENS,
                                           PromptTooLong, designer_messages, edit_messages, fit_request,
                                           format_failure, reflection_messages, repair_messages)
from rewardgym.runs.directory import RunDir, latest_checkpoint, slug
from rewardgym.runs.evaluate import evaluate
from rewardgym.runs.train import TrainSpec, resume, train
from rewardgym.text import escape_control

SYNTH_FORMAT = 1


@dataclass
class SynthesisSpec:
    """Settings of a synthesis run (written to ``config.json``).

    LLM settings: ``max_tokens``, ``max_requests``, ``max_wall_s`` are the run's budgets
    (total tokens, requests, wall seconds over every process); ``max_reply_tokens`` caps
    each reply; ``llm_timeout_s`` is the limit per attempt (None: learnt from the server's
    speed, :meth:`rewardgym.llm.client.LLMClient.request_timeout`); ``context_size`` is the
    model's window in tokens (None: learnt);
    ``mode`` is ``auto``, ``whole`` or ``edit`` (module docstring), ``edit_after`` the
    rounds without a valid candidate after which ``auto`` switches to edits.

    Analysis: every valid candidate is judged before training on ``analysis_transitions``
    random-action transitions (:func:`rewardgym.analysis.analyze`); ``prescreen`` K trains
    only the K best-judged candidates of each round (None: all).
    """

    task: str
    instruction: str | None = None
    rounds: int = 3
    samples: int = 4
    steps: int = 50_000
    num_envs: int = 4
    seed: int = 0
    algo: str = "ppo"
    hyperparams: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    executor: str = "local"
    feedback: str = "none"
    max_repairs: int = 2
    zero_shot: bool = False
    few_shot: int = 2
    eval_episodes: int = 5
    check_steps: int = 50
    check_envs: int = 2
    check_timeout_s: float = 60.0
    check_memory_mb: int = 2048
    max_candidates: int | None = None
    model: str | None = None
    base_url: str | None = None
    max_tokens: int | None = None
    max_requests: int | None = None
    max_wall_s: float | None = None
    llm_timeout_s: float | None = None
    llm_retries: int = 4
    temperature: float = 1.0
    max_reply_tokens: int = 2048
    context_size: int | None = None
    mode: str = "auto"
    edit_after: int = 1
    prescreen: int | None = None
    analysis_transitions: int = 2048


def _save_state(run: Path, state: dict[str, Any]) -> None:
    atomic_write_text(run / "state.json", json.dumps(state, indent=2, default=str) + "\n")


def train_candidate(task: str, program: str, run_root: str, name: str, steps: int, num_envs: int, seed: int,
                    algo: str, hyperparams: dict[str, Any], eval_episodes: int, threads: int | None) -> dict[str, Any]:
    """Train on ``program`` and evaluate (runs in a worker process). Resumes a half-done run."""
    if threads:
        import torch

        torch.set_num_threads(threads)

    if not NAME_PATTERN.match(name):
        raise ValueError(f"training run name {name[:100]!r} is not a plain name")
    run_path = Path(run_root) / name
    if (run_path / "eval.json").is_file():
        run = RunDir.open(run_path)
        return {"run": str(run.path), "eval": read_json(run.path / "eval.json"),
                "analysis": analyse_run(run)}

    start = time.perf_counter()
    if (run_path / "config.json").is_file() and latest_checkpoint(RunDir(run_path), algo) is not None:
        run = resume(run_path)
    else:
        if run_path.exists():  # started but never checkpointed: start again
            import shutil

            shutil.rmtree(run_path)
        run = train(TrainSpec(task=task, reward=program, steps=steps, algo=algo, num_envs=num_envs, seed=seed,
                              device="cpu", hyperparams=dict(hyperparams), checkpoint_every_s=30.0),
                    runs_root=run_root, run_name=name)
    train_s = time.perf_counter() - start
    report = evaluate(run.path, episodes=eval_episodes, seed=10_000 + seed)
    return {"run": str(run.path), "eval": report, "analysis": analyse_run(run), "train_s": train_s}


def analyse_run(run: RunDir) -> dict[str, Any]:
    """Trajectory analysis of a training run (Auto MC-Reward's analyser, Eureka's reflection).

    Returns per-term statistics over training (first vs last quarter of the updates),
    whether each term changed at all or dominated, success over training, and how long
    episodes lasted compared with the task's limit.
    """
    rows = [r for r in run.metrics() if r.get("episode_return") is not None]
    config = run.config()
    task = get_task(config["task"])
    if not rows:
        return {"updates": 0, "note": "no episode finished during training"}
    quarter = max(1, len(rows) // 4)
    first, last = rows[:quarter], rows[-quarter:]

    def mean(key: str, part: list[dict]) -> float | None:
        values = [r[key] for r in part if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    term_names = sorted({k for r in rows for k in r if k.startswith("terms/")})
    terms = {}
    scales = {}
    for key in term_names:
        values = np.asarray([r.get(key, 0.0) for r in rows], dtype=np.float64)
        name = key.removeprefix("terms/")
        terms[name] = {"start": mean(key, first), "end": mean(key, last), "min": float(values.min()),
                       "max": float(values.max()), "changes": bool(np.ptp(values) > 1e-9 * (1 + np.abs(values).max()))}
        scales[name] = float(np.abs(values).mean())
    total = sum(scales.values()) or 1.0
    for name, s in scales.items():
        terms[name]["share"] = s / total
    length = mean("episode_length", last)
    limit = task.max_episode_steps
    return {
        "updates": len(rows), "steps": rows[-1]["global_step"],
        "success": {"start": mean("success_rate", first), "end": mean("success_rate", last),
                    "best": max((r.get("success_rate") or 0.0) for r in rows)},
        "episode_return": {"start": mean("episode_return", first), "end": mean("episode_return", last)},
        "env_return": {"start": mean("env_return", first), "end": mean("env_return", last)},
        "episode_length": {"end": length, "limit": limit,
                           "ends_early": bool(limit and length is not None and length < 0.9 * limit)},
        "terms": terms,
    }


def format_analysis(candidate: dict[str, Any]) -> str:
    """The training summary shown to the LLM for reflection."""
    ev, an = candidate["eval"], candidate["analysis"]
    lines = [f"Evaluation ({ev['episodes']} episodes, deterministic policy): success rate {ev['success_rate']:.2f}, "
             f"return {ev['return']['mean']:.3g} ± {ev['return']['std']:.3g}, env return "
             f"{ev['env_return']['mean']:.3g}, episode length {ev['length']['mean']:.0f}."]
    if an.get("updates"):
        s, el = an["success"], an["episode_length"]
        lines.append(f"Training ({an['steps']} env steps, {an['updates']} updates): success rate "
                     f"{_fmt(s['start'])} -> {_fmt(s['end'])} (best {s['best']:.2f}); env return "
                     f"{_fmt(an['env_return']['start'])} -> {_fmt(an['env_return']['end'])}.")
        if el["ends_early"]:
            lines.append(f"Episodes end early: mean length {el['end']:.0f} of at most {el['limit']} steps "
                         f"(the env terminates them — e.g. the robot falls or the task ends).")
        lines.append("Reward terms (episode sums: first quarter -> last quarter of training; share of the "
                     "total reward scale):")
        for name, t in an["terms"].items():
            note = "" if t["changes"] else "  NEVER CHANGED"
            note += "  DOMINATES" if t["share"] > 0.9 and len(an["terms"]) > 1 else ""
            lines.append(f"  {name}: {_fmt(t['start'])} -> {_fmt(t['end'])} (range {t['min']:.3g} .. "
                         f"{t['max']:.3g}), share {t['share']:.0%}{note}")
    else:
        lines.append(an.get("note", "no training statistics"))
    if candidate.get("judgement"):
        lines.append(format_judgement(candidate["judgement"]))
    return "\n".join(lines)


JUDGEMENT_KEYS = ("epic", "starc", "epic_to_sparse", "starc_to_sparse", "alignment", "top_reward_failure")
"""What synthesis keeps of a candidate's analysis (``judgement`` in ``state.json``)."""


def format_judgement(judgement: dict[str, Any]) -> str:
    """One line of a candidate's analysis for the reflection prompt and the report."""
    if judgement.get("error"):
        return f"Before training, the analysis could not evaluate it: {judgement['error'][:300]}"
    ref = judgement.get("reference", "expert")
    parts = [f"EPIC distance to the {ref} reward {_fmt(judgement.get('epic'))}" if ref != "sparse" else "",
             f"EPIC distance to sparse success {_fmt(judgement.get('epic_to_sparse'))}",
             f"alignment with the success test {_fmt(judgement.get('alignment'))} (Kendall tau, 1 = same ranking)",
             f"top-1% reward on failing states {_fmt(judgement.get('top_reward_failure'))}"]
    flags = judgement.get("flags") or []
    return ("Before training (reward analysis on random rollouts; distances 0 = same ranking of policies, "
            "1 = opposite): " + ", ".join(p for p in parts if p) + "." + (" Flags: " + "; ".join(flags) if flags
                                                                            else ""))


def _prescreen_key(cand: dict[str, Any]) -> tuple[float, float, float]:
    """Best first: alignment with the success test, then EPIC to the expert, then EPIC to sparse."""
    j = cand.get("judgement") or {}
    alignment = j.get("alignment")
    return (-(alignment if alignment is not None else -2.0), j.get("epic") if j.get("epic") is not None else 2.0,
            j.get("epic_to_sparse") if j.get("epic_to_sparse") is not None else 2.0)


def _docstring_text(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring (received text never closes it)."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _k_programs(k: int) -> str:
    return "1 program" if k == 1 else f"{k} programs"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _score(candidate: dict[str, Any]) -> tuple[float, float]:
    ev = candidate["eval"]
    return (ev["success_rate"], ev["env_return"]["mean"])


class Synthesizer:
    """Runs the loop for one run directory (new or resumed).

    Args:
        spec: settings.
        run_dir: the run directory (created for a new run).
        client: an :class:`~rewardgym.llm.client.LLMClient` (its transcript is the
            run's; its usage and wall clock are started from the run's earlier processes).
        log: ``log(message)`` for progress lines (the CLI prints them).
        ask_feedback: ``ask_feedback(round_summary_text, plot_path) -> str`` for interactive feedback.
    """

    def __init__(self, spec: SynthesisSpec, run_dir: Path, client, log: Callable[[str], None] = print,
                 ask_feedback: Callable[[str, Path | None], str] | None = None):
        self.spec = spec
        self.run = Path(run_dir)
        self.client = client
        self.log = log
        self.ask_feedback = ask_feedback
        self.task = get_task(spec.task)
        state_path = self.run / "state.json"
        self.state: dict[str, Any] = load_state(self.run) if state_path.is_file() else {
            "format": SYNTH_FORMAT, "rounds": [], "best": None, "done": False, "timings": {}}
        # repair requests a stop left without a reply: sent again on resume, and the screen says so
        self._unanswered = {c["id"] for r in self.state["rounds"] for c in r["candidates"]
                            if c.get("status") == "pending" and c.get("todo") is None and c.get("attempts")}
        self.timings: dict[str, float] = self.state.setdefault("timings", {})
        self._coverage: Any = None  # transitions candidates are judged on (collected once per process)
        self._wall_before = float(self.state.get("wall_s", 0.0))
        self._process_start = time.monotonic()
        if getattr(client, "transcript_path", None) is not None:
            client.resume_from_transcript()  # budgets and cost are the run's, not this process's
        client.wall_offset_s = self._wall_before
        learnt = self.state.get("structured") or {}
        if learnt.get("mode") in ("json_schema", "json_object", "none") and \
                learnt.get("endpoint") == getattr(client, "base_url", None):
            client.structured_mode = learnt["mode"]  # learnt earlier from this server: no refused probe again
        if client.context_size is None and (self.state.get("context") or {}).get("size"):
            client.context_size = int(self.state["context"]["size"])  # learnt earlier: same prompts, cache hits
            client.context_source = self.state["context"].get("source", "learnt")

    # -- bookkeeping ----------------------------------------------------------------------
    def _time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def _save(self) -> None:
        self.state["wall_s"] = self._wall_before + time.monotonic() - self._process_start
        _save_state(self.run, self.state)

    def _candidates(self) -> list[dict[str, Any]]:
        return [c for r in self.state["rounds"] for c in r["candidates"]]

    def _dir(self, cid: str) -> Path:
        """A candidate's directory, from its id (a validated name, :func:`load_state`), never
        from a path stored in ``state.json``."""
        return candidate_dir(self.run, cid)

    def _program(self, cand: dict[str, Any]) -> Path:
        """The validated program of a candidate: ``round_<r>/<id>/program.py`` of this run."""
        return self._dir(cand["id"]) / "program.py"

    # -- LLM requests: fitted to the context window, truncation reported ---------------------
    def _fit(self, build: Callable[[int, Any], list], examples: Sequence[str], min_reply: int) -> tuple[Any, int]:
        """The prompt fitted to the context window and the reply cap (``prompts.fit_request``):
        ``--max-reply-tokens`` unless even a compacted prompt leaves less (not below ``min_reply``).
        Tokens are estimated at the client's calibrated characters per token."""
        calibrated = getattr(self.client, "chars_per_token", None) is not None
        return fit_request(build, self.client.context_size, self.spec.max_reply_tokens, examples, min_reply,
                           self.client.fitting_chars_per_token() if calibrated else None,
                           CALIBRATED_MARGIN if calibrated else CONTEXT_MARGIN)

    def _ask(self, build: Callable[[int, str], list], record: dict[str, Any], *, seed: int,
             examples: Sequence[str] = (), sample_index: int = 0, schema: dict | None = None):
        """Send the request ``build`` makes, fitted; a context refusal is learnt from and asked
        again once with a prompt fitted to it. ``record`` gets the prompt's size and cuts."""
        for attempt in (0, 1):
            try:
                fitted, cap = self._fit(build, examples, MIN_EDIT_REPLY_TOKENS if schema is not None
                                        else MIN_REPLY_TOKENS)
            except PromptTooLong as exc:
                raise PromptTooLong(
                    f"{exc} (context window {self.client.context_size} tokens, from "
                    f"{self.client.context_source or 'the option'}): serve the model with a larger context "
                    f"(llama.cpp: --ctx-size / n_ctx) or pass --context-size if that number is wrong") from None
            record["prompt"] = {"tokens": fitted.tokens, "cuts": fitted.cuts, "reply_cap": cap,
                                "context": self.client.context_size}
            if getattr(self.client, "chars_per_token", None):  # the estimate, calibrated by the server
                record["prompt"]["chars_per_token"] = round(self.client.fitting_chars_per_token(), 2)
            if fitted.cuts:
                self.log(f"  prompt fitted to the {self.client.context_size}-token context, shortened: "
                         + ", ".join(fitted.cuts))
            start = time.perf_counter()
            try:
                kwargs = dict(seed=seed, sample_index=sample_index, max_tokens=cap)
                reply = (self.client.complete_json(fitted.messages, schema, **kwargs) if schema is not None
                         else self.client.complete(fitted.messages, **kwargs))
                if schema is not None and getattr(self.client, "structured_mode", None):
                    self.state["structured"] = {"mode": self.client.structured_mode,
                                                "endpoint": getattr(self.client, "base_url", None)}
            except ContextLengthError as exc:
                if attempt:
                    raise
                n = self.client.learn_context(exc, fitted.tokens)
                self.state["context"] = {"size": n, "source": "refusal"}
                self.log(f"  the server refused the prompt (about {fitted.tokens} tokens) as too long for its "
                         f"context; fitting the prompt to {n} tokens and asking again")
                continue
            finally:
                self._time("llm", time.perf_counter() - start)
            if reply.truncated:
                record["truncated"] = reply.truncation_note()
                self.log(f"  {reply.truncation_note()}: raise --max-reply-tokens (now {cap}) for longer replies")
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    # -- one candidate through the critic (with repairs) -----------------------------------
    def _criticise(self, cand: dict[str, Any]) -> None:
        """Validate the candidate's program; ask for repairs while it fails and repairs are left.

        The candidate's state is saved after every step, so a stop anywhere resumes at the
        same step: ``todo`` holds a received program not yet validated (never re-validated
        once it has been), and a repair request that got no reply is sent again on resume.
        """
        s = self.spec
        attempts = cand.setdefault("attempts", [])
        while True:
            n = len(attempts)
            if cand.get("todo") is not None:  # a program waiting for the critic
                start = time.perf_counter()
                result = critique(cand["todo"], self.task.id, self._dir(cand["id"]), steps=s.check_steps,
                                  num_envs=s.check_envs, timeout_s=s.check_timeout_s, memory_mb=s.check_memory_mb,
                                  seed=s.seed, name=f"attempt{n}.py")
                self._time("validation", time.perf_counter() - start)
                attempts.append({"stage": result.stage, "reason": result.reason, "line": result.line,
                                 "term": result.term, "warnings": result.warnings, "file": f"attempt{n}.py"})
                cand["todo"] = None
                self.log(f"  {cand['id']} attempt {n}: {result.summary()}")
                if result.ok:
                    program = self._program(cand)
                    text = (self._dir(cand["id"]) / f"attempt{n}.py").read_text()
                    atomic_write_text(program, text)
                    cand.update(status="valid")
                    self._save()
                    return
                self._save()
                continue
            if n > s.max_repairs:  # every repair used
                last = attempts[-1]
                cand.update(status="rejected", reason=last["reason"], stage=last["stage"])
                self._save()
                return
            record: dict[str, Any] = {}
            self.log(f"  {cand['id']}: asking {self.client.model} for repair {n} of {s.max_repairs}"
                     + (" (re-sending the request a stop left without a reply)" if cand["id"] in self._unanswered else ""))
            self._unanswered.discard(cand["id"])
            try:
                if cand.get("mode") == "edit":
                    self._repair_edit(cand, record)
                else:
                    tried = next(a for a in reversed(attempts) if a.get("file"))
                    source = (self._dir(cand["id"]) / tried["file"]).read_text()  # a name load_state checked
                    failure = format_failure(tried)
                    reply = self._ask(lambda k, prelude: repair_messages(
                        self.task, source, failure, instruction=s.instruction, attempt=n, max_attempts=s.max_repairs,
                        prelude=prelude), record, seed=s.seed + n - 1)
                    self._take_program(cand, reply.text, record)
            except (ContextLengthError, PromptTooLong) as exc:  # this program's repair cannot be asked
                attempts.append({"stage": "llm", "reason": f"the repair prompt does not fit the model: {exc}"})
                cand.update(status="rejected", reason=attempts[-1]["reason"], stage="llm")
                self._save()
                return
            except LLMRequestError as exc:  # refused for good (not an outage): the candidate fails
                attempts.append({"stage": "llm", "reason": f"repair request refused: {exc}"})
                cand.update(status="rejected", reason=attempts[-1]["reason"], stage="llm")
                self._save()
                return
            self._save()

    def _take_program(self, cand: dict[str, Any], text: str, record: dict[str, Any]) -> None:
        """A whole-program reply: its first program becomes ``todo``; none is a failed attempt."""
        try:
            cand["todo"] = extract_programs(text)[0].source
        except NoCodeFound as exc:
            reason = exc.reason + (f" ({record['truncated']})" if record.get("truncated") else "")
            cand["attempts"].append({"stage": "extract", "reason": reason})
            self.log(f"  {cand['id']} attempt {len(cand['attempts']) - 1}: extract: {reason}")

    # -- edit mode -------------------------------------------------------------------------
    def _base(self, library_only: bool = False) -> tuple[Any, str, str]:
        """The program edit mode starts from, what it is (for the report and the best program's
        header), and a note for the prompt: the best so far (unless ``library_only``); else the
        library program written for this task; else the closest library program for this
        task's state view, adapted (:func:`~rewardgym.llm_rewards.edit.adapt_base`: its
        docstring says where it came from, terms that read fields the instruction does not
        involve are flagged)."""
        best = self.state["best"]
        if best is not None and not library_only:
            return (parameterize(self._program(best).read_text(), best["id"]),
                    f"the best candidate so far, {best['id']}", "")
        instruction = self.spec.instruction or self.task.instruction
        ranked = [r.entry for r in rank(instruction, self.task, include_own_expert=True)]
        own = [e for e in ranked if e.task_id == self.task.id]
        if own:
            kind = "rewardgym's expert reward" if own[0].origin == "expert" else "a program you added"
            return (parameterize(own[0].source(), own[0].name),
                    f"the library program {own[0].name} ({kind} for this task)", "")
        for entry in ranked:
            if entry.view == self.task.view.name:
                source, flagged, note = adapt_base(entry.source(), entry.name, entry.task_id, self.task.id,
                                                   list(self.task.view.fields), instruction, self.task.success_doc)
                origin = f"the library program {entry.name}, written for {entry.task_id or 'another task'}" + (
                    f" (flagged terms: {', '.join(flagged)})" if flagged else "")
                return parameterize(source, entry.name), origin, note
        return None, "", ""

    def _edit_request(self, base: Any, record: dict[str, Any], seed: int, sample_index: int = 0,
                      previous: str | None = None, failure: Any = None, notes: str = ""):
        best = self.state["best"]
        summary = format_analysis(best) if best is not None and best["id"] == base.name else None
        return self._ask(lambda k, prelude: edit_messages(
            self.task, base, instruction=self.spec.instruction, training_summary=summary, previous_edit=previous,
            failure=failure, prelude=prelude, notes=notes or None), record, seed=seed, sample_index=sample_index,
            schema=edit_schema(base))

    def _take_edit(self, cand: dict[str, Any], base: Any, text: str, record: dict[str, Any]) -> None:
        cand["edit"] = text.strip()[:4000]
        try:
            edit = parse_edit(text, base)
        except EditError as exc:
            reason = exc.reason + (f" ({record['truncated']})" if record.get("truncated") else "")
            cand["attempts"].append({"stage": "edit", "reason": reason})
            self.log(f"  {cand['id']} attempt {len(cand['attempts']) - 1}: edit: {reason}")
            return
        cand["edit_summary"] = edit.summary()
        cand["todo"] = apply_edit(base, edit)

    def _repair_edit(self, cand: dict[str, Any], record: dict[str, Any]) -> None:
        base = parameterize((self._dir(cand["id"]) / "base.py").read_text(), cand["base"])
        last = cand["attempts"][-1]
        reply = self._edit_request(base, record, seed=self.spec.seed + len(cand["attempts"]) - 1,
                                   previous=cand.get("edit", ""), failure=format_failure(last),
                                   notes=str(cand.get("base_note") or ""))
        self._take_edit(cand, base, reply.text, record)

    def _design_edits(self, rnd: dict[str, Any], index: int, round_dir: Path) -> None:
        base, origin, note = self._base(library_only=bool(rnd.get("library_base")))
        if base is None:
            rnd["note"] = (f"edit mode needs a base program: no best program yet and no library program for the "
                           f"'{self.task.view.name}' state view; asked for whole programs instead")
            rnd["mode"] = "whole"
            self.log(f"  {rnd['note']}")
            return self._design_programs(rnd, index)
        rnd.update(base=base.name, base_origin=origin)
        s = self.spec
        done = {c["id"] for c in rnd["candidates"]}
        self.log(f"round {index}: asking {self.client.model} for {s.samples} edit(s) of {origin}")
        for i in range(self._samples_left(s.samples, rnd)):
            cid = f"r{index}c{i}"
            if cid in done:
                continue
            cand = {"id": cid, "status": "pending", "mode": "edit", "base": base.name, "base_origin": origin,
                    "base_note": note, "attempts": [], "todo": None}
            atomic_write_text(round_dir / cid / "base.py", base.original)  # edits are re-read against it
            record: dict[str, Any] = {}
            try:
                reply = self._edit_request(base, record, seed=s.seed + 1000 * index + i, sample_index=i, notes=note)
            except PromptTooLong:  # the best (an edited program with its results) is too long for the window
                best = self.state["best"]
                if rnd.get("library_base") or best is None or base.name != best["id"]:
                    raise
                rnd["library_base"] = True
                fallback = (f"an edit of the best program, {best['id']}, does not fit the "
                            f"{self.client.context_size}-token context; asked for edits of the library program")
                rnd["note"] = f"{rnd['note']}; {fallback}" if rnd.get("note") else fallback
                self.log(f"  {fallback}")
                return self._design_edits(rnd, index, round_dir)
            cand["source"] = ""
            self._take_edit(cand, base, reply.text, record)
            cand["source"] = cand.get("todo") or ""
            rnd.setdefault("prompt", record.get("prompt"))
            rnd["candidates"].append(cand)
            self._save()

    # -- a round ---------------------------------------------------------------------------
    def _samples_left(self, k: int, rnd: dict[str, Any]) -> int:
        """Candidates round ``rnd`` may hold: ``k``, or fewer where ``--max-candidates`` runs out."""
        s = self.spec
        before = len(self._candidates()) - len(rnd["candidates"])
        return k if not s.max_candidates else max(0, min(k, s.max_candidates - before))

    def _round_mode(self, index: int) -> str:
        """``whole`` or ``edit`` for a new round (``--mode``; auto: see the module docstring)."""
        s = self.spec
        if s.mode in ("whole", "edit"):
            return s.mode
        if s.edit_after == 0:
            return "edit"
        rounds = self.state["rounds"][:index]
        if any(r.get("mode") == "edit" for r in rounds):
            return "edit"
        recent = rounds[-s.edit_after:]
        if len(recent) == s.edit_after and not any(c["status"] in VALID_STATUSES
                                                   for r in recent for c in r["candidates"]):
            return "edit"
        return "whole"

    def _design_programs(self, rnd: dict[str, Any], index: int) -> None:
        s = self.spec
        best = self.state["best"]
        self.log(f"round {index}: asking {self.client.model} for {_k_programs(s.samples)}")
        record: dict[str, Any] = {}
        if best is None:
            examples = []
            if not s.zero_shot and s.few_shot > 0:
                examples = retrieve(s.instruction or self.task.instruction, self.task, k=s.few_shot)
            reply = self._ask(lambda k, prelude: designer_messages(self.task, s.instruction, examples[:k],
                                                                   k=s.samples, prelude=prelude),
                              record, seed=s.seed + 1000 * index, examples=[e.name for e in examples])
        else:
            feedback = self.state["rounds"][index - 1].get("feedback") or None if index else None
            best_source = self._program(best).read_text()
            try:
                reply = self._ask(lambda k, prelude: reflection_messages(
                    self.task, best_source, format_analysis(best), instruction=s.instruction,
                    human_feedback=feedback, k=s.samples, prelude=prelude), record, seed=s.seed + 1000 * index)
            except PromptTooLong:  # a whole program does not fit beside the best one: edit the best instead
                rnd.update(mode="edit", note=f"the reflection prompt does not fit the {self.client.context_size}-token "
                                             f"context with room for a program; asked for edits of the best instead")
                self.log(f"  {rnd['note']}")
                return self._design_edits(rnd, index, self.run / f"round_{index}")
        rnd["prompt"] = record.get("prompt")
        try:
            programs = extract_programs(reply.text)
        except NoCodeFound as exc:
            programs = []
            rnd["note"] = f"the reply held no program: {exc.reason}" + (
                f" ({record['truncated']})" if record.get("truncated") else "")
            self.log(f"  {rnd['note']}")
        if record.get("truncated") and programs:
            rnd["note"] = record["truncated"] + "; the last program may be incomplete"
        for i, program in enumerate(programs[: self._samples_left(s.samples, rnd)]):
            rnd["candidates"].append({"id": f"r{index}c{i}", "status": "pending", "mode": "whole",
                                      "source": program.source, "todo": program.source})

    def _round(self, index: int) -> None:
        s = self.spec
        rounds = self.state["rounds"]
        if len(rounds) <= index:
            rounds.append({"round": index, "candidates": [], "designed": False, "mode": self._round_mode(index)})
            self._save()
        rnd = rounds[index]
        rnd.setdefault("mode", "whole")  # runs from before edit mode
        round_dir = self.run / f"round_{index}"
        if not rnd["designed"]:
            if rnd["mode"] == "edit":
                self._design_edits(rnd, index, round_dir)
            else:
                self._design_programs(rnd, index)
            rnd["designed"] = True
            self._save()
        for cand in rnd["candidates"]:
            if cand["status"] == "pending":
                if "todo" not in cand:  # a run from before repairs were resumable: validate it again
                    cand.update(attempts=[], todo=cand["source"])
                self._criticise(cand)
        valid = [c for c in rnd["candidates"] if c["status"] == "valid"]
        if valid:
            self._judge(valid)
            valid = self._prescreen(valid)
        if valid:
            self._train(valid, round_dir)
        trained = [c for c in rnd["candidates"] if c["status"] == "trained"]
        if trained:
            best_here = max(trained, key=_score)
            rnd["best"] = best_here["id"]
            if self.state["best"] is None or _score(best_here) > _score(self.state["best"]):
                self.state["best"] = best_here
        if not rnd["candidates"] and not rnd.get("note"):
            rnd["note"] = "no candidate: the --max-candidates budget was used up"
        self._save()
        self.write_report()
        if index < s.rounds - 1 and "feedback" not in rnd:
            rnd["feedback"] = self._feedback(index)
            self._save()

    def _judge(self, candidates: list[dict[str, Any]]) -> None:
        """Analyse candidates not judged yet (:func:`rewardgym.analysis.analyze`), all on one coverage set."""
        todo = [c for c in candidates if not c.get("judgement")]
        if not todo or getattr(self.task, "agents", None):  # reward analysis covers single-agent tasks
            return
        from rewardgym.analysis import analyze, collect_coverage
        from rewardgym.rewards.program import RewardProgramError

        s = self.spec
        start = time.perf_counter()
        if self._coverage is None:  # the same seed on every resume: the same transitions
            self._coverage = collect_coverage(self.task, s.analysis_transitions, s.seed)
        reference = "expert" if self.task.expert_path is not None else "sparse"
        gamma = float(s.hyperparams.get("gamma", 0.99))
        try:
            report = analyze(self.task, [str(self._program(c)) for c in todo], reference=reference, gamma=gamma,
                             coverage=self._coverage, seed=s.seed, intervals=False)
        except (RewardProgramError, ValueError) as exc:  # e.g. the reference itself cannot run here
            for c in todo:
                c["judgement"] = {"reference": reference, "error": str(exc)[:500], "flags": []}
        else:
            for c, p in zip(todo, report.programs):
                c["judgement"] = {"reference": reference, **{k: getattr(p, k) for k in JUDGEMENT_KEYS},
                                  "flags": list(p.flags), **({"error": p.error[:500]} if p.error else {})}
        self._time("analysis", time.perf_counter() - start)
        for c in todo:
            self.log(f"  {c['id']}: {format_judgement(c['judgement'])}")
        self._save()

    def _prescreen(self, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """With ``prescreen`` K, the K best-judged candidates (:func:`_prescreen_key`); the rest are ``screened``."""
        k = self.spec.prescreen
        if not k or len(candidates) <= k or not any(c.get("judgement") for c in candidates):
            return candidates  # nothing to rank by (a multi-agent task is not analysed): train all
        ranked = sorted(candidates, key=_prescreen_key)
        for c in ranked[k:]:
            c.update(status="screened", reason=f"not trained: --prescreen {k} kept the {k} candidate(s) of this round "
                                               f"best aligned with the success test")
            self.log(f"  {c['id']}: {c['reason']}")
        self._save()
        return ranked[:k]

    def _train(self, candidates: list[dict[str, Any]], round_dir: Path) -> None:
        s = self.spec
        jobs = [(self.task.id, str(self._program(c)), str(round_dir), f"{c['id']}_run", s.steps, s.num_envs, s.seed,
                 s.algo, s.hyperparams, s.eval_episodes, 1 if s.workers > 1 else None) for c in candidates]
        self.log(f"  training {len(jobs)} candidate(s) for {s.steps} steps each on {s.workers} worker(s) "
                 f"({s.executor})")
        start = time.perf_counter()
        results = _run_jobs(jobs, s.workers, s.executor)
        self._time("training", time.perf_counter() - start)
        for cand, result in zip(candidates, results):
            if isinstance(result, BaseException):
                cand.update(status="failed", reason=f"training failed: {type(result).__name__}: {result}")
                self.log(f"  {cand['id']}: {cand['reason']}")
                continue
            cand.update(status="trained", eval=result["eval"], analysis=result["analysis"])
            self.log(f"  {cand['id']}: success {result['eval']['success_rate']:.2f}, env return "
                     f"{result['eval']['env_return']['mean']:.3g}")
        self._save()

    def _feedback(self, index: int) -> str:
        mode = self.spec.feedback
        if mode == "none":
            return ""
        if mode == "interactive":
            if self.ask_feedback is None:
                return ""
            return self.ask_feedback(self.round_table(index), self.run / "report.png")
        path = Path(mode)
        return path.read_text(encoding="utf-8").strip() if path.is_file() else ""

    # -- driver ----------------------------------------------------------------------------
    def run_loop(self) -> dict[str, Any] | None:
        """Run (or finish) every round; returns the best candidate (None if none trained).

        Any stop (a budget, Ctrl-C, the server unreachable, a prompt that cannot fit, a
        crash) is recorded in ``state.json`` (``stop``: kind, reason, resume command) and
        in ``report.md`` before the exception propagates.
        """
        start = time.perf_counter()
        self.state["stop"] = None
        self.state["done"] = False
        try:
            if self.client.context_size is None:
                self.client.context_window()  # what the server says, if it says
            if self.client.context_size is not None:
                self.state["context"] = {"size": self.client.context_size, "source": self.client.context_source}
            for index in range(self.spec.rounds):
                if self.spec.max_candidates and len(self._candidates()) >= self.spec.max_candidates and \
                        index >= len(self.state["rounds"]):
                    self.log(f"stopping: reached --max-candidates {self.spec.max_candidates}")
                    break
                self._round(index)
        except BaseException as exc:
            self._time("total", time.perf_counter() - start)
            self.state["stop"] = describe_stop(exc, self.run, self.spec)
            self.state.setdefault("stops", []).append(
                {k: self.state["stop"][k] for k in ("time", "kind", "reason") if k in self.state["stop"]})
            self._save()
            try:
                self.write_report()
            except Exception as report_error:  # noqa: BLE001 - never mask the reason for the stop
                self.log(f"could not write report.md: {type(report_error).__name__}: {report_error}")
            raise
        self.state["done"] = True
        self._time("total", time.perf_counter() - start)
        self._save()
        self.write_best()
        self.write_report()
        best = self.state["best"]
        if best is not None and best["eval"]["success_rate"] == 0.0:
            self.log("no candidate reached the success test; the best was chosen by env reward")
        return best

    # -- outputs ---------------------------------------------------------------------------
    def write_best(self) -> Path | None:
        best = self.state["best"]
        if best is None:
            return None
        source = self._program(best).read_text()
        ev = best["eval"]
        origin = f"It is an edit of {str(best['base_origin'])[:300]}.\n" if best.get("base_origin") else ""
        header = (f'"""Reward program found by `rewardgym synthesize` for {self.task.id}.\n\n'
                  + _docstring_text(f"Instruction: {self.spec.instruction or self.task.instruction}\n"
                                    f"Candidate {best['id']}: success rate {ev['success_rate']:.2f}, env return "
                                    f"{ev['env_return']['mean']:.4g} after {self.spec.steps} training steps.\n"
                                    + origin) +
                  f'Use it with reward="best_reward.py" (or rewardgym train ... --reward best_reward.py).\n"""\n\n')
        # Keep the program's own docstring (if any) after the header; both are plain strings.
        out = self.run / "best_reward.py"
        atomic_write_text(out, header + source)
        return out

    def round_table(self, index: int | None = None) -> str:
        """Markdown table of the candidates (of round ``index``, or all)."""
        lines = ["| round | mode | candidate | status | success | env return | EPIC to ref | EPIC to sparse | "
                 "alignment | note |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for rnd in self.state["rounds"]:
            if index is not None and rnd["round"] != index:
                continue
            for c in rnd["candidates"]:
                ev = c.get("eval")
                success = f"{ev['success_rate']:.2f}" if ev else ""
                env_ret = f"{ev['env_return']['mean']:.4g}" if ev else ""
                j = c.get("judgement") or {}
                num = lambda key: "" if j.get(key) is None else f"{j[key]:.2f}"  # noqa: E731
                note = _candidate_note(c) + ("; flags: " + "; ".join(j["flags"]) if j.get("flags") else "")
                lines.append(f"| {rnd['round']} | {rnd.get('mode', 'whole')} | {c['id']} | {c['status']} | "
                             f"{success} | {env_ret} | {num('epic')} | {num('epic_to_sparse')} | {num('alignment')} | "
                             f"{_md_cell(note)} |")
        return "\n".join(lines)

    def write_report(self) -> None:
        """``report.md`` (and ``report.png``): status and how to resume, rounds with the reason
        each candidate failed or what became of it, prompt fitting, the best program, cost."""
        s = self.spec
        best = self.state["best"]
        t = self.timings
        stop = self.state.get("stop")
        if self.state.get("done"):
            status = "complete."
        elif stop:
            status = f"**stopped** ({stop['kind']}): {stop['reason']}\n\nResume with: `{stop['resume']}`"
        else:
            status = f"in progress (resume with `{resume_command(self.run, spec=self.spec)}` if this process is gone)."
        parts = [f"# Reward synthesis: {self.task.id}", "",
                 f"Instruction: {s.instruction or self.task.instruction}", "",
                 f"Model `{self.client.model}` at {self.client.base_url}; {s.rounds} round(s) x {s.samples} "
                 f"sample(s); {s.steps} training steps per candidate ({s.algo}); mode {s.mode}.", "",
                 f"Status: {status}", ""]
        history = [(str(r.get("time", "")), "resumed" + (": " + format_changes(r["changed"]) if r.get("changed")
                                                          else "")) for r in self.state.get("resumes") or []]
        history += [(str(st.get("time", "")), f"stopped ({st.get('kind')}): {str(st.get('reason', ''))[:300]}")
                    for st in self.state.get("stops") or []]
        if history:
            parts += ["History (stops and resumes):", ""]
            parts += [f"- {when}: {what}" for when, what in sorted(history)]
            parts.append("")
        parts += ["## Rounds", ""]
        for rnd in self.state["rounds"]:
            head = f"- round {rnd['round']} ({rnd.get('mode', 'whole')}"
            head += (f", edits of {rnd['base_origin']})" if rnd.get("base_origin") else
                     f", edits of `{rnd['base']}`)" if rnd.get("base") else ")")
            valid = sum(c["status"] in VALID_STATUSES for c in rnd["candidates"])
            head += f": {len(rnd['candidates'])} candidate(s), {valid} valid"
            if rnd.get("note"):
                head += f"; {rnd['note']}"
            prompt = rnd.get("prompt") or {}
            if prompt.get("cuts"):
                ratio = (f" at {prompt['chars_per_token']} characters per token (the server's count, less 5%)"
                         if prompt.get("chars_per_token") else "")
                head += (f"; prompt fitted to a {prompt.get('context')}-token context (about {prompt['tokens']} "
                         f"tokens{ratio}, reply cap {prompt.get('reply_cap')}), shortened: {', '.join(prompt['cuts'])}")
            parts.append(head)
        context = self.state.get("context") or {}
        if context:
            parts += ["", f"Context window: {context['size']} tokens ({context.get('source', '?')})."]
        parts += ["", "## Candidates", "", self.round_table(), ""]
        if best is not None:
            parts += ["## Best program", "", f"`{best['id']}` (success rate {best['eval']['success_rate']:.2f}), "
                      "written to `best_reward.py`:", "", "```python", self._program(best).read_text().rstrip(),
                      "```", "", "### Training summary", "", "```", format_analysis(best), "```", ""]
        usage = self.client.summary()
        parts += ["## Cost", "", f"LLM (whole run, every process): {usage.get('requests', 0)} request(s), "
                  f"{usage.get('cache_hits', 0)} cache hit(s), {usage.get('total_tokens', 0)} tokens "
                  f"({usage.get('prompt_tokens', 0)} prompt, {usage.get('completion_tokens', 0)} completion).",
                  f"Wall time (every process): {self.state.get('wall_s', 0.0):.1f} s; in the loop: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(t.items())), ""]
        atomic_write_text(self.run / "report.md", escape_control("\n".join(parts)))
        self._plot()

    def _plot(self) -> None:
        cands = [c for c in self._candidates() if c["status"] == "trained"]
        if not cands:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        ax = axes[0]
        for c in self._candidates():
            r = int(c["id"][1:].split("c")[0])
            y = c["eval"]["success_rate"] if c["status"] == "trained" else -0.05
            ax.scatter(r, y, c="tab:blue" if c["status"] == "trained" else "tab:red", s=30)
            ax.annotate(c["id"], (r, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel("round")
        ax.set_ylabel("success rate (rejected < 0)")
        ax.set_title("candidates")
        ax.grid(alpha=0.3)
        best = self.state["best"]
        if best is not None:
            rows = [r for r in RunDir(self._dir(best["id"]).parent / f"{best['id']}_run").metrics()
                    if r.get("episode_return") is not None]
            steps = [r["global_step"] for r in rows]
            axes[1].plot(steps, [r.get("success_rate") for r in rows], label="success rate")
            ax2 = axes[1].twinx()
            ax2.plot(steps, [r.get("env_return") for r in rows], color="tab:orange", label="env return")
            axes[1].set_xlabel("env steps")
            axes[1].set_ylabel("success rate")
            ax2.set_ylabel("env return")
            axes[1].set_title(f"best: {best['id']}")
        fig.tight_layout()
        save_figure(fig, self.run / "report.png")


VALID_STATUSES = ("valid", "trained", "failed", "screened")
"""Candidate statuses of a program that passed the critic (``failed``: its training failed;
``screened``: ``--prescreen`` did not keep it for training)."""


def _candidate_note(c: dict[str, Any]) -> str:
    """One line for the report: why a candidate failed, what it is waiting for, or its repairs."""
    attempts = c.get("attempts") or []
    if c["status"] == "pending":
        if c.get("todo") is not None:
            return "pending: a received program waits for the critic"
        last = attempts[-1]["reason"].splitlines()[0] if attempts and attempts[-1].get("reason") else ""
        return "pending: waiting for a repair reply" + (f" (last failure: {last})" if last else "")
    repairs = f"{max(0, len(attempts) - 1)} repair(s)"
    edit = f"; edit: {c['edit_summary']}" if c.get("edit_summary") else ""
    if c["status"] in ("trained", "valid"):
        warnings = (attempts[-1].get("warnings") or []) if attempts else []
        return repairs + edit + (f"; warning: {'; '.join(warnings)}" if warnings else "")
    reason = (c.get("reason") or "").strip()
    first = reason.splitlines()[0] if reason else "(no reason recorded)"
    return f"{c.get('stage', '')}: {first}"[:160] + f" ({repairs})"


def format_changes(changed: dict[str, Any]) -> str:
    """``--llm-timeout 30.0 -> 600.0, ...``: settings changed on resume, by their option names."""
    return ", ".join(f"{v.get('option', k)} {v['old']!r} -> {v['new']!r}" for k, v in changed.items())


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def resume_command(run: Path, option: str = "", value: Any = None, spec: SynthesisSpec | None = None) -> str:
    """The command that continues ``run`` (with ``option value`` when a cap must be raised).

    With ``spec``, the model and endpoint this process was given on its command line are
    part of the command: a resume never takes them from the run directory."""
    extra = f" {option} {value}" if option else ""
    for flag, given in (("--model", spec.model if spec else None), ("--base-url", spec.base_url if spec else None)):
        if given:
            extra += f" {flag} {shlex.quote(str(given))}"
    return f"rewardgym synthesize --resume {shlex.quote(str(run))}{extra}"


def describe_stop(exc: BaseException, run: Path, spec: SynthesisSpec | None = None) -> dict[str, Any]:
    """``{"kind", "reason", "resume", "time"}`` for the exception that stopped a run."""
    option, value = "", None
    if isinstance(exc, KeyboardInterrupt):
        kind, reason = "interrupted", "interrupted (Ctrl-C)"
    elif isinstance(exc, BudgetExceeded):
        kind, reason = "budget", str(exc)
        if exc.option and exc.limit:
            option, value = exc.option, _raised(exc.limit)
    elif isinstance(exc, LLMUnavailableError):
        kind, reason = "server", f"the LLM server is unavailable: {exc}"
        if isinstance(exc, LLMTimeoutError) and exc.limit:  # the resume command carries the limit advised
            option, value = exc.option, f"{exc.limit:g}"
    elif isinstance(exc, PromptTooLong):
        kind, reason = "context", str(exc)
    elif isinstance(exc, LLMError):
        kind, reason = "llm", str(exc)
    else:
        kind, reason = "crash", f"{type(exc).__name__}: {exc}"
    return {"kind": kind, "reason": reason, "resume": resume_command(run, option, value, spec),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def _raised(limit: float) -> str:
    value = 2 * limit
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _run_jobs(jobs: list[tuple], workers: int, executor: str) -> list[Any]:
    """Run ``train_candidate(*job)`` for every job; exceptions are returned, not raised."""
    if executor == "ray":
        return _run_jobs_ray(jobs, workers)
    if executor != "local":
        raise ValueError(f"--executor takes 'local' or 'ray', got {executor!r}")
    if workers <= 1:
        out = []
        for job in jobs:
            try:
                out.append(train_candidate(*job))
            except Exception as exc:  # noqa: BLE001 - a failed candidate must not end the loop
                out.append(exc)
        return out
    # spawn: workers start clean (no inherited torch/OpenMP thread state from the parent).
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_candidate, *job) for job in jobs]
        out = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out


def _run_jobs_ray(jobs: list[tuple], workers: int) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'rewardgym[ray]'") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)  # an existing cluster
        else:  # a local Ray on loopback, sized to the workers asked for
            ray.init(num_cpus=max(1, workers), include_dashboard=False, _node_ip_address="127.0.0.1")
    remote = ray.remote(num_cpus=1)(train_candidate)
    refs = [remote.remote(*job) for job in jobs]
    out = []
    for ref in refs:
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def new_run_dir(spec: SynthesisSpec, root: str | Path = "runs", name: str | None = None) -> Path:
    root = Path(root)
    name = name or slug(f"synth-{get_task(spec.task).short_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = root / name
    path.mkdir(parents=True, exist_ok=False)
    save_spec(path, spec)
    return path


# Received settings: (type, low, high) of each field of config.json; a synthesis run may come
# from a stranger, so its sizes are bounded by what a run can be, not by a type's range.
_SPEC_BOUNDS: dict[str, tuple[type | tuple[type, ...], float, float]] = {
    "rounds": (int, 1, 1_000), "samples": (int, 1, 64), "steps": (int, 1, 10**10), "num_envs": (int, 1, 1_024),
    "seed": (int, -2**63, 2**63 - 1), "workers": (int, 1, 256), "max_repairs": (int, 0, 100),
    "few_shot": (int, 0, 64), "eval_episodes": (int, 1, 10_000), "check_steps": (int, 1, 100_000),
    "check_envs": (int, 1, 256), "check_timeout_s": ((int, float), 0.001, 3_600.0),
    "check_memory_mb": (int, 16, 65_536), "max_candidates": (int, 1, 100_000), "max_tokens": (int, 1, 10**12),
    "max_requests": (int, 1, 10**9), "max_wall_s": ((int, float), 0.001, 10**9),
    "llm_timeout_s": ((int, float), 0.001, 86_400.0), "llm_retries": (int, 0, 100),
    "temperature": ((int, float), 0.0, 10.0), "max_reply_tokens": (int, 16, 10**7),
    "context_size": (int, 256, 10**8), "edit_after": (int, 0, 1_000), "prescreen": (int, 1, 64),
    "analysis_transitions": (int, 16, 100_000),
}
_SPEC_TEXT = {"task": 200, "instruction": 20_000, "algo": 20, "executor": 10, "feedback": 4_096, "mode": 10,
              "model": 300, "base_url": 2_000}
RECEIVED_PLACES = ("model", "base_url")
"""Settings of a synthesis run that name a destination: never taken from ``config.json`` on
resume (the endpoint, model and key come from the command line or the environment)."""


def load_spec(run_dir: str | Path, notes: list[str] | None = None) -> SynthesisSpec:
    """The settings of the synthesis run in ``run_dir``, checked as received data.

    Types and ranges are checked (:data:`_SPEC_BOUNDS`); the endpoint and model
    (:data:`RECEIVED_PLACES`) are dropped, a feedback *file* is dropped (only ``none`` and
    ``interactive`` are kept: a run never names a local file to read into a prompt), and the
    critic's limits are capped at their defaults (a run cannot lift its own limits). Each
    such change is described in ``notes`` when given.

    Raises:
        FileNotFoundError: not a synthesis run. ValueError: naming the file and the field.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a synthesis run (no config.json)")
    data = read_json(path)
    if not isinstance(data, dict) or data.pop("format", None) != SYNTH_FORMAT:
        raise ValueError(f"{path}: synthesis run format not supported by this rewardgym")
    unknown = sorted(set(data) - set(SynthesisSpec.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(u[:40] for u in unknown[:10])} (written by a "
                         f"newer rewardgym?)")
    for key, value in data.items():
        if value is None and SynthesisSpec.__dataclass_fields__[key].default is None:
            continue
        if key in _SPEC_BOUNDS:
            kind, low, high = _SPEC_BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
                raise ValueError(f"{path}: {key}={str(value)[:60]!r} is not valid (expected a number in "
                                 f"[{low:g}, {high:g}])")
        elif key in _SPEC_TEXT:
            if not isinstance(value, str) or len(value) > _SPEC_TEXT[key]:
                raise ValueError(f"{path}: {key} must be text of at most {_SPEC_TEXT[key]} characters")
        elif key == "zero_shot":
            if not isinstance(value, bool):
                raise ValueError(f"{path}: zero_shot must be true or false")
        elif key == "hyperparams":
            if not isinstance(value, dict) or len(json.dumps(value)) > 100_000:
                raise ValueError(f"{path}: hyperparams must be a small JSON object")
    notes = notes if notes is not None else []
    for key in RECEIVED_PLACES:
        if data.get(key):
            notes.append(f"the run's config.json names {key} {str(data[key])[:200]!r}: not used (endpoints and "
                         f"models come from --{key.replace('_', '-')} or the environment, never from a run)")
            data[key] = None
    if data.get("feedback") not in (None, "none", "interactive"):
        notes.append(f"the run's config.json names the feedback file {str(data['feedback'])[:200]!r}: not read "
                     f"(pass --feedback FILE to use one)")
        data["feedback"] = "none"
    defaults = SynthesisSpec(task="")
    for key in ("check_timeout_s", "check_memory_mb"):
        if key in data and data[key] > getattr(defaults, key):
            notes.append(f"the run's config.json raises the critic's {key} to {data[key]}: capped at "
                         f"{getattr(defaults, key)} (limits come from this command line)")
            data[key] = getattr(defaults, key)
    return SynthesisSpec(**data)


CANDIDATE_ID = re.compile(r"^r(\d{1,4})c(\d{1,4})$")
"""A candidate's id, ``r<round>c<index>``: a name, from which its directory is derived."""
_ATTEMPT_FILE = re.compile(r"^attempt\d{1,3}\.py$")
_STATUSES = ("pending", "valid", "rejected", "trained", "failed", "screened")


def candidate_dir(run: Path, cid: str) -> Path:
    """``run/round_<r>/<cid>`` for a candidate id (ValueError for anything else)."""
    match = CANDIDATE_ID.match(cid) if isinstance(cid, str) else None
    if match is None:
        raise ValueError(f"{str(cid)[:60]!r} is not a candidate id (r<round>c<index>)")
    return Path(run) / f"round_{int(match.group(1))}" / cid


def load_state(run: str | Path) -> dict[str, Any]:
    """``state.json`` of a synthesis run, checked as received data.

    Every candidate id is a name of its round (``r<round>c<index>``: its files are derived
    from it, never read from a stored path); attempt files are plain names; statuses,
    rounds and the best candidate are of the expected shape. Raises ValueError naming
    the file and the field.
    """
    path = Path(run) / "state.json"
    no_links_out(run, "synthesis run")
    state = read_json(path)

    def bad(where: str, why: str) -> ValueError:
        return ValueError(f"{path}: {where}: {why}")

    if not isinstance(state, dict) or state.get("format") != SYNTH_FORMAT:
        raise bad("format", "not a synthesis state written by this rewardgym")
    rounds = state.get("rounds")
    if not isinstance(rounds, list) or len(rounds) > 1_000:
        raise bad("rounds", "expected a list of rounds")
    ids: set[str] = set()
    for i, rnd in enumerate(rounds):
        if not isinstance(rnd, dict) or rnd.get("round") != i or not isinstance(rnd.get("candidates"), list):
            raise bad(f"rounds[{i}]", "expected {round: i, candidates: [...]}")
        if not isinstance(rnd.get("feedback", ""), str) or len(rnd.get("feedback", "")) > 20_000:
            raise bad(f"rounds[{i}].feedback", "expected text of at most 20000 characters")
        for j, cand in enumerate(rnd["candidates"]):
            where = f"rounds[{i}].candidates[{j}]"
            if not isinstance(cand, dict):
                raise bad(where, "expected an object")
            cid = cand.get("id")
            match = CANDIDATE_ID.match(cid) if isinstance(cid, str) else None
            if match is None or int(match.group(1)) != i or cid in ids:
                raise bad(f"{where}.id", f"{str(cid)[:60]!r} is not a candidate id of round {i} (r{i}c<index>)")
            ids.add(cid)
            if cand.get("status") not in _STATUSES:
                raise bad(f"{where}.status", f"{str(cand.get('status'))[:40]!r} is not one of {', '.join(_STATUSES)}")
            attempts = cand.get("attempts", [])
            if not isinstance(attempts, list) or len(attempts) > 1_000:
                raise bad(f"{where}.attempts", "expected a list")
            for k, attempt in enumerate(attempts):
                if not isinstance(attempt, dict):
                    raise bad(f"{where}.attempts[{k}]", "expected an object")
                if "file" in attempt and not (isinstance(attempt["file"], str)
                                              and _ATTEMPT_FILE.match(attempt["file"])):
                    raise bad(f"{where}.attempts[{k}].file", f"{str(attempt['file'])[:60]!r} is not an attempt "
                              f"file name (attempt<N>.py)")
            for key in ("source", "todo"):
                if cand.get(key) is not None and not isinstance(cand[key], str):
                    raise bad(f"{where}.{key}", "expected program text")
            judgement = cand.get("judgement")
            if judgement is not None and not _judgement_ok(judgement):
                raise bad(f"{where}.judgement", "expected the analysis' numbers in [-1, 1] and at most 20 short flags")
    best = state.get("best")
    if best is not None and (not isinstance(best, dict) or best.get("id") not in ids):
        raise bad("best", "expected one of the run's candidates")
    for key in ("stops", "resumes"):
        entries = state.get(key, [])
        if not isinstance(entries, list) or len(entries) > 10_000 or not all(isinstance(e, dict) for e in entries):
            raise bad(key, "expected a list of records")
    return state




def _judgement_ok(j: Any) -> bool:
    """A received ``judgement``: known keys, numbers in [-1, 1] or None, short text."""
    if not isinstance(j, dict) or set(j) - {*JUDGEMENT_KEYS, "flags", "error", "reference"}:
        return False
    numbers = all(j.get(k) is None or (isinstance(j[k], (int, float)) and not isinstance(j[k], bool)
                                      and -1.0 <= j[k] <= 1.0) for k in JUDGEMENT_KEYS)
    flags = j.get("flags", [])
    text = isinstance(flags, list) and len(flags) <= 20 and all(isinstance(f, str) and len(f) <= 500 for f in flags)
    return numbers and text and isinstance(j.get("error", ""), str) and len(j.get("error", "")) <= 500 \
        and j.get("reference", "expert") in ("expert", "sparse")


def save_spec(run_dir: str | Path, spec: SynthesisSpec) -> None:
    """Rewrite ``config.json`` (settings changed on resume stay changed for later resumes)."""
    atomic_write_text(Path(run_dir) / "config.json",
                      json.dumps({"format": SYNTH_FORMAT, **asdict(spec)}, indent=2) + "\n")
