"""Perceptual rewards from 10 demonstrations vs sparse vs expert on Meta-World tasks.

For each task: record 10 demonstrations with Meta-World's scripted expert (64x64 frames
from the ``corner3`` camera), fit a perceptual reward (time-contrastive encoder trained on
the demos, K steps, per-step classifiers; ``rewardgym demos fit``), then train rewardgym's
PPO with three rewards at the same budget and seeds:

* ``sparse``      1 on success steps, else 0;
* ``perceptual``  progress through the discovered steps, read from camera frames only;
* ``sparse+perceptual-shaping``  sparse plus potential-based shaping with Φ = that progress
                  (γ = the agent's), which cannot change the sparse task's optimal policies;
* ``expert``      the task's expert dense reward (simulator state).

Prints the fit diagnostics and the success rate of the final policies (20 deterministic
episodes per run), and writes ``perceptual.png`` (training success against env steps).
Runs are resumable: finished runs (``eval.json``) are read back, not retrained.

    python benchmarks/perceptual.py [--steps 100000] [--seeds 3] [--workers 2] [--variants ...]
        [--tasks MetaWorld-DrawerClose MetaWorld-WindowClose MetaWorld-Reach]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np

VARIANTS = ("sparse", "perceptual", "sparse+perceptual-shaping", "expert")
TASKS = ("MetaWorld-DrawerClose", "MetaWorld-WindowClose", "MetaWorld-Reach")


def _fit(task: str, out: Path, demos: int, steps_k: int) -> dict:
    from rewardgym.perceptual import Demos, PerceptualModel, collect

    model_path = out / f"{task}.pt"
    if model_path.is_file():
        return PerceptualModel.load(model_path).report
    demos_path = out / f"{task}.npz"
    if not demos_path.is_file():
        collect(f"rewardgym/{task}-v0", episodes=demos, seed=0).save(demos_path)
    model = PerceptualModel.fit(Demos.load(demos_path), steps=steps_k, seed=0)
    model.save(model_path)
    return model.report


def _job(args: tuple) -> dict:
    task, variant, seed, steps, out = args
    import torch

    torch.set_num_threads(1)  # two trainings share two cores
    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.train import TrainSpec, train

    name = f"{task}-{variant}-s{seed}"
    if (out / name / "eval.json").is_file():
        report = json.loads((out / name / "eval.json").read_text())
    else:
        model = str(out / f"{task}.pt")
        reward = {"perceptual": model, "sparse+perceptual-shaping": "sparse"}.get(variant, variant)
        shaping = model if variant == "sparse+perceptual-shaping" else None
        run = train(TrainSpec(task=f"rewardgym/{task}-v0", reward=reward, shaping=shaping, steps=steps, num_envs=8,
                              seed=seed, device="cpu", checkpoint_every_s=120), runs_root=out, run_name=name)
        report = evaluate(run.path, episodes=20, seed=70_000 + seed)
    row = {"task": task, "variant": variant, "seed": seed, "success_rate": report["success_rate"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--demos", type=int, default=10)
    parser.add_argument("--k", type=int, default=3, help="steps to discover")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", default="runs/perceptual")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fits = {task: _fit(task, out, args.demos, args.k) for task in args.tasks}
    jobs = [(task, variant, seed, args.steps, out) for task in args.tasks for variant in args.variants
            for seed in range(args.seeds)]
    # spawn: workers must not inherit the parent's OpenGL contexts (demos were rendered here).
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(_job, jobs))
    print(f"\nPerceptual reward fits ({args.demos} scripted demonstrations, K={args.k}, progress on the demos)")
    print(f"{'task':<30} {'rank corr. with time':>22} {'progress start → end':>22}")
    for task, report in fits.items():
        print(f"{task:<30} {report['progress_rank_correlation']:>22.2f} "
              f"{report['progress_first']:>13.2f} → {report['progress_last']:.2f}")
    print(f"\nSuccess rate of the final policy, {args.steps} env steps, {args.seeds} seeds (mean ± std; per seed)")
    print(f"| task | " + " | ".join(args.variants) + " |\n|---|" + "---|" * len(args.variants))
    for task in args.tasks:
        cells = []
        for variant in args.variants:
            values = [r["success_rate"] for r in rows if r["task"] == task and r["variant"] == variant]
            cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
        print(f"| {task} | " + " | ".join(cells) + " |")
    _plot(out, args)


def plot_only(out: str, tasks: list[str], seeds: int = 3) -> None:
    """Redraw ``perceptual.png`` from finished runs (every variant found) without training."""
    _plot(Path(out), argparse.Namespace(tasks=tasks, seeds=seeds))


def _plot(out: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardgym.runs.directory import RunDir

    fig, axes = plt.subplots(1, len(args.tasks), figsize=(4.2 * len(args.tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], args.tasks):
        for variant, color in zip(VARIANTS, ("tab:orange", "tab:green", "tab:purple", "tab:blue")):
            for seed in range(args.seeds):
                if not (out / f"{task}-{variant}-s{seed}" / "eval.json").is_file():
                    continue  # not run (e.g. a variant left out with --variants)
                rows = [m for m in RunDir(out / f"{task}-{variant}-s{seed}").metrics()
                        if m.get("success_rate") is not None]
                ax.plot([m["global_step"] for m in rows], [m["success_rate"] for m in rows], color=color, alpha=0.8,
                        label=variant if seed == 0 else None)
        ax.legend(fontsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (training episodes)")
    fig.tight_layout()
    fig.savefig(out / "perceptual.png", dpi=100)
    print(f"\nwrote {out / 'perceptual.png'}")


if __name__ == "__main__":
    main()
