"""The ``rewardgym`` command line (typer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="rewardgym",
    help="Reward design for RL on real simulators: list tasks, read their state views, "
         "check reward programs, train and evaluate agents, synthesize rewards with an LLM, "
         "learn perceptual rewards from demonstrations, export policies and deploy them to robots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


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
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (as in the README)."),
) -> None:
    """List every task id, its simulator, and whether it can run on this machine."""
    from rewardgym.envs.registry import all_tasks

    if markdown:
        print("| id | simulator | instruction | success test |\n|---|---|---|---|")
        for spec in all_tasks().values():
            if family and spec.family != family:
                continue
            print(f"| `{spec.id}` | {spec.base_id} | {spec.instruction} | {spec.success_doc} |")
        return

    table = Table(show_lines=False)
    table.add_column("id", no_wrap=True)
    for column in ("family", "simulator", "available", "instruction"):
        table.add_column(column)
    for spec in all_tasks().values():
        if family and spec.family != family:
            continue
        ok, reason = spec.available()
        if available_only and not ok:
            continue
        instruction = spec.instruction if len(spec.instruction) < 70 else spec.instruction[:67] + "..."
        table.add_row(spec.id, spec.family, spec.base_id, "yes" if ok else f"no: {reason}", instruction)
    console.print(table)


@app.command()
def describe(task: str = typer.Argument(..., help="Task id, e.g. rewardgym/Hopper-Backflip-v0 or Hopper-Backflip."),
             prelude: bool = typer.Option(True, "--prelude/--no-prelude",
                                          help="Also print the reward helpers programs may use.")) -> None:
    """Print the task, its instruction, success test and state view: exactly what an LLM is shown."""
    spec = _task_or_fail(task)
    text = spec.describe()
    if prelude:
        from rewardgym.rewards.prelude import describe_prelude

        text += "\n\n" + describe_prelude()
    # Plain print: this is the exact prompt text, not rich markup.
    sys.stdout.write(text + "\n")


@app.command()
def check(
    program: Path = typer.Argument(..., help="Reward program (.py) to check."),
    task: str = typer.Option(..., "--task", "-t", help="Task whose state view the program reads."),
    steps: int = typer.Option(200, help="Vector steps of random actions."),
    num_envs: int = typer.Option(4, help="Environments in the batch."),
    seed: int = typer.Option(0, help="Seed of envs and action sampler."),
    timeout: float = typer.Option(120.0, help="Wall-clock limit of the child process (s)."),
    memory_mb: int = typer.Option(4096, help="Address-space limit of the child process (MiB)."),
    trusted: bool = typer.Option(False, "--trusted", help="Skip sandbox validation (your own code only)."),
) -> None:
    """Validate a reward program and print per-term statistics on random rollouts."""
    from rewardgym.rewards.check import check_program
    from rewardgym.rewards.limits import LimitExceeded
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected

    spec = _task_or_fail(task)
    if not program.is_file():
        _fail(f"reward program not found: {program}")
    try:
        with console.status(f"running {program} on {spec.id} ({steps} x {num_envs} random steps)..."):
            report = check_program(program, spec.id, steps=steps, num_envs=num_envs, seed=seed,
                                   timeout_s=timeout, memory_mb=memory_mb, trusted=trusted)
    except (ProgramRejected, RewardProgramError, LimitExceeded) as exc:
        _fail(str(exc), code=1)
    table = Table("term", "mean", "std", "min", "max", "nonzero", title=(
        f"{program} on {spec.id}: {report.episodes} episodes, success rate {report.success_rate:.2f}"))
    for t in report.terms:
        table.add_row(t.name, f"{t.mean:.4g}", f"{t.std:.4g}", f"{t.min:.4g}", f"{t.max:.4g}", f"{t.nonzero:.2f}")
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


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
    steps: int = typer.Option(100_000, "--steps", "-n", help="Total env steps (all envs)."),
    num_envs: int = typer.Option(8, "--num-envs", help="Environments in the vector env."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (rewardgym PPO)."),
    seed: int = typer.Option(0, "--seed"),
    algo: str = typer.Option("ppo", "--algo", help="ppo (rewardgym) | sb3-ppo (Stable-Baselines3)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Hyper-parameters file (.json or .toml)."),
    track: Optional[str] = typer.Option(None, "--track", help="tensorboard | wandb (offline unless configured)."),
    asynchronous: bool = typer.Option(False, "--async", help="One process per environment."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run directories are created."),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: generated)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", help="Seconds between checkpoints."),
    trusted: bool = typer.Option(False, "--trusted", help="Run reward program files without the sandbox."),
    shaping: Optional[str] = typer.Option(None, "--shaping", help="Potential-based shaping: expert | PROGRAM.py "
                                          "with compute_potential | MODEL.pt (perceptual progress) | RUN (its "
                                          "value function); uses the agent's gamma."),
    intrinsic: Optional[str] = typer.Option(None, "--intrinsic", help="Learned intrinsic reward added to --reward: "
                                            "oni (LLM-labelled game messages, NetHack/MiniHack; term 'oni')."),
    oni_model: str = typer.Option("classification", "--oni-model", help="ONI reward model: retrieval | "
                                  "classification | ranking."),
    annotator: str = typer.Option("embedding", "--annotator", help="ONI labeller: embedding (offline, packaged "
                                  "sentence encoder) | llm (--model/--base-url/--api-key)."),
    oni_beta: float = typer.Option(0.1, "--oni-beta", help="ONI intrinsic coefficient beta."),
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
    randomize: Optional[Path] = typer.Option(None, "--randomize", help="Domain randomisation file (.toml or "
                                             ".json: friction, mass, latency, obs_noise ...; MuJoCo tasks)."),
) -> None:
    """Train an agent on TASK with an injected reward; writes a resumable run directory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from rewardgym.agents import train as training
    from rewardgym.agents.runs import RunError
    from rewardgym.rewards.program import RewardProgramError
    from rewardgym.rewards.sandbox import ProgramRejected

    if resume is None and task is None:
        _fail("give a TASK to train on, or --resume RUN")
    if api_key:  # the LLM annotator's key: from the environment, never from config.json
        import os

        os.environ["OPENAI_API_KEY"] = api_key
    if resume is not None:
        try:
            spec = training.TrainSpec.from_config(training.RunDir.open(resume).config())
        except RunError as exc:
            _fail(str(exc))
    else:
        spec_task = _task_or_fail(task).id
        spec = training.TrainSpec(task=spec_task, reward=reward, steps=steps, algo=algo, num_envs=num_envs,
                                  seed=seed, device=device, track=track, asynchronous=asynchronous,
                                  trusted=trusted, checkpoint_every_s=checkpoint_every, shaping=shaping,
                                  hyperparams=_load_config_file(config) if config else {},
                                  intrinsic=intrinsic, oni=_oni_options(intrinsic, oni_model, annotator, oni_beta,
                                                                        goal, oni_option, model, base_url),
                                  randomize=_randomize_or_fail(randomize))
        if config is not None and algo == "ppo":  # report bad keys against the file they came from
            from rewardgym.agents.ppo import PPOConfig

            try:
                PPOConfig.from_dict({**spec.hyperparams, "num_envs": num_envs, "seed": seed, "device": device},
                                    source=str(config))
            except ValueError as exc:
                _fail(str(exc))
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console)
    bar = progress.add_task(f"{spec.algo} {spec.task}", total=spec.steps, status="")

    def on_update(row: dict) -> None:
        parts = [f"{row.get('fps', 0):,.0f} fps"]
        if row.get("episode_return") is not None:
            parts.append(f"return {row['episode_return']:.1f}")
            parts.append(f"success {row.get('success_rate', 0.0):.2f}")
        progress.update(bar, completed=row["global_step"], status="  ".join(parts))

    try:
        with progress:
            run = training.resume(resume, on_update=on_update) if resume else training.train(
                spec, runs_root=runs_dir, run_name=name, on_update=on_update)
    except training.TrainingInterrupted as exc:
        err.print(f"[yellow]{exc}[/]", highlight=False)
        raise typer.Exit(130)
    except (ValueError, RunError, ProgramRejected, RewardProgramError, FileNotFoundError) as exc:
        _fail(str(exc))
    last = run.metrics()[-1] if run.metrics() else {}
    console.print(f"run: {run.path}")
    if last:
        console.print(f"steps {last['global_step']:,}  return {last.get('episode_return')}  "
                      f"env return {last.get('env_return')}  success {last.get('success_rate')}", highlight=False)


