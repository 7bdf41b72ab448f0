"""The ``rewardgym`` command line (typer).

Everything printed is literal text: the consoles parse no rich markup, because messages
quote reward code, paths, LLM replies and run directories that anyone may have written
(``[bold]`` in a program must print as ``[bold]``). Styles are applied with
:class:`rich.text.Text` only. Errors a user can act on are one line (``error: ...``), never
a traceback; set ``REWARDGYM_DEBUG=1`` to see the traceback of an unexpected one.

Size: above 600 lines because one typer app holding every command; each command's body is
short and imports what it runs (start-up time of `rewardgym --help`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from rewardgym.cli.console import SafeConsole  # escapes control characters in everything printed
from rewardgym.text import escape_control

app = typer.Typer(
    name="rewardgym",
    help="Reward design for RL on real simulators: list tasks, read their state views, "
         "check reward programs, train and evaluate agents, synthesize rewards with an LLM, "
         "learn perceptual rewards from demonstrations, export policies and deploy them to robots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = SafeConsole(markup=False, highlight=False)
err = SafeConsole(stderr=True, markup=False, highlight=False, soft_wrap=True)  # paths stay on one line

# The LLM client options every command that talks to an LLM takes (synthesize, robustness --llm,
# train --annotator llm): one wording, so a message that names an option names one the command has.
_LLM_TIMEOUT_HELP = ("Seconds per LLM HTTP attempt (default: learnt from the server's speed and the reply cap; "
                     "300 s until the first reply).")
_LLM_RETRIES_HELP = "Retries on 429/5xx/connection errors (a time-out is retried once)."
_MAX_REPLY_TOKENS_HELP = "Cap of each LLM reply (tokens; max_tokens of every request)."
_CONTEXT_SIZE_HELP = ("The model's context window in tokens (default $REWARDGYM_LLM_CONTEXT, else what the server "
                      "says or its refusal); prompts are fitted to it.")


@app.callback()
def _root(tasks: list[str] = typer.Option([], "--tasks", metavar="FILE_OR_MODULE", help="A module or .py file that declares tasks with "
                                          "rewardgym.register_task (repeatable; also $REWARDGYM_TASKS). It runs as "
                                          "your code.")) -> None:
    """Load the task declarations named on the command line (before any command runs)."""
    if not tasks:
        return
    from rewardgym.envs.registry import TASKS_VARIABLE, load_task_modules

    try:
        load_task_modules(tasks)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    # processes this command starts (synthesis training workers) declare the same tasks
    previous = os.environ.get(TASKS_VARIABLE, "")
    os.environ[TASKS_VARIABLE] = os.pathsep.join([p for p in (previous, *tasks) if p])


def _fail(message: str, code: int = 2) -> None:
    err.print(Text.assemble(("error: ", "bold red"), str(message)))
    raise typer.Exit(code)


def _warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), str(message)))


def _reward_limits(timeout: Optional[float], memory_mb: Optional[int]) -> dict:
    """``ProgramLimits`` fields given on the command line (defaults for the rest)."""
    limits: dict = {}
    if timeout is not None:
        limits["timeout_s"] = timeout
    if memory_mb is not None:
        limits["memory_mb"] = memory_mb
    return limits


_REWARD_TIMEOUT_HELP = "Per-call time limit of untrusted reward programs (s; default 10)."
_REWARD_MEMORY_HELP = "Memory limit of untrusted reward programs' worker (MiB; default 1024)."
_TORCHSCRIPT_TRUST_HELP = "Allow a TorchScript policy (a program: your own exports only); ONNX policies need no trust."
_UNSAFE_PICKLE_HELP = ("Load checkpoints that only load by unpickling (runs made by older rewardgym versions): "
                       "this can run any code the file's author put in it. Only for runs you made yourself.")


def _task_or_fail(name: str):
    from rewardgym.envs.registry import UnknownTaskError, get_task

    try:
        return get_task(name)
    except UnknownTaskError as exc:
        _fail(str(exc))


@app.command("list")
def list_tasks(
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only this family (e.g. metaworld)."),
    available_only: bool = typer.Option(False, "--available", help="Hide tasks that cannot run here."),
    wide: bool = typer.Option(False, "--wide", help="Also the simulator and the instruction (needs a wide "
                              "terminal)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (as in docs/TASKS.md)."),
) -> None:
    """List every task id, its family, and whether it can run on this machine (80 columns; --wide for more)."""
    from rewardgym.envs.registry import all_tasks

    if markdown:
        print("| id | simulator | instruction | success test |\n|---|---|---|---|")
        for spec in all_tasks().values():
            if family and spec.family != family:
                continue
            print(escape_control(f"| `{spec.id}` | {spec.base_id} | {spec.instruction} | {spec.success_doc} |"))
        return

    table = Table(show_lines=wide)
    table.add_column("id", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("available", no_wrap=not wide, overflow="ellipsis")
    if wide:
        table.add_column("simulator", no_wrap=True)
        table.add_column("instruction")
    missing: dict[str, list[str]] = {}
    for spec in all_tasks().values():
        if family and spec.family != family:
            continue
        ok, reason = spec.available()
        if available_only and not ok:
            continue
        if not ok:
            missing.setdefault(reason, []).append(spec.short_name)
        row = [spec.id, spec.family, "yes" if ok else (f"no: {reason}" if wide else "no")]
        table.add_row(*row, *([spec.base_id, spec.instruction] if wide else []))
    # --wide asked for the long columns: never squash them into a narrow (or piped, 80-column) console
    (SafeConsole(width=max(console.width, 200), markup=False, highlight=False) if wide else console).print(table)
    if not wide:
        for reason, names in missing.items():
            console.print(f"not available here: {', '.join(names)}: {reason}", markup=False, highlight=False)


@app.command()
def describe(task: str = typer.Argument(..., help="Task id, e.g. rewardgym/Hopper-Backflip-v0 or Hopper-Backflip."),
             prelude: bool = typer.Option(True, "--prelude/--no-prelude",
                                          help="Also print the reward helpers programs may use."),
             compact: int = typer.Option(0, "--compact", min=0, max=5,
                                         help="The state view as prompts for small context windows show it: "
                                              "1-5, ever more compact (every field kept); 0: in full.")) -> None:
    """Print the task, its instruction, success test and state view: exactly what an LLM is shown."""
    spec = _task_or_fail(task)
    if compact:
        from rewardgym.llm_rewards.prompts import describe_task

        text = describe_task(spec, compact)
    else:
        text = spec.describe()
    if prelude:
        from rewardgym.rewards.prelude import describe_prelude

        text += "\n\n" + describe_prelude()
    # Plain print: this is the exact prompt text, not rich markup.
    sys.stdout.write(escape_control(text) + "\n")


@app.command()
def check(
    program: Path = typer.Argument(..., help="Reward program (.py) to check."),
    task: str = typer.Option(..., "--task", "-t", help="Task whose state view the program reads."),
    steps: int = typer.Option(200, min=1, help="Vector steps of random actions."),
    num_envs: int = typer.Option(4, min=1, max=4096, help="Environments in the batch."),
    seed: int = typer.Option(0, help="Seed of envs and action sampler."),
    timeout: float = typer.Option(120.0, min=0.001, help="Wall-clock limit of the whole check (s); each reward "
                                  "call also gets at most 10 s."),
    memory_mb: int = typer.Option(4096, min=1, help="Memory limit of the reward program's worker (MiB)."),
    trusted: bool = typer.Option(False, "--trusted", help="Skip sandbox validation (your own code only)."),
) -> None:
    """Validate a reward program and print per-term statistics on random rollouts."""
    from rewardgym.rewards.check import check_program
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected

    spec = _task_or_fail(task)
    if not program.is_file():
        _fail(f"reward program not found: {program}")
    try:
        with console.status(f"running {program} on {spec.id} ({steps} x {num_envs} random steps)..."):
            report = check_program(program, spec.id, steps=steps, num_envs=num_envs, seed=seed,
                                   timeout_s=timeout, memory_mb=memory_mb, trusted=trusted)
    except (ProgramRejected, RewardProgramError) as exc:
        _fail(str(exc), code=1)
    table = Table("term", "mean", "std", "min", "max", "nonzero", title=(
        f"{program} on {spec.id}: {report.episodes} episodes, success rate {report.success_rate:.2f}"))
    for t in report.terms:
        table.add_row(t.name, f"{t.mean:.4g}", f"{t.std:.4g}", f"{t.min:.4g}", f"{t.max:.4g}", f"{t.nonzero:.2f}")
    console.print(table)
    for warning in report.warnings:
        _warn(warning)


@app.command()
def analyze(
    task: str = typer.Argument(..., help="Task id (a single-agent task)."),
    programs: list[str] = typer.Argument(..., metavar="PROGRAM...", help="Reward programs (.py) to judge; "
                                         "'expert', 'sparse' and 'env' are accepted too."),
    reference: str = typer.Option("expert", "--reference", help="What distances are measured to: expert | sparse | "
                                  "PROGRAM.py."),
    gamma: float = typer.Option(0.99, "--gamma", help="Discount of the canonicalisation and the alignment returns, "
                                "in (0, 1]."),
    coverage: list[str] = typer.Option(["random"], "--coverage", metavar="random|RUN_DIR",
                                       help="Where transitions come from: random actions, or a trained run's "
                                            "policy (repeatable; each source gives --transitions)."),
    transitions: int = typer.Option(16384, "--transitions", min=1, max=1_000_000, help="Transitions per coverage "
                                    "source."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rollouts, the mean set and the bootstrap."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="OUT.json", help="Write the results as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write distances.png (EPIC matrix over "
                                       "every reward) and details.json (intervals, term shares) into DIR."),
    trusted: bool = typer.Option(False, "--trusted", help="Run program files without the sandbox (your own code only)."),
    reward_timeout: Optional[float] = typer.Option(None, "--reward-timeout", min=0.001, help=_REWARD_TIMEOUT_HELP),
    reward_memory: Optional[int] = typer.Option(None, "--reward-memory-mb", min=1, help=_REWARD_MEMORY_HELP),
) -> None:
    """Judge reward programs before training: EPIC/STARC distances to a reference and to sparse success,
    alignment with the success test, top-reward failures, and flags (docs/ANALYSIS.md)."""
    from rewardgym.analysis.coverage import collect_coverage
    from rewardgym.analysis.report import analyze as run_analysis, save_heatmap
    from rewardgym.files import atomic_write_text
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected
    from rewardgym.runs.directory import RunError
    from rewardgym.runs.evaluate import run_policy

    spec = _task_or_fail(task)
    if not 0.0 < gamma <= 1.0:
        _fail(f"--gamma must be in (0, 1], got {gamma}")
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a directory")
    if json_out is not None and json_out.is_dir():
        _fail(f"--json {json_out} is a directory; give a file name")
    if not coverage:
        _fail("--coverage needs at least one source (random or a run directory)")
    limits = _reward_limits(reward_timeout, reward_memory)

    def collector(i: int, source: str, policy):  # collected once every program passed validation
        def collect():
            with console.status(f"collecting {transitions} transitions of {spec.id} ({source})..."):
                return collect_coverage(spec, transitions, seed + 1000 * i, policy=policy,
                                        label="random" if policy is None else source)
        return collect

    try:
        parts = []
        for i, source in enumerate(coverage):
            if source != "random" and not Path(source).is_dir():
                _fail(f"--coverage {source}: not 'random' and not a run directory")
            parts.append(collector(i, source, None if source == "random" else run_policy(source, spec.id, num_envs=8)))
        report = run_analysis(spec, programs, reference=reference, gamma=gamma, coverage=parts, seed=seed,
                              trusted=trusted, limits=limits, progress=lambda m: console.print(m + "..."))
    except (ProgramRejected, RewardProgramError, RunError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    from rich import box

    table = Table("program", "EPIC", "95% CI", "STARC", "EPIC\nsparse", "STARC\nsparse", "align", "top 1%\nfail",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"{spec.id}: distances to {reference}; {report.transitions} transitions "
                        f"({', '.join(report.coverage)}), {report.successes} successful, gamma {gamma:g}")
    num = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for p in report.programs:
        ci = f"{p.epic_interval[0]:.2f}-{p.epic_interval[1]:.2f}" if p.epic_interval else ""
        table.add_row(p.name, num(p.epic), ci, num(p.starc), num(p.epic_to_sparse), num(p.starc_to_sparse),
                      num(p.alignment), num(p.top_reward_failure))
    console.print(table)
    for p in report.programs:
        for flag in p.flags:
            console.print(Text.assemble((f"{p.name}: ", "bold"), flag))
    for note in report.notes:
        _warn(note)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_json(), indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_heatmap(report, out / "distances.png")
        atomic_write_text(out / "details.json", json.dumps(report.details(), indent=2) + "\n")
        console.print(f"wrote {out / 'distances.png'} and {out / 'details.json'}")


def _load_config_file(path: Path) -> dict:
    """Hyper-parameters from a .json or .toml file (a table of name = value)."""
    import json
    import tomllib

    if not path.is_file():
        _fail(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})")
    except tomllib.TOMLDecodeError as exc:
        _fail(f"{path}: invalid TOML ({exc})")
    if not isinstance(data, dict):
        _fail(f"{path}: expected a table of hyper-parameters")
    return data


def _oni_options(intrinsic: Optional[str], oni_model: str, annotator: str, beta: float, goal: Optional[str],
                 extra: list[str], model: Optional[str], base_url: Optional[str]) -> dict:
    """``TrainSpec.oni`` from the train command's ONI options (empty without --intrinsic)."""
    if intrinsic is None:
        return {}
    options: dict = {"model": oni_model, "annotator": annotator, "beta": beta}
    if goal:
        options["goal"] = goal
    if model:
        options["llm_model"] = model
    if base_url:
        options["base_url"] = base_url
    from rewardgym.intrinsic.oni import OniOptions

    try:
        options.update(OniOptions.parse_assignments(extra))
    except ValueError as exc:
        _fail(str(exc))
    return options


