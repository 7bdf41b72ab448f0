"""Occupancy-regularised PPO (ORPO) against deliberately hackable rewards, with and without it.

On ``rewardgym/Fetch-Reach-v0`` (success: gripper within 5 cm of a random goal):

1. a *reference* run: rewardgym PPO on the expert reward for ``--reference-steps`` (a decent,
   not perfect, policy: the "safe" policy of the Correlated Proxies paper);
2. for each hackable program of ``examples/hackable/`` (``fetch_reach_approach.py``: pays for
   approaching the goal, never for being there; ``fetch_reach_speed.py``: pays for hand
   speed), PPO from scratch on the program alone and with ``--regularize occupancy --reference
   <1> --reg-coef λ`` for each ``--coefs`` λ (default divergence chi2, ``--reference-transitions``
   pairs sampled from the reference's stochastic policy), ``--seeds`` seeds, ``--steps`` each;
3. each final policy is evaluated deterministically for ``--episodes`` episodes with the
   task's *expert* reward injected: success rate and true (expert) return.

Every finished run is one JSON line in ``--out/results.jsonl``; a rerun skips what is there
(resumable), then prints the table (mean ± std over seeds; the reference policy first).

    nice -n 10 python benchmarks/orpo.py [--steps 12288] [--reference-steps 12288] [--seeds 2]
                                         [--coefs 1.0] [--reference-transitions 5000] [--out runs/orpo]

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
    parser.add_argument("--reference-steps", type=int, default=12_288)
    parser.add_argument("--reference-transitions", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--coefs", type=float, nargs="+", default=[1.0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default="runs/orpo")
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
        train(TrainSpec(task=TASK, reward="expert", steps=args.reference_steps, num_envs=8, seed=0),
              runs_root=out, run_name="reference")
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
                                 checkpoint_every_s=600.0)
                if coef is not None:
                    spec.regularize, spec.reference, spec.reg_coef = "occupancy", str(reference), coef
                    spec.occupancy = {"reference_transitions": args.reference_transitions}
                if (out / name).exists():  # a run cut short by an earlier invocation: start it again
                    import shutil

                    shutil.rmtree(out / name)
                run = train(spec, runs_root=out, run_name=name)
                last = run.metrics()[-1]
                record({"name": name, "program": program, "coef": coef, "seed": seed, "steps": args.steps,
                        "train_proxy_return": last.get("episode_return"),
                        "train_penalty": last.get("terms/occupancy_penalty"), **_evaluate(run, args.episodes)})
    _table(done, args)


def _table(done: dict[str, dict], args: argparse.Namespace) -> None:
    def cell(values: list[float], fmt: str) -> str:
        arr = np.asarray(values, dtype=float)
        return f"{arr.mean():{fmt}} ± {arr.std():{fmt}}" if arr.size else "-"

    print(f"\n{TASK}: PPO {args.steps:,} steps per run, {args.seeds} seeds; reference = expert PPO "
          f"{args.reference_steps:,} steps, {args.reference_transitions:,} reference pairs; evaluation: {args.episodes} deterministic episodes, expert reward")
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