@app.command("eval")
def eval_run(
    run: Path = typer.Argument(..., help="Run directory written by `rewardgym train`, or an exported policy "
                                         "(directory, policy.onnx or policy.pt) written by `rewardgym export`."),
    episodes: int = typer.Option(10, "--episodes", help="Evaluation episodes (deterministic policy)."),
    seed: int = typer.Option(10_000, "--seed", help="Seed of the first episode (then +1 each)."),
    video: bool = typer.Option(False, "--video", help="Write video.mp4 of the first episode (off-screen; runs only)."),
) -> None:
    """Success rate and returns (mean ± std) of a trained run or an exported policy, per reward term; optional MP4."""
    from rewardgym.agents.evaluate import evaluate
    from rewardgym.agents.export import ExportError, evaluate_exported, is_exported_policy
    from rewardgym.agents.runs import RunError

    try:
        with console.status(f"evaluating {run} ({episodes} episodes)..."):
            if is_exported_policy(run):
                if video:
                    _fail("--video needs a run directory (an exported policy is evaluated without rendering)")
                report = evaluate_exported(run, episodes=episodes, seed=seed)
            else:
                report = evaluate(run, episodes=episodes, seed=seed, video=video)
    except (RunError, ExportError) as exc:
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
    from rewardgym.agents.export import ExportError, ExportedPolicy, export_run
    from rewardgym.agents.runs import RunError

    try:
        with console.status(f"exporting {run} ({fmt}; parity on {parity_obs} recorded observations)..."):
            out_dir = export_run(run, fmt, out, parity_observations=parity_obs)
            policy = ExportedPolicy.load(out_dir)
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
) -> None:
    """Run an exported policy on a robot through the safety layer; every tick logged, every ending a safe stop.

    Exit codes: 0 completed, 1 stopped (safety layer, robot, e-stop), 2 refused or bad input,
    3 robot fault (lost, silent, late, garbled), 4 controller error, 130 Ctrl-C.
    """
    import time

    from rewardgym.agents.export import ExportError, ExportedPolicy
    from rewardgym.deploy.loop import run_deployment
    from rewardgym.deploy.robot import robot_from_spec
    from rewardgym.deploy.safety import EStop, SafetyConfig, SafetyConfigError
    from rewardgym.deploy.simrobot import SimRobotConfigError

    if not (duration > 0):
        _fail(f"--duration must be positive, got {duration}")
    if not (timeout_periods > 1):
        _fail(f"--timeout-periods must be > 1 (an observation is due every period), got {timeout_periods}")
    try:
        exported = ExportedPolicy.load(policy)
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
    console.print(f"[{colour}]{result.status}[/]: {result.reason}", highlight=False)
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
) -> None:
    """Sweep physical parameters one at a time (DrEureka's RAPP): success and return per value, the range
    where the policy still succeeds, a table and a plot; --llm asks a model for randomisation ranges."""
    from rewardgym.agents.export import ExportError
    from rewardgym.agents.runs import RunError
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
            from rewardgym.llm_rewards.client import LLMClient

            client = LLMClient(model=model, base_url=base_url, api_key=api_key)  # fails before the sweep
        batch_policy, task, label = rb.load_batch_policy(policy)
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
                      f"{row.return_mean:.1f} ± {row.return_std:.1f}", "yes" if row.kept else "[red]no[/]")
    console.print(table)
    for name, kept in result.ranges.items():
        console.print(f"{name}: " + (f"kept from {kept[0]:g} to {kept[1]:g}" if kept else "[red]fails at the value "
                                     "nearest nominal[/]"), highlight=False)
    console.print(f"wrote {out / 'robustness.md'}, {out / 'robustness.png'}", highlight=False)
    if client is not None:
        from rewardgym.llm_rewards.client import LLMError

        client.transcript_path = out / "llm_transcript.jsonl"
        try:
            with console.status(f"asking {client.model} for randomisation ranges..."):
                config, path = rb.suggest_ranges(result, client, out, max_repairs=max_repairs)
        except (LLMError, RandomizationError) as exc:
            _fail(str(exc), code=1)
        console.print(f"LLM ranges ({client.model}): {json.dumps(config.to_dict())}\nwrote {path}", highlight=False)


