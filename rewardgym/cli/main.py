"""The ``rewardgym`` command line (typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="rewardgym",
    help="Reward design for RL on real simulators: list tasks, read their state views, "
         "check reward programs.",
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


@app.command()
def version() -> None:
    """Print rewardgym's version."""
    from rewardgym import __version__

    console.print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
