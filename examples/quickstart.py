"""The main job on its default: inspect a task, check its expert reward, train, evaluate.

1. prints the task as an LLM would see it (instruction, success test, state view);
2. checks the expert reward program on random rollouts of the real simulator, in a
   child process with time and memory limits, and prints per-term statistics;
3. trains rewardgym's PPO on the injected reward into a run directory (metrics,
   checkpoints, learning curve), as ``rewardgym train`` does;
4. evaluates the trained policy on the task's success test, as ``rewardgym eval`` does,
   and prints the success rate next to what success means and the curve's start and end.

The default, Fetch-Reach with its expert reward, is solved by 100k steps (about two minutes
on 2 cores): the first result shows the toolkit working. Tasks whose success test needs far
more training (HalfCheetah-Run's 100 m) read 0.00 at this budget; the test is printed with
the rate so that reads as what it is.

    python examples/quickstart.py [--task rewardgym/Fetch-Reach-v0] [--steps 100000]
"""

from __future__ import annotations

import argparse

import rewardgym
from rewardgym.runs.evaluate import evaluate
from rewardgym.runs.train import TrainSpec, train
from rewardgym.rewards.check import check_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="rewardgym/Fetch-Reach-v0")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    task = rewardgym.get_task(args.task)

    print(task.describe(), "\n")
    print(check_program(task.expert_path, task.id, steps=100, num_envs=4).format(), "\n")

    def progress(row: dict) -> None:
        if row.get("episode_return") is not None and row["update"] % 10 == 0:
            print(f"  step {row['global_step']:>8,}  {row['fps']:>6,.0f} fps  return {row['episode_return']:9.1f}"
                  f"  success {row['success_rate']:.2f}")

    run = train(TrainSpec(task=task.id, reward="expert", steps=args.steps, num_envs=8, seed=0),
                runs_root=args.runs_dir, on_update=progress)
    report = evaluate(run.path, episodes=10)
    rows = [r for r in run.metrics() if r.get("success_rate") is not None]
    print(f"\n{task.id}, expert reward, rewardgym PPO, {args.steps:,} steps -> {run.path}")
    print(f"  success test: {task.success_doc}")
    if rows:
        print(f"  training success rate {rows[0]['success_rate']:.2f} at step {rows[0]['global_step']:,} -> "
              f"{rows[-1]['success_rate']:.2f} at step {rows[-1]['global_step']:,}")
    print(f"  evaluation ({report['episodes']} episodes, deterministic policy): success rate "
          f"{report['success_rate']:.2f}   return {report['return']['mean']:.1f} ± {report['return']['std']:.1f}"
          f"   env return {report['env_return']['mean']:.1f}")
    for name, stats in report["terms"].items():
        print(f"  term {name:<12} {stats['mean']:10.2f} ± {stats['std']:.2f}")
    print(f"  learning curve: {run.path / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