@app.command()
def synthesize(
    task: Optional[str] = typer.Argument(None, help="Task id (omit with --resume)."),
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i",
                                              help="Behaviour to reward (default: the task's instruction)."),
    rounds: int = typer.Option(3, "--rounds", help="Design/reflection rounds."),
    samples: int = typer.Option(4, "--samples", "-k", help="Programs asked for per round."),
    steps: int = typer.Option(50_000, "--steps", "-n", help="Training env steps per candidate."),
    num_envs: int = typer.Option(4, "--num-envs", help="Environments per training run."),
    model: Optional[str] = typer.Option(None, "--model", help="LLM model (default $REWARDGYM_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible API root "
                                           "(default $OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (default $OPENAI_API_KEY)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Candidates trained in parallel."),
    executor: str = typer.Option("local", "--executor", help="local (process pool) | ray."),
    feedback: str = typer.Option("none", "--feedback", help="none | interactive | FILE with feedback text."),
    max_repairs: int = typer.Option(2, "--max-repairs", help="Repair requests per failing program."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="No few-shot examples from the library."),
    seed: int = typer.Option(0, "--seed"),
    algo: str = typer.Option("ppo", "--algo", help="ppo | sb3-ppo."),
    eval_episodes: int = typer.Option(5, "--eval-episodes", help="Evaluation episodes per candidate."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Budget: total LLM tokens."),
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", help="Budget: programs in all."),
    max_wall_time: Optional[float] = typer.Option(None, "--max-wall-time", help="Budget: LLM wall time (s)."),
    check_timeout: float = typer.Option(60.0, "--check-timeout", help="Critic: time limit per program run (s)."),
    llm_timeout: float = typer.Option(120.0, "--llm-timeout", help="Seconds per LLM HTTP attempt."),
    llm_retries: int = typer.Option(4, "--llm-retries", help="Retries on 429/5xx/connection errors."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir"),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: generated)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the synthesis run in this directory."),
) -> None:
    """LLM reward synthesis: design, criticise, train, reflect; keeps the best reward program."""
    from rewardgym.llm_rewards.client import Budget, LLMClient, LLMError
    from rewardgym.llm_rewards.synthesize import SynthesisSpec, Synthesizer, load_spec, new_run_dir

    if resume is None and task is None:
        _fail("give a TASK, or --resume RUN")
    if resume is not None:
        try:
            spec = load_spec(resume)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        run_dir = resume
    else:
        spec = SynthesisSpec(task=_task_or_fail(task).id, instruction=instruction, rounds=rounds, samples=samples,
                             steps=steps, num_envs=num_envs, seed=seed, algo=algo, workers=workers,
                             executor=executor, feedback=feedback, max_repairs=max_repairs, zero_shot=zero_shot,
                             eval_episodes=eval_episodes, max_candidates=max_candidates, model=model,
                             base_url=base_url, max_tokens=max_tokens, max_wall_s=max_wall_time,
                             check_timeout_s=check_timeout, llm_timeout_s=llm_timeout, llm_retries=llm_retries)
        if feedback not in ("none", "interactive") and not Path(feedback).is_file():
            _fail(f"--feedback takes none, interactive or a file; {feedback!r} is not a file")
        if executor not in ("local", "ray"):
            _fail(f"--executor takes local or ray, got {executor!r}")
    try:
        run_path = Path(run_dir) if resume is not None else None
        client_kwargs = dict(model=model or spec.model, base_url=base_url or spec.base_url, api_key=api_key,
                             budget=Budget(max_total_tokens=spec.max_tokens, max_requests=spec.max_requests,
                                           max_wall_s=spec.max_wall_s),
                             timeout_s=spec.llm_timeout_s, max_retries=spec.llm_retries,
                             backoff_initial_s=min(1.0, spec.llm_timeout_s), temperature=spec.temperature)
        client = LLMClient(**client_kwargs)  # fails before a run directory is made when nothing is configured
        if run_path is None:
            run_path = new_run_dir(spec, runs_dir, name)
        client.transcript_path = run_path / "llm_transcript.jsonl"
    except (LLMError, ValueError) as exc:
        _fail(str(exc))

    def ask(table: str, plot: Path | None) -> str:
        console.print(table)
        if plot is not None and plot.is_file():
            console.print(f"plot: {plot}")
        return typer.prompt("feedback for the next round (empty: none)", default="", show_default=False)

    synth = Synthesizer(spec, run_path, client, log=lambda m: console.print(m, highlight=False), ask_feedback=ask)
    console.print(f"synthesis run: {run_path}")
    try:
        best = synth.run_loop()
    except LLMError as exc:
        synth.write_report()
        _fail(f"{exc}\n(nothing finished is lost: resume with rewardgym synthesize --resume {run_path})", code=1)
    except KeyboardInterrupt:
        synth.write_report()
        err.print(f"interrupted; resume with: rewardgym synthesize --resume {run_path}")
        raise typer.Exit(130)
    if best is None:
        _fail(f"no candidate could be trained; see {run_path / 'report.md'}", code=1)
    console.print(f"best: {best['id']} success {best['eval']['success_rate']:.2f}  -> {run_path / 'best_reward.py'}")
    console.print(f"report: {run_path / 'report.md'}")


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
    for entry in list_programs(origin=origin):
        row = entry.row()
        table.add_row(row["name"], row["origin"], row["task"], row["summary"])
    console.print(table)


