"""Potential-based shaping on a sparse task: sparse vs sparse + shaping vs expert dense.

Trains rewardgym's PPO on ``rewardgym/MetaWorld-Reach-v0`` (success: hand within 5 cm of a
random goal) with three rewards at the same budget and seeds:

* ``sparse``            1 on success steps, else 0;
* ``sparse + shaping``  plus F = γ·Φ(s') − Φ(s), Φ = the expert program's ``compute_potential``
                        (γ = the agent's; optimal policies of the sparse task are unchanged);
* ``expert``            the expert dense reward.

Prints the success rate of the final policies (20 deterministic episodes per run) and
writes ``shaping.png`` (training success rate against env steps).

    python benchmarks/shaping.py [--steps 150000] [--seeds 3] [--task rewardgym/MetaWorld-Reach-v0]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np

from rewardgym.runs.evaluate import evaluate
from rewardgym.runs.directory import RunDir
from rewardgym.runs.train import TrainSpec, train

VARIANTS = [("sparse", "sparse", None), ("sparse+shaping", "sparse", "expert"), ("expert", "expert", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="rewardgym/MetaWorld-Reach-v0")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/shaping")
    args = parser.parse_args()
    out = Path(args.out)
    results: dict[str, list[float]] = {}
    for label, reward, shaping in VARIANTS:
        for seed in range(args.seeds):
            name = f"{label}-s{seed}"
            if (out / name / "eval.json").is_file():
                report = json.loads((out / name / "eval.json").read_text())
            else:
                run = train(TrainSpec(task=args.task, reward=reward, shaping=shaping, steps=args.steps, num_envs=8,
                                      seed=seed, device="cpu", checkpoint_every_s=120), runs_root=out, run_name=name)
                report = evaluate(run.path, episodes=20, seed=70_000 + seed)
            results.setdefault(label, []).append(report["success_rate"])
            print(json.dumps({"variant": label, "seed": seed, "success_rate": report["success_rate"]}), flush=True)
    print(f"\n{args.task}, {args.steps} steps, {args.seeds} seeds")
    print(f"{'reward':<16} {'success (mean ± std)':>22}  per seed")
    for label, values in results.items():
        print(f"{label:<16} {np.mean(values):>14.2f} ± {np.std(values):.2f}  {values}")
    _plot(out, args)


def _plot(out: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (label, _, _), color in zip(VARIANTS, ("tab:orange", "tab:green", "tab:blue")):
        for seed in range(args.seeds):
            rows = [m for m in RunDir(out / f"{label}-s{seed}").metrics() if m.get("success_rate") is not None]
            ax.plot([m["global_step"] for m in rows], [m["success_rate"] for m in rows], color=color, alpha=0.8,
                    label=label if seed == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (training episodes)")
    ax.set_title(args.task.split("/")[1], fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "shaping.png", dpi=100)


if __name__ == "__main__":
    main()
