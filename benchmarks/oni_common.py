"""Shared harness of the ONI benchmarks (``oni_minihack.py``, ``oni_nethack.py``).

Trains rewardgym's PPO with the extrinsic reward alone and with extrinsic + ONI (each reward
model), same steps and seeds, and reports the last-100-episode training metric (success
rate or in-game score gained) plus a learning-curve PNG. The annotator is the offline
embedding back-end unless an LLM endpoint is configured (``OPENAI_BASE_URL`` and
``REWARDGYM_LLM_MODEL``) and ``--annotator llm`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from rewardgym.runs.directory import RunDir
from rewardgym.runs.train import TrainSpec, train

# PPO for the NetHack network on a 2-core CPU: one intra-op thread (with two, the CNN's small
# ops wait on each other on a busy machine: ~10x slower), 16 envs x 128 steps, 4 epochs.
HYPER = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 4, "num_threads": 1, "ent_coef": 0.01}
VARIANTS = ("none", "retrieval", "classification", "ranking")


def parser(doc: str, steps: int, tasks: list[str], metric: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=tasks)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--beta", type=float, default=0.1, help="ONI intrinsic coefficient")
    p.add_argument("--annotator", default="embedding", choices=("embedding", "llm"))
    p.add_argument("--oni-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another OniOptions field (JSON value), e.g. count_exponent=2; repeatable")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--out", default=f"runs/oni_{metric}")
    p.add_argument("--plot", default=None, help="PNG path (default docs/img/oni_<name>.png)")
    return p


def oni_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--oni-option KEY=VALUE`` pairs as a dict (values parsed as JSON, else kept as text)."""
    from rewardgym.intrinsic.oni import OniOptions

    try:
        return OniOptions.parse_assignments(args.oni_option)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def run_one(task: str, extrinsic: str, variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (task, variant, seed) into ``args.out``; re-uses a finished run's result."""
    out = Path(args.out)
    name = f"{task.split('/')[1]}-{variant}-s{seed}"
    result_path = out / name / "bench_result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if (result.get("steps") == args.steps and result.get("annotator", "embedding") == args.annotator
                and result.get("oni_options", {}) == (oni_overrides(args) if variant != "none" else {})):
            return result
    oni = {} if variant == "none" else {"model": variant, "annotator": args.annotator, "beta": args.beta,
                                        "seed": seed, **oni_overrides(args)}
    spec = TrainSpec(task=task, reward=extrinsic, steps=args.steps, num_envs=args.num_envs, seed=seed, device="cpu",
                     hyperparams=dict(HYPER), checkpoint_every_s=600, intrinsic=None if variant == "none" else "oni",
                     oni=oni)
    if (out / name).exists():  # an interrupted earlier attempt
        import shutil

        shutil.rmtree(out / name)
    t0 = time.perf_counter()
    run = train(spec, runs_root=out, run_name=name)
    wall = time.perf_counter() - t0
    rows = run.metrics()
    last = rows[-1]
    result = {"task": task, "variant": variant, "seed": seed, "steps": args.steps, "wall_s": wall,
              "annotator": args.annotator, "beta": args.beta,
              "oni_options": oni_overrides(args) if variant != "none" else {},
              "success_rate": last.get("success_rate"), "env_return": last.get("env_return"),
              "oni_term": last.get("terms/oni"), "fps": args.steps / wall,
              "curve": [(r["global_step"], r.get("success_rate"), r.get("env_return")) for r in rows],
              "oni_stats": {k: v for k, v in last.items() if k.startswith("oni/")}}
    result_path.write_text(json.dumps(result))
    return result


def summarize(results: list[dict[str, Any]], key: str, label: str) -> str:
    """Markdown table: task | reward | metric mean ± std | per seed | steps/s | labels."""
    lines = [f"| task | reward | {label} (mean ± std) | per seed | steps/s | captions labelled |",
             "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in results):
        for variant in VARIANTS:
            rs = [r for r in results if r["task"] == task and r["variant"] == variant]
            if not rs:
                continue
            vals = [float(r[key]) if r[key] is not None else 0.0 for r in rs]
            name = "extrinsic only" if variant == "none" else f"extrinsic + ONI-{variant}"
            labelled = "" if variant == "none" else str(int(np.mean([r["oni_stats"].get("oni/labelled", 0) for r in rs])))
            lines.append(f"| {task.split('/')[1]} | {name} | {np.mean(vals):.3f} ± {np.std(vals):.3f} | "
                         f"{[round(v, 3) for v in vals]} | {np.mean([r['fps'] for r in rs]):.0f} | {labelled} |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], index: int, ylabel: str, path: Path) -> None:
    """Learning curves (mean over seeds, shaded min-max) per task, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for variant in VARIANTS:
            rs = [r for r in results if r["task"] == task and r["variant"] == variant]
            if not rs:
                continue
            grid = np.array([s for s, *_ in rs[0]["curve"]])
            ys = []
            for r in rs:
                steps = np.array([s for s, *_ in r["curve"]])
                vals = np.array([v[index - 1] if v[index - 1] is not None else np.nan for v in
                                 [c[1:] for c in r["curve"]]], dtype=float)
                ys.append(np.interp(grid, steps, np.nan_to_num(vals)))
            ys = np.array(ys)
            label = "extrinsic only" if variant == "none" else f"+ ONI-{variant}"
            ax.plot(grid, ys.mean(0), label=label)
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.15)
        ax.set_title(task.split("/")[1])
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(doc: str, name: str, tasks: list[str], extrinsic: str, steps: int, key: str, label: str) -> None:
    args = parser(doc, steps, tasks, name).parse_args()
    if args.annotator == "llm" and not os.environ.get("OPENAI_BASE_URL"):
        raise SystemExit("--annotator llm needs OPENAI_BASE_URL (and REWARDGYM_LLM_MODEL) to be set")
    results = []
    start = time.perf_counter()
    for task in args.tasks:
        for seed in range(args.seeds):
            for variant in args.variants:
                r = run_one(task, extrinsic, variant, seed, args)
                results.append(r)
                print(f"{task} {variant:14s} seed {seed}: {label} {r[key]}  ({r['wall_s']:.0f} s, "
                      f"{r['fps']:.0f} steps/s)", flush=True)
    print(f"\n{args.steps} env steps per run, {args.seeds} seeds, PPO {HYPER}, {args.num_envs} envs, "
          f"annotator {args.annotator}, beta {args.beta}, options {oni_overrides(args)}; {(time.perf_counter() - start) / 60:.1f} min\n")
    print(summarize(results, key, label))
    png = Path(args.plot or f"docs/img/oni_{name}.png")
    plot(results, 1 if key == "success_rate" else 2, label, png)
    (Path(args.out) / "results.json").write_text(json.dumps(results))
    print(f"\ncurves: {png}")