@library_app.command("show")
def library_show(name: str = typer.Argument(..., help="Program name (see `rewardgym library list`).")) -> None:
    """Print a library program's source."""
    from rewardgym.llm_rewards.library import LibraryError, get_program

    try:
        entry = get_program(name)
    except (LibraryError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    sys.stdout.write(entry.source)


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

    spec = _task_or_fail(task)
    out = out or Path("demos") / f"{spec.short_name}.npz"
    try:
        with console.status(f"recording {episodes} demonstrations of {spec.id}") as status:
            demos = collect(spec.id, episodes=episodes, from_run=from_run, size=size, camera=camera, seed=seed,
                            after_success=after_success,
                            on_episode=lambda a, ok, n: status.update(
                                f"episode {a}: {'success' if ok else 'failed'} in {n} steps"))
    except (DemoError, ValueError) as exc:
        _fail(str(exc))
    demos.save(out)
    console.print(f"{demos}\nwrote {out} ({out.stat().st_size / 1e6:.1f} MB)", highlight=False)


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
    console.print(f"wrote {out}: use it as reward={out} or --shaping {out}", highlight=False)


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
            _print_model_report(PerceptualModel.load(path))
        else:
            console.print(repr(Demos.load(path)), highlight=False)
    except (DemoError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def version() -> None:
    """Print rewardgym's version."""
    from rewardgym import __version__

    console.print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
