"""``rewardgym synthesize``: LLM reward synthesis (Text2Reward + Auto MC-Reward + Eureka-style search).

One round:

1. **Designer** (Text2Reward): the LLM gets the instruction, the task's documentation
   (exactly ``rewardgym describe``), the program rules and few-shot programs retrieved
   from the reward library, and writes ``samples`` programs.
2. **Critic** (Auto MC-Reward): each program is extracted, validated by the sandbox and
   run on random rollouts in a limited child process; a failure goes back to the LLM
   with the exact error for at most ``max_repairs`` repairs.
3. **Train and evaluate** every valid candidate with PPO for ``steps`` env steps, in
   parallel (a local process pool, or Ray), then evaluate it on the task's success test.
4. **Trajectory analysis / reward reflection** (Auto MC-Reward, Eureka): per-term
   statistics over training, how episodes end, success over training; this summary,
   the best program so far and optional human feedback make the next round's prompt.

The best program (by success rate, ties by env return) is written as a standalone reward
program, ``best_reward.py``, with ``report.md`` and ``report.png``.

Everything is recorded in the run directory, and ``state.json`` is rewritten atomically
after every step, so an interrupted run resumes (``--resume RUN``) without repeating
finished LLM calls (they are also answered from the client's content-addressed cache) or
finished training (a candidate with an evaluation is kept; a half-trained one resumes
from its checkpoint).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rewardgym.agents.runs import RunDir, atomic_write_text, slug
from rewardgym.envs.registry import get_task
from rewardgym.llm_rewards.client import LLMRequestError, LLMUnavailableError
from rewardgym.llm_rewards.extract import NoCodeFound, extract_programs

SYNTH_FORMAT = 1


@dataclass
class SynthesisSpec:
    """Settings of a synthesis run (written to ``config.json``)."""

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
    llm_timeout_s: float = 120.0
    llm_retries: int = 4
    temperature: float = 1.0


def _save_state(run: Path, state: dict[str, Any]) -> None:
    atomic_write_text(run / "state.json", json.dumps(state, indent=2, default=str) + "\n")


def train_candidate(task: str, program: str, run_root: str, name: str, steps: int, num_envs: int, seed: int,
                    algo: str, hyperparams: dict[str, Any], eval_episodes: int, threads: int | None) -> dict[str, Any]:
    """Train on ``program`` and evaluate (runs in a worker process). Resumes a half-done run."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from rewardgym.agents.evaluate import evaluate
    from rewardgym.agents.train import TrainSpec, resume, train

    run_path = Path(run_root) / name
    if (run_path / "eval.json").is_file():
        run = RunDir.open(run_path)
        return {"run": str(run.path), "eval": json.loads((run.path / "eval.json").read_text()),
                "analysis": analyse_run(run)}
    from rewardgym.agents.runs import latest_checkpoint

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
    return "\n".join(lines)


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
        client: an :class:`~rewardgym.llm_rewards.client.LLMClient`.
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
        self.state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {
            "format": SYNTH_FORMAT, "rounds": [], "best": None, "done": False, "timings": {}}
        self.timings: dict[str, float] = self.state.setdefault("timings", {})

    # -- bookkeeping ----------------------------------------------------------------------
    def _time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def _save(self) -> None:
        _save_state(self.run, self.state)

    def _candidates(self) -> list[dict[str, Any]]:
        return [c for r in self.state["rounds"] for c in r["candidates"]]

    # -- one candidate through the critic (with repairs) -----------------------------------
    def _criticise(self, cand: dict[str, Any], source: str, round_dir: Path) -> None:
        from rewardgym.llm_rewards.critic import critique
        from rewardgym.llm_rewards.prompts import repair_messages

        s = self.spec
        attempts = cand.setdefault("attempts", [])
        for attempt in range(len(attempts), s.max_repairs + 1):
            start = time.perf_counter()
            result = critique(source, self.task.id, round_dir / cand["id"], steps=s.check_steps,
                              num_envs=s.check_envs, timeout_s=s.check_timeout_s, memory_mb=s.check_memory_mb,
                              seed=s.seed, name=f"attempt{attempt}.py")
            self._time("validation", time.perf_counter() - start)
            attempts.append({"stage": result.stage, "reason": result.reason, "line": result.line,
                             "term": result.term, "warnings": result.warnings})
            self.log(f"  {cand['id']} attempt {attempt}: {result.summary()}")
            if result.ok:
                program = round_dir / cand["id"] / "program.py"
                atomic_write_text(program, source if source.endswith("\n") else source + "\n")
                cand.update(status="valid", program=str(program))
                self._save()
                return
            self._save()
            if attempt == s.max_repairs:
                break
            messages = repair_messages(self.task, source, result, instruction=s.instruction,
                                       attempt=attempt + 1, max_attempts=s.max_repairs)
            start = time.perf_counter()
            try:
                reply = self.client.complete(messages, seed=s.seed + attempt)
            except (LLMUnavailableError, LLMRequestError) as exc:  # this candidate fails; the loop goes on
                attempts.append({"stage": "llm", "reason": f"repair request failed: {exc}"})
                break
            finally:
                self._time("llm", time.perf_counter() - start)
            try:
                programs = extract_programs(reply.text)
            except NoCodeFound as exc:
                attempts.append({"stage": "extract", "reason": exc.reason})
                break
            source = programs[0].source
        cand.update(status="rejected", reason=attempts[-1]["reason"], stage=attempts[-1]["stage"])
        self._save()

    # -- a round ---------------------------------------------------------------------------
    def _messages(self, index: int) -> list[dict[str, Any]]:
        from rewardgym.llm_rewards.prompts import designer_messages, reflection_messages

        s = self.spec
        best = self.state["best"]
        if index == 0 or best is None:
            examples = []
            if not s.zero_shot and s.few_shot > 0:
                from rewardgym.llm_rewards.library import retrieve

                examples = retrieve(s.instruction or self.task.instruction, self.task, k=s.few_shot)
            return designer_messages(self.task, s.instruction, examples, k=s.samples)
        feedback = self.state["rounds"][index - 1].get("feedback") or None
        best_source = Path(best["program"]).read_text()
        return reflection_messages(self.task, best_source, format_analysis(best), instruction=s.instruction,
                                   human_feedback=feedback, k=s.samples)

    def _round(self, index: int) -> None:
        s = self.spec
        rounds = self.state["rounds"]
        if len(rounds) <= index:
            rounds.append({"round": index, "candidates": [], "designed": False})
        rnd = rounds[index]
        round_dir = self.run / f"round_{index}"
        if not rnd["designed"]:
            self.log(f"round {index}: asking {self.client.model} for {s.samples} programs")
            start = time.perf_counter()
            reply = self.client.complete(self._messages(index), seed=s.seed + 1000 * index)
            self._time("llm", time.perf_counter() - start)
            try:
                programs = extract_programs(reply.text)
            except NoCodeFound as exc:
                programs = []
                rnd["note"] = f"the reply held no program: {exc.reason}"
                self.log(f"  {rnd['note']}")
            limit = s.max_candidates - len(self._candidates()) if s.max_candidates else None
            for i, program in enumerate(programs[: s.samples if limit is None else max(0, min(limit, s.samples))]):
                cand = {"id": f"r{index}c{i}", "status": "pending", "source": program.source}
                rnd["candidates"].append(cand)
            rnd["designed"] = True
            self._save()
        for cand in rnd["candidates"]:
            if cand["status"] == "pending":
                self._criticise(cand, cand["source"], round_dir)
        valid = [c for c in rnd["candidates"] if c["status"] == "valid"]
        if valid:
            self._train(valid, round_dir)
        trained = [c for c in rnd["candidates"] if c["status"] == "trained"]
        if trained:
            best_here = max(trained, key=_score)
            rnd["best"] = best_here["id"]
            if self.state["best"] is None or _score(best_here) > _score(self.state["best"]):
                self.state["best"] = best_here
        self._save()
        self.write_report()
        if index < s.rounds - 1 and "feedback" not in rnd:
            rnd["feedback"] = self._feedback(index)
            self._save()

    def _train(self, candidates: list[dict[str, Any]], round_dir: Path) -> None:
        s = self.spec
        jobs = [(self.task.id, c["program"], str(round_dir), f"{c['id']}_run", s.steps, s.num_envs, s.seed,
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
            cand.update(status="trained", run=result["run"], eval=result["eval"], analysis=result["analysis"])
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
        """Run (or finish) every round; returns the best candidate (None if none trained)."""
        start = time.perf_counter()
        for index in range(self.spec.rounds):
            if self.spec.max_candidates and len(self._candidates()) >= self.spec.max_candidates and \
                    index >= len(self.state["rounds"]):
                self.log(f"stopping: reached --max-candidates {self.spec.max_candidates}")
                break
            self._round(index)
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
        source = Path(best["program"]).read_text()
        ev = best["eval"]
        header = (f'"""Reward program found by `rewardgym synthesize` for {self.task.id}.\n\n'
                  f"Instruction: {self.spec.instruction or self.task.instruction}\n"
                  f"Candidate {best['id']}: success rate {ev['success_rate']:.2f}, env return "
                  f"{ev['env_return']['mean']:.4g} after {self.spec.steps} training steps.\n"
                  f'Use it with reward="best_reward.py" (or rewardgym train ... --reward best_reward.py).\n"""\n\n')
        # Keep the program's own docstring (if any) after the header; both are plain strings.
        out = self.run / "best_reward.py"
        atomic_write_text(out, header + source)
        return out

    def round_table(self, index: int | None = None) -> str:
        lines = ["| round | candidate | status | success | env return | note |", "|---|---|---|---|---|---|"]
        for rnd in self.state["rounds"]:
            if index is not None and rnd["round"] != index:
                continue
            for c in rnd["candidates"]:
                ev = c.get("eval")
                success = f"{ev['success_rate']:.2f}" if ev else ""
                env_ret = f"{ev['env_return']['mean']:.4g}" if ev else ""
                note = (c.get("reason") or "").splitlines()[0][:100] if c["status"] != "trained" else \
                    f"{len(c.get('attempts', [])) - 1} repair(s)"
                lines.append(f"| {rnd['round']} | {c['id']} | {c['status']} | {success} | {env_ret} | {note} |")
        return "\n".join(lines)

    def write_report(self) -> None:
        s = self.spec
        best = self.state["best"]
        t = self.timings
        parts = [f"# Reward synthesis: {self.task.id}", "",
                 f"Instruction: {s.instruction or self.task.instruction}", "",
                 f"Model `{self.client.model}` at {self.client.base_url}; {s.rounds} round(s) x {s.samples} "
                 f"sample(s); {s.steps} training steps per candidate ({s.algo}).", "",
                 "## Candidates", "", self.round_table(), ""]
        if best is not None:
            parts += ["## Best program", "", f"`{best['id']}` (success rate {best['eval']['success_rate']:.2f}), "
                      "written to `best_reward.py`:", "", "```python", Path(best["program"]).read_text().rstrip(),
                      "```", "", "### Training summary", "", "```", format_analysis(best), "```", ""]
        usage = self.client.summary()
        parts += ["## Cost", "", f"LLM: {usage.get('requests', 0)} request(s), {usage.get('cache_hits', 0)} cache "
                  f"hit(s), {usage.get('total_tokens', 0)} tokens.",
                  "Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(t.items())), ""]
        atomic_write_text(self.run / "report.md", "\n".join(parts))
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
            rows = [r for r in RunDir(best["run"]).metrics() if r.get("episode_return") is not None]
            steps = [r["global_step"] for r in rows]
            axes[1].plot(steps, [r.get("success_rate") for r in rows], label="success rate")
            ax2 = axes[1].twinx()
            ax2.plot(steps, [r.get("env_return") for r in rows], color="tab:orange", label="env return")
            axes[1].set_xlabel("env steps")
            axes[1].set_ylabel("success rate")
            ax2.set_ylabel("env return")
            axes[1].set_title(f"best: {best['id']}")
        fig.tight_layout()
        tmp = self.run / ".report.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, self.run / "report.png")


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
    atomic_write_text(path / "config.json", json.dumps({"format": SYNTH_FORMAT, **asdict(spec)}, indent=2) + "\n")
    return path


def load_spec(run_dir: str | Path) -> SynthesisSpec:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a synthesis run (no config.json)")
    data = json.loads(path.read_text())
    if data.pop("format", None) != SYNTH_FORMAT:
        raise ValueError(f"{path}: synthesis run format not supported by this rewardgym")
    return SynthesisSpec(**data)
