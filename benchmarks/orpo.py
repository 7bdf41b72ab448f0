"""Occupancy-regularised PPO (ORPO) against deliberately hackable rewards, with and without it.

On ``rewardgym/Fetch-Reach-v0`` (success: gripper within 5 cm of a random goal):

1. a *reference* run: rewardgym PPO on the expert reward for ``--reference-steps`` with
   ``REFERENCE_HYPERPARAMS`` (one 1,024-step update at a low learning rate): a *safe but
   imperfect* policy, the paper's "safe policy" (there a behaviour-cloned or weaker policy).
   It must be imperfect: the agents start from it, so a reference that already solves the
   task would make every condition "win" by not moving. Its own success is the table's first row;
2. for each hackable program of ``examples/hackable/`` (``fetch_reach_approach.py``: pays for
   approaching the goal, never for being there; ``fetch_reach_speed.py``: pays for hand
   speed), PPO on the program alone and with ``--regularize occupancy --reference <1> --reg-coef
   λ`` for each ``--coefs`` λ (default divergence chi2, ``--reference-transitions`` pairs sampled
   from the reference's stochastic policy), ``--seeds`` seeds, ``--steps`` each. Every condition,
   the unregularised one included, starts from the reference's weights (``--init-from-reference``,
   as the paper's ORPO does), so the comparison is fair; ``--from-scratch`` starts all from a
   random policy instead (the earlier benchmark);
3. each final policy is evaluated deterministically for ``--episodes`` episodes with the
   task's *expert* reward injected: success rate and true (expert) return.

Every finished run is one JSON line in ``--out/results.jsonl`` (with its training curve); a rerun
skips what is there (resumable), then prints the table (mean ± std over seeds; the reference policy
first) and writes ``--out/curves.png``: training success (the stochastic policy's finished
episodes, the learner's window) against env steps, mean over seeds, one panel per program.

    nice -n 10 python benchmarks/orpo.py [--steps 12288] [--reference-steps 1024] [--seeds 2]
                                         [--coefs 0.1 1.0] [--reference-transitions 5000]
                                         [--from-scratch] [--out runs/orpo-init]

The defaults are sized for a shared 2-core machine (about 2 minutes per run there).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import gymnasium as gym
import numpy as np

from rewardgym.runs.directory import RunDir
from rewardgym.runs.evaluate import RunPolicy, evaluate_policy
from rewardgym.runs.train import TrainSpec, train

TASK = "rewardgym/Fetch-Reach-v0"
HACKABLE = Path(__file__).resolve().parent.parent / "examples" / "hackable"
PROGRAMS = ("fetch_reach_approach.py", "fetch_reach_speed.py")
REFERENCE_HYPERPARAMS = {"num_steps": 128, "learning_rate": 2e-4}
"""The reference's PPO: 1,024 steps are one update; the low learning rate keeps it imperfect."""


def _evaluate(run: RunDir, episodes: int) -> dict[str, float]:
    env = gym.make_vec(TASK, num_envs=1)
    try:
        policy = RunPolicy(run, env)
    finally:
        env.close()
    report = evaluate_policy(policy, TASK, episodes=episodes, seed=10_000, reward="expert")
    return {"success": report["success_rate"], "expert_return": report["return"]["mean"]}