def _occupancy_options(divergence: Optional[str], extra: list[str]) -> dict:
    """``TrainSpec.occupancy`` from --divergence and --occupancy-option (checked by the spec)."""
    from rewardgym.intrinsic.oni import OniOptions

    try:
        options = OniOptions.parse_assignments(extra, flag="--occupancy-option")
    except ValueError as exc:
        _fail(str(exc))
    return {**options, **({"divergence": divergence} if divergence is not None else {})}


def _randomize_or_fail(path: Optional[Path]) -> Optional[dict]:
    """The validated randomisation table of ``path`` (None without one)."""
    if path is None:
        return None
    from rewardgym.wrappers.randomize import RandomizationConfig, RandomizationError

    try:
        return RandomizationConfig.load(path).to_dict()
    except RandomizationError as exc:
        _fail(str(exc))


@app.command()
def train(
    task: Optional[str] = typer.Argument(None, help="Task id (omit with --resume)."),
    reward: str = typer.Option("expert", "--reward", "-r",
                               help="env | sparse | expert | PROGRAM.py | a sum such as 'sparse + 0.1*r.py'."),
    steps: int = typer.Option(100_000, "--steps", "-n", min=1, help="Total env steps (all envs)."),
    num_envs: int = typer.Option(8, "--num-envs", min=1, max=65_536, help="Environments in the vector env "
                                 "(copies of a multi-agent task)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (rewardgym PPO)."),
    seed: int = typer.Option(0, "--seed"),
    algo: str = typer.Option("ppo", "--algo", help="ppo (rewardgym) | sb3-ppo (Stable-Baselines3) | mappo | ippo "
                             "(multi-agent tasks, shared parameters; ppo means ippo there)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Hyper-parameters file (.json or .toml)."),
    track: Optional[str] = typer.Option(None, "--track", help="tensorboard | wandb (offline unless configured)."),
    asynchronous: bool = typer.Option(False, "--async", help="One process per environment."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run directories are created."),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: generated)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", min=0.001, help="Seconds between checkpoints."),
    trusted: bool = typer.Option(False, "--trusted", help="Run reward program files without the sandbox (your own "
                                 "code only; never stored in the run: give it again with --resume)."),
    reward_timeout: Optional[float] = typer.Option(None, "--reward-timeout", min=0.001, help=_REWARD_TIMEOUT_HELP),
    reward_memory: Optional[int] = typer.Option(None, "--reward-memory-mb", min=1, help=_REWARD_MEMORY_HELP),
    unsafe_pickle: bool = typer.Option(False, "--unsafe-pickle", help=_UNSAFE_PICKLE_HELP),
    shaping: Optional[str] = typer.Option(None, "--shaping", help="Potential-based shaping: expert | PROGRAM.py "
                                          "with compute_potential | MODEL.pt (perceptual progress) | RUN (its "
                                          "value function); uses the agent's gamma."),
    intrinsic: Optional[str] = typer.Option(None, "--intrinsic", help="Learned intrinsic reward added to --reward: "
                                            "oni (LLM-labelled game messages, NetHack/MiniHack; term 'oni')."),
    oni_model: str = typer.Option("classification", "--oni-model", help="ONI reward model: retrieval | "
                                  "classification | ranking."),
    annotator: str = typer.Option("embedding", "--annotator", help="ONI labeller: embedding (offline, packaged "
                                  "sentence encoder) | llm (--model/--base-url/--api-key)."),
    oni_beta: float = typer.Option(0.1, "--oni-beta", min=0.0, max=1e6, help="ONI intrinsic coefficient beta."),
    goal: Optional[str] = typer.Option(None, "--goal", help="ONI goal description (embedding annotator: positives, "
                                       "';' separates several; LLM: context line). Default: the task's."),
    oni_option: list[str] = typer.Option([], "--oni-option", help="Further ONI option KEY=VALUE (JSON value), e.g. "
                                         "count_exponent=0.5; see docs/ONI.md."),
    model: Optional[str] = typer.Option(None, "--model", help="LLM model of the llm annotator "
                                        "(default $REWARDGYM_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible API root of the llm "
                                           "annotator (default $OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key of the llm annotator (default "
                                          "$OPENAI_API_KEY; never written to the run directory)."),
    llm_timeout: Optional[float] = typer.Option(None, "--llm-timeout", min=0.001, help="Seconds per LLM HTTP "
                                                "attempt (llm annotator; default 60)."),
    llm_retries: Optional[int] = typer.Option(None, "--llm-retries", min=0, help=_LLM_RETRIES_HELP +
                                              " (llm annotator; default 4)"),
    max_reply_tokens: Optional[int] = typer.Option(None, "--max-reply-tokens", min=16, help=_MAX_REPLY_TOKENS_HELP +
                                                   " (llm annotator)"),
    context_size: Optional[int] = typer.Option(None, "--context-size", min=256, help=_CONTEXT_SIZE_HELP),
    randomize: Optional[Path] = typer.Option(None, "--randomize", help="Domain randomisation file (.toml or "
                                             ".json: friction, mass, latency, obs_noise ...; MuJoCo tasks)."),
    regularize: Optional[str] = typer.Option(None, "--regularize", help="occupancy: keep the agent's state-action "
                                             "occupancy near --reference's (ORPO; rewardgym ppo, logged term "
                                             "occupancy_penalty)."),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="RUN_DIR", help="Reference run of "
                                            "--regularize and --init-from-reference: a rewardgym PPO run of the "
                                            "same task (read as data)."),
    reg_coef: Optional[float] = typer.Option(None, "--reg-coef", help="λ of --regularize: reward - λ·penalty "
                                             "(a finite number > 0)."),
    divergence: Optional[str] = typer.Option(None, "--divergence", help="Divergence of --regularize: chi2 "
                                             "(default; penalty r - 1) | kl (penalty log r), r the occupancy ratio."),
    occupancy_option: list[str] = typer.Option([], "--occupancy-option", help="Further --regularize option "
                                               "KEY=VALUE (JSON value), e.g. reference_transitions=5000; see "
                                               "docs/TRAINING.md."),
    init_from_reference: Optional[bool] = typer.Option(None, "--init-from-reference/--no-init-from-reference",
                                                       help="Start from --reference's policy weights (default: on "
                                                       "with --regularize, as in ORPO; alone, an unregularised run "
                                                       "from the same start)."),
) -> None:
    """Train an agent on TASK with an injected reward; writes a resumable run directory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from rewardgym.runs import train as training
    from rewardgym.runs.directory import RunError
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected

    if resume is None and task is None:
        _fail("give a TASK to train on, or --resume RUN")
    llm_options = {k: v for k, v in (("llm_timeout_s", llm_timeout), ("llm_retries", llm_retries),
                                     ("llm_max_tokens", max_reply_tokens), ("llm_context_size", context_size))
                   if v is not None}  # the LLM client options every LLM command takes
    if api_key:  # the LLM annotator's key: from the environment, never from config.json
        import os

        os.environ["OPENAI_API_KEY"] = api_key
    limits = _reward_limits(reward_timeout, reward_memory)
    if resume is not None:
        try:
            run_dir = training.RunDir.open(resume)
            spec = training.TrainSpec.from_config(run_dir.config(), source=str(run_dir.config_path))
            saved = run_dir.config().get("oni")
        except (RunError, ValueError) as exc:
            _fail(str(exc))
        saved_url = saved.get("base_url") if isinstance(saved, dict) else None
        if saved_url and training._uses_oni(spec):
            import os

            now = base_url or os.environ.get("OPENAI_BASE_URL") or "the default endpoint"
            if saved_url != now:
                err.print(f"the run's config.json names the LLM endpoint {str(saved_url)[:200]}; this resume uses "
                          f"{now} (--base-url or OPENAI_BASE_URL): endpoints are never taken from a run directory",
                          markup=False, highlight=False, soft_wrap=True)
    else:
        spec_task = _task_or_fail(task).id
        spec = training.TrainSpec(task=spec_task, reward=reward, steps=steps, algo=algo, num_envs=num_envs,
                                  seed=seed, device=device, track=track, asynchronous=asynchronous,
                                  trusted=trusted, reward_limits=limits, checkpoint_every_s=checkpoint_every,
                                  shaping=shaping,
                                  hyperparams=_load_config_file(config) if config else {},
                                  intrinsic=intrinsic, oni={**_oni_options(intrinsic, oni_model, annotator, oni_beta,
                                                                         goal, oni_option, model, base_url),
                                                            **(llm_options if intrinsic else {})},
                                  randomize=_randomize_or_fail(randomize), regularize=regularize,
                                  reference=reference, reg_coef=reg_coef, init_from_reference=init_from_reference,
                                  occupancy=_occupancy_options(divergence, occupancy_option))
        if config is not None and algo in training.PPO_ALGOS:  # report bad keys against the file they came from
            from rewardgym.learners.ppo import PPOConfig

            agents = len(getattr(_task_or_fail(spec_task), "agents", ()) or ()) or 1  # one sub-env per agent
            try:
                PPOConfig.from_dict({**spec.hyperparams, "num_envs": num_envs * agents, "seed": seed,
                                     "device": device}, source=str(config))
            except ValueError as exc:
                _fail(str(exc))
    progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps", markup=False),
                        TextColumn("{task.fields[status]}", markup=False), TimeRemainingColumn(), console=console)
    bar = progress.add_task(f"{spec.algo} {spec.task}", total=spec.steps, status="")

    def on_update(row: dict) -> None:
        parts = [f"{row.get('fps', 0):,.0f} fps"]
        if row.get("episode_return") is not None:
            parts.append(f"return {row['episode_return']:.1f}")
            parts.append(f"success {row.get('success_rate', 0.0):.2f}")
        progress.update(bar, completed=row["global_step"], status="  ".join(parts))

    try:
        with progress:
            run = training.resume(resume, on_update=on_update, trusted=trusted, reward_limits=limits,
                                  unsafe_pickle=unsafe_pickle, llm_model=model, base_url=base_url,
                                  oni_options=llm_options) if resume else training.train(
                spec, runs_root=runs_dir, run_name=name, on_update=on_update)
    except training.TrainingInterrupted as exc:
        err.print(str(exc), style="yellow")
        raise typer.Exit(130)
    except training.TrainingFailed as exc:
        _fail(str(exc), code=1)
    except (ValueError, RunError, ProgramRejected, RewardProgramError, FileNotFoundError) as exc:
        _fail(str(exc))
    last = run.metrics()[-1] if run.metrics() else {}
    console.print(f"run: {run.path}")
    if last:
        console.print(f"steps {last['global_step']:,}  return {last.get('episode_return')}  "
                      f"env return {last.get('env_return')}  success {last.get('success_rate')}")


@app.command("eval")
def eval_run(
    run: Path = typer.Argument(..., help="Run directory written by `rewardgym train`, or an exported policy "
                                         "(directory, policy.onnx or policy.pt) written by `rewardgym export`."),
    episodes: int = typer.Option(10, "--episodes", min=1, help="Evaluation episodes (deterministic policy)."),
    seed: int = typer.Option(10_000, "--seed", help="Seed of the first episode (then +1 each)."),
    video: bool = typer.Option(False, "--video", help="Write video.mp4 of the first episode (off-screen; runs only)."),
    trusted: bool = typer.Option(False, "--trusted", help="Run the run's reward program files without the sandbox, "
                                 "or load an exported TorchScript policy (a program) -- your own files only; a run "
                                 "directory can never ask for it."),
    reward_timeout: Optional[float] = typer.Option(None, "--reward-timeout", min=0.001, help=_REWARD_TIMEOUT_HELP),
    reward_memory: Optional[int] = typer.Option(None, "--reward-memory-mb", min=1, help=_REWARD_MEMORY_HELP),
    unsafe_pickle: bool = typer.Option(False, "--unsafe-pickle", help=_UNSAFE_PICKLE_HELP),
) -> None:
    """Success rate and returns (mean ± std) of a trained run or an exported policy, per reward term; optional MP4."""
    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.export import ExportError, evaluate_exported, is_exported_policy
    from rewardgym.runs.directory import RunError
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected

    try:
        with console.status(f"evaluating {run} ({episodes} episodes)..."):
            if is_exported_policy(run):
                if video:
                    _fail("--video needs a run directory (an exported policy is evaluated without rendering)")
                report = evaluate_exported(run, episodes=episodes, seed=seed, trusted=trusted)
            else:
                report = evaluate(run, episodes=episodes, seed=seed, video=video, trusted=trusted,
                                  reward_limits=_reward_limits(reward_timeout, reward_memory),
                                  unsafe_pickle=unsafe_pickle)
    except (RunError, ExportError, ValueError, ProgramRejected, RewardProgramError, FileNotFoundError) as exc:
        _fail(str(exc))
    table = Table("metric", "mean", "std", title=f"{report['task']}  reward={report['reward']}  "
                                                  f"{report['algo']}: success rate {report['success_rate']:.2f} "
                                                  f"over {episodes} episodes")
    for key in ("return", "env_return", "length"):
        table.add_row(key, f"{report[key]['mean']:.3f}", f"{report[key]['std']:.3f}")
    for name, stats in report["terms"].items():
        table.add_row(f"term {name}", f"{stats['mean']:.3f}", f"{stats['std']:.3f}")
    console.print(table)
    if "video" in report:
        console.print(f"video: {report['video']}")


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory of a rewardgym PPO run (`rewardgym train`)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (ONNX Runtime; data only) | torchscript (torch.jit)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default RUN/export/FORMAT)."),
    parity_obs: int = typer.Option(1000, "--parity-obs", help="Recorded observations of the parity check (>= 1000)."),
) -> None:
    """Export a run as a deterministic policy (normaliser, clipping, action bounds inside) with a manifest."""
    from rewardgym.runs.export import ExportError, ExportedPolicy, export_run
    from rewardgym.runs.directory import RunError

    try:
        with console.status(f"exporting {run} ({fmt}; parity on {parity_obs} recorded observations)..."):
            out_dir = export_run(run, fmt, out, parity_observations=parity_obs)
            policy = ExportedPolicy.load(out_dir, trusted=True)  # written just now by this process
    except (ExportError, RunError) as exc:
        _fail(str(exc))
    parity = policy.manifest["parity"]
    console.print(f"{policy}\nparity: max |exported - torch| = {parity['max_abs_diff']:.2e} on "
                  f"{parity['observations']} recorded observations ({parity['runtime']})\nwrote {out_dir}",
                  highlight=False)


@app.command()
def deploy(
    policy: Path = typer.Argument(..., help="Exported policy (directory, policy.onnx or policy.pt) from "
                                            "`rewardgym export`."),
    robot: str = typer.Option("sim", "--robot", help="sim (the task's MuJoCo model in a real-time process) | "
                              "sim:CONFIG.toml (\\[randomize] perturbation, \\[robot] watchdog, \\[fault]) | "
                              "tcp://HOST:PORT (a robot server speaking the protocol)."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds of control."),
    safety: Optional[Path] = typer.Option(None, "--safety", help="Safety limits (.toml): max_delta, low_pass, "
                                          "max_tilt_rad, min_height_m, joint_limit_tolerance_rad, max_joint_vel."),
    out: Optional[Path] = typer.Option(None, "--out", help="Deployment directory (default "
                                       "deployments/<task>-<robot>-<time>)."),
    seed: int = typer.Option(0, "--seed", help="Seed of a simulated robot's episode and perturbation."),
    estop_file: Optional[Path] = typer.Option(None, "--estop-file", help="Stop as soon as this file exists."),
    timeout_periods: float = typer.Option(2.0, "--timeout-periods", help="No observation for this many control "
                                          "periods is a robot fault (2: one period after it was due)."),
    trusted: bool = typer.Option(False, "--trusted", help=_TORCHSCRIPT_TRUST_HELP),
) -> None:
    """Run an exported policy on a robot through the safety layer; every tick logged, every ending a safe stop.

    Exit codes: 0 completed, 1 stopped (safety layer, robot, e-stop), 2 refused or bad input,
    3 robot fault (lost, silent, late, garbled), 4 controller error, 130 Ctrl-C.
    """
    import time

    from rewardgym.runs.export import ExportError, ExportedPolicy
    from rewardgym.deploy.loop import run_deployment
    from rewardgym.deploy.robot import robot_from_spec
    from rewardgym.deploy.safety import EStop, SafetyConfig, SafetyConfigError
    from rewardgym.deploy.simrobot import SimRobotConfigError

    if not (duration > 0):
        _fail(f"--duration must be positive, got {duration}")
    if not (timeout_periods > 1):
        _fail(f"--timeout-periods must be > 1 (an observation is due every period), got {timeout_periods}")
    try:
        exported = ExportedPolicy.load(policy, trusted=trusted)
        limits = SafetyConfig.load(safety) if safety else SafetyConfig()
        name = robot.split(":", 1)[0].replace("/", "")
        out = out or Path("deployments") / f"{exported.task.removeprefix('rewardgym/').rsplit('-v', 1)[0]}-{name}-" \
                                          f"{time.strftime('%Y%m%d-%H%M%S')}"
        driver = robot_from_spec(robot, exported.task, seed=seed, log_dir=out)
    except (ExportError, SafetyConfigError, SimRobotConfigError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"deploying {exported} on {robot} for {duration:g} s -> {out}  (Ctrl-C: safe stop)",
                  highlight=False)
    result = run_deployment(exported, driver, duration, out, safety=limits, estop=EStop(estop_file),
                            timeout_periods=timeout_periods)
    s = result.summary
    colour = "green" if result.status == "completed" else "yellow" if result.status == "stopped" else "red"
    console.print(Text.assemble((result.status, colour), f": {result.reason}"))
    timing = s["timing_ms"]
    table = Table("ticks", "return", "jitter p50/p99 ms", "obs->action p50/p99 ms", "late cmds", "interventions")
    fmt = lambda st: f"{st['p50']:.2f} / {st['p99']:.2f}" if st else "-"  # noqa: E731
    table.add_row(str(s["ticks"]), f"{s['return']:.1f}" if s["return"] is not None else "-", fmt(timing["abs_jitter"]),
                  fmt(timing["obs_to_action_latency"]), str(s["late_commands"]),
                  ", ".join(f"{k} {v}" for k, v in s["interventions"].items()) or "none")
    console.print(table)
    console.print(f"log: {result.directory / 'deploy.jsonl'}  summary: {result.directory / 'summary.json'}  "
                  f"plot: {result.directory / 'deploy.png'}", highlight=False)
    raise typer.Exit(result.exit_code)


@app.command()
def robustness(
    policy: Path = typer.Argument(..., help="A rewardgym PPO run directory or an exported policy."),
    param: list[str] = typer.Option([], "--param", "-p", help="Parameter to sweep alone (repeat for several): "
                                    "friction, mass, com_offset, joint_damping, armature, actuator_gain, gravity, "
                                    "obs_noise, action_noise, latency, push_velocity."),
    values: list[str] = typer.Option([], "--values", "-v", help="Comma-separated values of the --param before it "
                                     "(omit all --values for each parameter's default grid)."),
    episodes: int = typer.Option(5, "--episodes", help="Episodes per value (same seeds for every value)."),
    seed: int = typer.Option(10_000, "--seed", help="Seed of the first episode."),
    criterion: str = typer.Option("auto", "--criterion", help="auto | success (success rate >= --min-success) | "
                                  "return (return >= --keep-return x nominal)."),
    min_success: float = typer.Option(0.5, "--min-success", help="Success rate that keeps a value."),
    keep_return: float = typer.Option(0.8, "--keep-return", help="Fraction of the nominal return that keeps a value."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default POLICY/robustness)."),
    llm: bool = typer.Option(False, "--llm", help="Ask an OpenAI-compatible model for randomisation ranges from the "
                             "sweep (writes randomize_llm.toml)."),
    model: Optional[str] = typer.Option(None, "--model", help="LLM model (default $REWARDGYM_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible API root (default "
                                           "$OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (default $OPENAI_API_KEY)."),
    max_repairs: int = typer.Option(1, "--max-repairs", help="Repair requests when the LLM's table is invalid."),
    llm_timeout: Optional[float] = typer.Option(None, "--llm-timeout", min=0.001, help=_LLM_TIMEOUT_HELP),
    llm_retries: int = typer.Option(4, "--llm-retries", min=0, help=_LLM_RETRIES_HELP),
    max_reply_tokens: int = typer.Option(2048, "--max-reply-tokens", min=16, help=_MAX_REPLY_TOKENS_HELP),
    context_size: Optional[int] = typer.Option(None, "--context-size", min=256, help=_CONTEXT_SIZE_HELP),
    trusted: bool = typer.Option(False, "--trusted", help=_TORCHSCRIPT_TRUST_HELP),
) -> None:
    """Sweep physical parameters one at a time (DrEureka's RAPP): success and return per value, the range
    where the policy still succeeds, a table and a plot; --llm asks a model for randomisation ranges."""
    from rewardgym.runs.export import ExportError
    from rewardgym.runs.directory import RunError
    from rewardgym.deploy import robustness as rb
    from rewardgym.wrappers.randomize import RandomizationError

    if not param:
        _fail("give at least one --param (e.g. --param friction --values 0.5,1,1.5)")
    if values and len(values) != len(param):
        _fail(f"{len(param)} --param but {len(values)} --values: give one --values per --param, or none")
    if criterion not in rb.CRITERIA:
        _fail(f"--criterion takes {', '.join(rb.CRITERIA)}, got {criterion!r}")
    client = None
    try:
        grid = {p: rb.parse_values(p, values[i] if values else None) for i, p in enumerate(param)}
        if llm:
            from rewardgym.llm.client import LLMClient

            client = LLMClient(model=model, base_url=base_url, api_key=api_key, timeout_s=llm_timeout,
                               max_retries=llm_retries, max_tokens=max_reply_tokens,
                               context_size=context_size)  # fails before the sweep
        batch_policy, task, label = rb.load_batch_policy(policy, trusted=trusted)
    except (RandomizationError, ExportError, RunError, ValueError) as exc:
        _fail(str(exc))
    out = out or (policy if policy.is_dir() else policy.parent) / "robustness"
    total = 1 + sum(len(v) for v in grid.values())
    with console.status(f"sweeping {task}: {total} evaluations x {episodes} episodes") as status:
        done = [0]

        def progress(row) -> None:
            done[0] += 1
            status.update(f"{done[0]}/{total}: {row.param} {'' if row.value is None else row.value} -> "
                          f"return {row.return_mean:.1f}, success {row.success_rate:.2f}")

        result = rb.sweep(batch_policy, task, grid, episodes=episodes, seed=seed, criterion=criterion,
                          min_success=min_success, keep_return=keep_return, label=label, on_row=progress)
    rb.write_report(result, out)
    table = Table("parameter", "value", "success", "return", "kept",
                  title=f"{task}: kept when {result.criterion} >= {result.threshold:.3g}")
    for row in [result.nominal, *result.rows]:
        table.add_row(row.param, "nominal" if row.value is None else f"{row.value:g}", f"{row.success_rate:.2f}",
                      f"{row.return_mean:.1f} ± {row.return_std:.1f}", "yes" if row.kept else Text("no", style="red"))
    console.print(table)
    for name, kept in result.ranges.items():
        console.print(Text.assemble(f"{name}: ", f"kept from {kept[0]:g} to {kept[1]:g}" if kept
                                    else ("fails at the value nearest nominal", "red")))
    console.print(f"wrote {out / 'robustness.md'}, {out / 'robustness.png'}", highlight=False)
    if client is not None:
        from rewardgym.llm.client import LLMError

        client.transcript_path = out / "llm_transcript.jsonl"
        try:
            with console.status(f"asking {client.model} for randomisation ranges..."):
                config, path = rb.suggest_ranges(result, client, out, max_repairs=max_repairs)
        except (LLMError, RandomizationError) as exc:
            _fail(str(exc), code=1)
        console.print(f"LLM ranges ({client.model}): {json.dumps(config.to_dict())}\nwrote {path}", highlight=False)


# synthesize options that --resume may change (option name -> SynthesisSpec field); the others
# define the run (changing them would make its candidates incomparable) and are refused.
_RESUMABLE = {"rounds": "rounds", "samples": "samples", "workers": "workers", "executor": "executor",
              "feedback": "feedback", "max_repairs": "max_repairs", "zero_shot": "zero_shot",
              "eval_episodes": "eval_episodes", "max_tokens": "max_tokens", "max_requests": "max_requests",
              "max_candidates": "max_candidates", "max_wall_time": "max_wall_s", "check_timeout": "check_timeout_s",
              "llm_timeout": "llm_timeout_s", "llm_retries": "llm_retries", "model": "model", "base_url": "base_url",
              "temperature": "temperature", "max_reply_tokens": "max_reply_tokens", "context_size": "context_size",
              "mode": "mode", "edit_after": "edit_after", "prescreen": "prescreen"}
_FIXED = ("task", "instruction", "steps", "num_envs", "seed", "algo", "name")


@app.command()
def synthesize(
    ctx: typer.Context,
    task: Optional[str] = typer.Argument(None, help="Task id (omit with --resume)."),
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i",
                                              help="Behaviour to reward (default: the task's instruction)."),
    rounds: int = typer.Option(3, "--rounds", help="Design/reflection rounds."),
    samples: int = typer.Option(4, "--samples", "-k", help="Programs (or edits) asked for per round."),
    steps: int = typer.Option(50_000, "--steps", "-n", help="Training env steps per candidate."),
    num_envs: int = typer.Option(4, "--num-envs", help="Environments per training run."),
    model: Optional[str] = typer.Option(None, "--model", help="LLM model (default $REWARDGYM_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible API root "
                                           "(default $OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (default $OPENAI_API_KEY; never "
                                          "written to the run directory)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Candidates trained in parallel."),
    executor: str = typer.Option("local", "--executor", help="local (process pool) | ray."),
    feedback: str = typer.Option("none", "--feedback", help="none | interactive | FILE with feedback text."),
    max_repairs: int = typer.Option(2, "--max-repairs", help="Repair requests per failing program."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="No few-shot examples from the library."),
    seed: int = typer.Option(0, "--seed"),
    algo: str = typer.Option("ppo", "--algo", help="ppo | sb3-ppo | mappo | ippo (multi-agent tasks)."),
    eval_episodes: int = typer.Option(5, "--eval-episodes", help="Evaluation episodes per candidate."),
    mode: str = typer.Option("auto", "--mode", help="whole (whole programs) | edit (JSON edits of a working "
                             "program, for weak models) | auto (edits after --edit-after rounds without a valid "
                             "candidate)."),
    edit_after: int = typer.Option(1, "--edit-after", help="auto mode: rounds without a valid candidate before "
                                   "switching to edits (0: edits from the first round)."),
    prescreen: Optional[int] = typer.Option(None, "--prescreen", metavar="K", help="Per round, train only the K "
                                            "valid candidates the reward analysis ranks best (alignment with the "
                                            "success test, then EPIC to the expert); default: train all."),
    temperature: float = typer.Option(1.0, "--temperature", help="LLM sampling temperature."),
    max_reply_tokens: int = typer.Option(2048, "--max-reply-tokens", help=_MAX_REPLY_TOKENS_HELP),
    context_size: Optional[int] = typer.Option(None, "--context-size", help=_CONTEXT_SIZE_HELP),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Budget: total LLM tokens of the run."),
    max_requests: Optional[int] = typer.Option(None, "--max-requests", help="Budget: LLM requests of the run."),
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", help="Budget: programs in all."),
    max_wall_time: Optional[float] = typer.Option(None, "--max-wall-time", help="Budget: wall time of the run "
                                                  "(s, every process), checked before each LLM request."),
    check_timeout: float = typer.Option(60.0, "--check-timeout", help="Critic: wall-clock budget of each program's "
                                        "check on random rollouts (s)."),
    llm_timeout: Optional[float] = typer.Option(None, "--llm-timeout", min=0.001, help=_LLM_TIMEOUT_HELP),
    llm_retries: int = typer.Option(4, "--llm-retries", help=_LLM_RETRIES_HELP),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir"),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: generated)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the synthesis run in this directory; "
                                          "options given with it replace the saved ones (recorded)."),
) -> None:
    """LLM reward synthesis: design, criticise, train, reflect; keeps the best reward program.

    Exit status: 0 done; 1 stopped before the end (budget, server unavailable, prompt too long, crash: report.md says why and how to resume) or nothing could be trained; 2 bad options; 130 interrupted (Ctrl-C).
    """
    import dataclasses
    from datetime import datetime, timezone

    from rewardgym.llm.client import Budget, LLMClient, LLMError
    from rewardgym.llm_rewards.synthesize import (RECEIVED_PLACES, SynthesisSpec, Synthesizer, format_changes,
                                                  load_spec, new_run_dir, resume_command, save_spec)

    # options typed on this command line (typer vendors its own click: compare the source by name)
    given = {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") in
             ("COMMANDLINE", "ENVIRONMENT", "PROMPT")}
    for option, value, low in (("--rounds", rounds, 1), ("--samples", samples, 1), ("--workers", workers, 1),
                               ("--max-repairs", max_repairs, 0), ("--max-reply-tokens", max_reply_tokens, 16),
                               ("--edit-after", edit_after, 0), ("--llm-retries", llm_retries, 0)):
        if value < low:
            _fail(f"{option} must be at least {low}, got {value}")
    if prescreen is not None and not 1 <= prescreen <= 64:
        _fail(f"--prescreen must be between 1 and 64 candidates, got {prescreen}")
    if mode not in ("auto", "whole", "edit"):
        _fail(f"--mode takes auto, whole or edit, got {mode!r}")
    if executor not in ("local", "ray"):
        _fail(f"--executor takes local or ray, got {executor!r}")
    if feedback not in ("none", "interactive") and not Path(feedback).is_file():
        _fail(f"--feedback takes none, interactive or a file; {feedback!r} is not a file")
    if context_size is not None and context_size < 256:
        _fail(f"--context-size must be at least 256 tokens, got {context_size}")
    if resume is None and task is None:
        _fail("give a TASK, or --resume RUN")
    changed: dict = {}
    if resume is not None:
        fixed = sorted(n for n in _FIXED if n in given)
        if fixed:
            _fail(f"--resume continues a run with its own {', '.join(fixed)}; start a new run to change "
                  f"{'it' if len(fixed) == 1 else 'them'}")
        received_notes: list[str] = []
        try:
            spec = load_spec(resume, received_notes)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            _fail(str(exc))
        for note in received_notes:
            err.print(note, markup=False, highlight=False, soft_wrap=True)
        for option, field in _RESUMABLE.items():
            value = ctx.params[option]
            if option in given and getattr(spec, field) != value and field not in RECEIVED_PLACES:
                changed[field] = {"old": getattr(spec, field), "new": value, "option": "--" + option.replace("_", "-")}
        # the endpoint and model are this command line's (or the environment's), never the run's
        spec = dataclasses.replace(spec, model=model, base_url=base_url,
                                   **{f: v["new"] for f, v in changed.items()})
        run_dir = resume
    else:
        spec = SynthesisSpec(task=_task_or_fail(task).id, instruction=instruction, rounds=rounds, samples=samples,
                             steps=steps, num_envs=num_envs, seed=seed, algo=algo, workers=workers,
                             executor=executor, feedback=feedback, max_repairs=max_repairs, zero_shot=zero_shot,
                             eval_episodes=eval_episodes, max_candidates=max_candidates, model=model,
                             base_url=base_url, max_tokens=max_tokens, max_requests=max_requests,
                             max_wall_s=max_wall_time, check_timeout_s=check_timeout, llm_timeout_s=llm_timeout,
                             llm_retries=llm_retries, temperature=temperature, max_reply_tokens=max_reply_tokens,
                             context_size=context_size, mode=mode, edit_after=edit_after, prescreen=prescreen)

    def log(message: str) -> None:  # literal text (replies, paths), unbroken lines (commands to copy)
        console.print(message, highlight=False, markup=False, soft_wrap=True)

    try:
        run_path = Path(run_dir) if resume is not None else None
        client = LLMClient(model=spec.model, base_url=spec.base_url, api_key=api_key,
                           budget=Budget(max_total_tokens=spec.max_tokens, max_requests=spec.max_requests,
                                         max_wall_s=spec.max_wall_s),
                           timeout_s=spec.llm_timeout_s, max_retries=spec.llm_retries,
                           backoff_initial_s=min(1.0, spec.llm_timeout_s or 1.0), temperature=spec.temperature,
                           max_tokens=spec.max_reply_tokens, context_size=spec.context_size,
                           on_retry=lambda m: log(f"  {m}"))  # fails before a run directory is made
        if run_path is None:
            run_path = new_run_dir(spec, runs_dir, name)
        client.transcript_path = run_path / "llm_transcript.jsonl"
    except (LLMError, ValueError) as exc:
        _fail(str(exc))

    def ask(table: str, plot: Path | None) -> str:
        console.print(table, markup=False, highlight=False)
        if plot is not None and plot.is_file():
            console.print(f"plot: {plot}", markup=False)
        return typer.prompt("feedback for the next round (empty: none)", default="", show_default=False)

    synth = Synthesizer(spec, run_path, client, log=log, ask_feedback=ask)
    if changed:
        save_spec(run_path, spec)
        synth.state.setdefault("resumes", []).append(
            {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "changed": changed})
        log("settings changed on resume: " + format_changes(changed))
    log(f"synthesis run: {run_path}")
    try:
        best = synth.run_loop()
    except KeyboardInterrupt:
        err.print(f"interrupted; resume with: {resume_command(run_path, spec=spec)}", markup=False, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(130)
    except Exception as exc:  # noqa: BLE001 - every stop (LLMError, PromptTooLong, a crash) ends with a report
        stop = synth.state.get("stop") or {}
        if stop.get("kind") == "crash":
            import traceback

            (run_path / "error.log").write_text("".join(traceback.format_exception(exc)))
            reason = f"{stop['reason']} (traceback in {run_path / 'error.log'})"
        else:
            reason = stop.get("reason", str(exc))
        _fail(f"{reason}\nstopped; report: {str(run_path / 'report.md')}\n"
              f"resume with: {stop.get('resume', resume_command(run_path, spec=spec))}", code=1)
    if best is None:
        _fail(f"no candidate could be trained; see {str(run_path / 'report.md')}", code=1)
    log(f"best: {best['id']} success {best['eval']['success_rate']:.2f}  -> {run_path / 'best_reward.py'}")
    log(f"report: {run_path / 'report.md'}")


library_app = typer.Typer(help="The reward-program library (expert programs + programs you add).",
                          no_args_is_help=True)
app.add_typer(library_app, name="library")


@library_app.command("list")
def library_list(origin: Optional[str] = typer.Option(None, help="expert | user")) -> None:
    """List the library's programs."""
    from rewardgym.llm_rewards.library import list_programs

    table = Table()
    table.add_column("name", no_wrap=True)
    for column in ("origin", "task", "summary"):
        table.add_column(column)
    if origin not in (None, "expert", "user"):
        _fail(f"--origin takes expert or user, got {origin!r}")
    for entry in list_programs(origin=origin):  # user programs' names and docstrings: printed literally
        row = entry.row()
        table.add_row(*(row[k] for k in ("name", "origin", "task", "summary")))
    console.print(table)


@library_app.command("show")
def library_show(name: str = typer.Argument(..., help="Program name (see `rewardgym library list`).")) -> None:
    """Print a library program's source."""
    from rewardgym.llm_rewards.library import LibraryError, get_program

    try:
        entry = get_program(name)
    except (LibraryError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    sys.stdout.write(escape_control(entry.source()))


demos_app = typer.Typer(help="Demonstrations and perceptual rewards learned from them (Sermanet et al. 2016).",
                        no_args_is_help=True)
app.add_typer(demos_app, name="demos")


@demos_app.command("collect")
def demos_collect(
    task: str = typer.Argument(..., help="Task id, e.g. MetaWorld-DrawerClose."),
    episodes: int = typer.Option(10, "--episodes", "-n", help="Successful episodes to record."),
    from_run: Optional[Path] = typer.Option(None, "--from-run", help="A trained run whose policy demonstrates "
                                            "(default: the simulator's scripted expert)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .npz (default: demos/<Task>.npz)."),
    size: int = typer.Option(64, help="Frame height and width, pixels."),
    camera: str = typer.Option("default", help="MuJoCo camera name, or 'default' for the family's camera."),
    seed: int = typer.Option(0, help="Episode i of the attempts resets with seed + i."),
    after_success: int = typer.Option(10, help="Frames kept after the first success step."),
) -> None:
    """Record successful demonstrations (frames rendered off-screen + states) into one .npz file."""
    from rewardgym.perceptual.demos import DemoError, collect
    from rewardgym.runs.directory import RunError
    from rewardgym.runs.evaluate import demonstration_policy

    spec = _task_or_fail(task)
    out = out or Path("demos") / f"{spec.short_name}.npz"
    try:
        with console.status(f"recording {episodes} demonstrations of {spec.id}") as status:
            policy = demonstration_policy(from_run, spec.id) if from_run else None
            demos = collect(spec.id, episodes=episodes, policy=policy, source=f"run:{from_run}" if from_run else None,
                            size=size, camera=camera, seed=seed,
                            after_success=after_success,
                            on_episode=lambda a, ok, n: status.update(
                                f"episode {a}: {'success' if ok else 'failed'} in {n} steps"))
    except (DemoError, RunError, ValueError) as exc:
        _fail(str(exc))
    demos.save(out)
    console.print(f"{demos}\nwrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


@demos_app.command("fit")
def demos_fit(
    demos_path: Path = typer.Argument(..., metavar="DEMOS", help="Demonstrations file from `demos collect`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Model file (.pt; default: DEMOS with .pt)."),
    steps: int = typer.Option(3, "--steps", "-k", help="Intermediate steps to discover (K)."),
    features_per_step: int = typer.Option(8, help="Features each step's classifier reads (M)."),
    encoder: str = typer.Option("tcn", help="tcn (trained on the demos, offline) | pretrained (torchvision --arch "
                                "+ --weights state dict) | torchscript (--weights from torch.jit.save)."),
    arch: Optional[str] = typer.Option(None, help="torchvision architecture for --encoder pretrained, e.g. resnet18."),
    weights: Optional[Path] = typer.Option(None, help="Weights file: a state dict for --arch, or a TorchScript "
                                           "module."),
    input_size: int = typer.Option(224, help="Input side (pixels) of pretrained/TorchScript networks."),
    holdout: int = typer.Option(0, help="Demonstrations kept out of fitting to report generalisation."),
    iterations: int = typer.Option(600, help="Training iterations of the time-contrastive encoder."),
    seed: int = typer.Option(0),
) -> None:
    """Learn a perceptual reward from demonstrations; use it with reward=MODEL.pt or --shaping MODEL.pt."""
    from rewardgym.perceptual.demos import DemoError, Demos
    from rewardgym.perceptual.model import PerceptualModel

    out = out or demos_path.with_suffix(".pt")
    if out.suffix != ".pt":
        _fail(f"--out {out}: perceptual models are .pt files (that is how reward= recognises them)")
    try:
        demos = Demos.load(demos_path)
        ids = sorted(set(demos.episode.tolist()))
        if holdout and holdout >= len(ids) - 1:
            _fail(f"--holdout {holdout} leaves fewer than 2 of the {len(ids)} demonstrations to fit on")
        train_demos = demos.select(ids[:len(ids) - holdout]) if holdout else demos
        with console.status("fitting") as status:
            model = PerceptualModel.fit(train_demos, steps=steps, features_per_step=features_per_step, encoder=encoder,
                                        arch=arch, weights=weights, input_size=input_size,
                                        tcn_iterations=iterations, seed=seed,
                                        on_progress=status.update)
        if holdout:
            model.report["holdout"] = model.evaluate(demos.select(ids[len(ids) - holdout:]))
            model.report["holdout"]["demos"] = holdout
    except (DemoError, ValueError) as exc:
        _fail(str(exc))
    model.save(out)
    _print_model_report(model)
    console.print(f"wrote {out}: use it as reward={out} or --shaping {out}")


def _print_model_report(model) -> None:
    report = model.report
    table = Table(title=f"perceptual model of {model.task} (K={model.num_steps}, "
                        f"encoder {model.encoder_config['kind']})")
    table.add_column("demos")
    table.add_column("progress ρ with time")
    table.add_column("progress at start → end")
    table.add_row(f"fit ({report.get('demos', '?')})", f"{report['progress_rank_correlation']:.2f}",
                  f"{report['progress_first']:.2f} → {report['progress_last']:.2f}")
    if "holdout" in report:
        held = report["holdout"]
        table.add_row("held out", f"{held['progress_rank_correlation']:.2f}",
                      f"{held['progress_first']:.2f} → {held['progress_last']:.2f}")
    console.print(table)


@demos_app.command("show")
def demos_show(path: Path = typer.Argument(..., help="A demonstrations .npz or a perceptual model .pt.")) -> None:
    """Describe a demonstrations file or a perceptual model."""
    from rewardgym.perceptual.demos import DemoError, Demos
    from rewardgym.perceptual.model import PerceptualModel

    try:
        if path.suffix == ".pt":
            _print_model_report(PerceptualModel.load(path, encoder=False))
        else:
            console.print(repr(Demos.load(path)))
    except (DemoError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def version() -> None:
    """Print rewardgym's version."""
    from rewardgym.version import __version__

    console.print(__version__)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (an option, a file, a program), not a bug."""
    from rewardgym.runs.directory import RunError
    from rewardgym.envs.registry import UnknownTaskError
    from rewardgym.envs.task import TaskUnavailableError
    from rewardgym.intrinsic.store import StoreError
    from rewardgym.rewards.sandbox import ProgramRejected
    from rewardgym.rewards.worker import RewardProgramError

    return (ValueError, FileNotFoundError, RunError, UnknownTaskError, TaskUnavailableError,
            ProgramRejected, RewardProgramError, StoreError)


def main() -> None:
    """Entry point: runs the command; an error that escaped a command is one line, not a traceback."""
    from rewardgym.envs.frames import headless_gl_default

    headless_gl_default()  # an application may choose MuJoCo's GL back-end for its process
    try:
        app()
    except _user_errors() as exc:  # a bad input that a command did not catch itself: still one line
        if os.environ.get("REWARDGYM_DEBUG"):
            raise
        err.print(Text.assemble(("error: ", "bold red"), f"{exc}"))
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug: say so, briefly, and how to see more
        if os.environ.get("REWARDGYM_DEBUG"):
            raise
        err.print(Text.assemble(("internal error: ", "bold red"), f"{type(exc).__name__}: {exc}",
                                "\n(this is a bug in rewardgym; rerun with REWARDGYM_DEBUG=1 for the traceback)"))
        sys.exit(3)


if __name__ == "__main__":
    main()