def _done(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["name"]: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12_288)
    parser.add_argument("--reference-steps", type=int, default=1_024)
    parser.add_argument("--reference-transitions", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--coefs", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--from-scratch", action="store_true", help="start every run from a random policy")
    parser.add_argument("--out", default="runs/orpo-init")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = _done(results)

    def record(row: dict) -> None:
        with open(results, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        done[row["name"]] = row
        print(json.dumps(row), flush=True)

    reference = out / "reference"
    if not (reference / "checkpoints" / "final.pt").is_file():
        if reference.exists():  # cut short by an earlier invocation
            import shutil

            shutil.rmtree(reference)
        train(TrainSpec(task=TASK, reward="expert", steps=args.reference_steps, num_envs=8, seed=0,
                        hyperparams=dict(REFERENCE_HYPERPARAMS)), runs_root=out, run_name="reference")
    if "reference" not in done:
        record({"name": "reference", "program": "expert (reference)", "coef": None, "seed": 0,
                "steps": args.reference_steps, **_evaluate(RunDir(reference), args.episodes)})

    for program in PROGRAMS:
        for coef in [None, *args.coefs]:
            for seed in range(1, args.seeds + 1):
                name = f"{Path(program).stem}-{'none' if coef is None else f'orpo{coef:g}'}-s{seed}"
                if name in done:
                    continue
                spec = TrainSpec(task=TASK, reward=str(HACKABLE / program), steps=args.steps, num_envs=8, seed=seed,
                                 checkpoint_every_s=600.0, reference=str(reference),
                                 init_from_reference=not args.from_scratch)
                if args.from_scratch and coef is None:
                    spec.reference = None
                if coef is not None:
                    spec.regularize, spec.reference, spec.reg_coef = "occupancy", str(reference), coef
                    spec.occupancy = {"reference_transitions": args.reference_transitions}
                if (out / name).exists():  # a run cut short by an earlier invocation: start it again
                    import shutil

                    shutil.rmtree(out / name)
                run = train(spec, runs_root=out, run_name=name)
                last = run.metrics()[-1]
                record({"name": name, "program": program, "coef": coef, "seed": seed, "steps": args.steps,
                        "init": "scratch" if args.from_scratch else "reference",
                        "train_proxy_return": last.get("episode_return"),
                        "train_penalty": last.get("terms/occupancy_penalty"), **_evaluate(run, args.episodes),
                        "curve": [[m["global_step"], m.get("success_rate")] for m in run.metrics()]})
    _table(done, args)
    print(f"curves: {_curves(done, args, out / 'curves.png')}")


def _curves(done: dict[str, dict], args: argparse.Namespace, path: Path) -> Path:
    """Training success against env steps, mean over seeds, one panel per program (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardgym.files import save_figure

    fig, axes = plt.subplots(1, len(PROGRAMS), figsize=(5.5 * len(PROGRAMS), 4), sharey=True)
    ref = done.get("reference")
    for ax, program in zip(axes, PROGRAMS):
        for coef in [None, *args.coefs]:
            rows = [r for r in done.values()
                    if r.get("program") == program and r.get("coef") == coef and r.get("curve")]
            if not rows:
                continue
            steps = [s for s, _ in rows[0]["curve"]]
            values = np.array([[np.nan if v is None else v for _, v in r["curve"]][:len(steps)] for r in rows], float)
            ax.plot(steps, np.nanmean(values, axis=0), marker="o", ms=3,
                    label=f"{'no regulariser' if coef is None else f'ORPO λ={coef:g}'} (n={len(rows)})")
        if ref:
            ax.axhline(ref["success"], color="grey", ls="--", label="reference (deterministic eval)")
        ax.set_title(Path(program).stem)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training success rate (stochastic policy)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[-1].legend(fontsize=8)
    start = "from the reference's weights" if not args.from_scratch else "from scratch"
    fig.suptitle(f"{TASK}: PPO on hackable proxies, {start}; mean over seeds")
    fig.tight_layout()
    return save_figure(fig, path)


def _table(done: dict[str, dict], args: argparse.Namespace) -> None:
    def cell(values: list[float], fmt: str) -> str:
        arr = np.asarray(values, dtype=float)
        return f"{arr.mean():{fmt}} ± {arr.std():{fmt}}" if arr.size else "-"

    start = "from scratch" if args.from_scratch else "initialised from the reference"
    print(f"\n{TASK}: PPO {args.steps:,} steps per run, {start}, {args.seeds} seeds; reference = expert PPO "
          f"{args.reference_steps:,} steps ({REFERENCE_HYPERPARAMS}), {args.reference_transitions:,} reference pairs; "
          f"evaluation: {args.episodes} deterministic episodes, expert reward")
    print(f"| {'proxy reward':<26} | {'regulariser':<16} | {'success':<13} | {'expert return':<15} | "
          f"{'proxy return (train)':<20} |")
    print(f"|{'-' * 28}|{'-' * 18}|{'-' * 15}|{'-' * 17}|{'-' * 22}|")
    ref = done.get("reference")
    if ref:
        print(f"| {'expert (the reference)':<26} | {'-':<16} | {cell([ref['success']], '.2f'):<13} | "
              f"{cell([ref['expert_return']], '.1f'):<15} | {'-':<20} |")
    for program in PROGRAMS:
        for coef in [None, *args.coefs]:
            rows = [r for r in done.values() if r.get("program") == program and r.get("coef") == coef]
            if not rows:
                continue
            label = "none" if coef is None else f"ORPO chi2 λ={coef:g}"
            print(f"| {Path(program).stem:<26} | {label:<16} | {cell([r['success'] for r in rows], '.2f'):<13} | "
                  f"{cell([r['expert_return'] for r in rows], '.1f'):<15} | "
                  f"{cell([r['train_proxy_return'] for r in rows if r['train_proxy_return'] is not None], '.1f'):<20} |")


if __name__ == "__main__":
    main()
