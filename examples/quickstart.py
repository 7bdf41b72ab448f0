"""The main job on its default: inspect a task, check its expert reward, train, evaluate.

1. prints the task as an LLM would see it (instruction, success test, state view);
2. checks the expert reward program on random rollouts of the real simulator, in a
   child process with time and memory limits, and prints per-term statistics;
3. trains rewardgym's PPO on the injected reward into a run directory (metrics,
   checkpoints, learning curve), as ``rewardgym train`` does;
4. evaluates the trained policy on the task's success test, as ``rewardgym eval`` does.

    python examples/quickstart.py [--task rewardgym/HalfCheetah-Run-v0] [--steps 100000]
"""

from __future__ import annotations

import argparse

import rewardgym
from rewardgym.agents.evaluate import evaluate
from rewardgym.agents.train import TrainSpec, train
from rewardgym.rewards.check import check_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="rewardgym/HalfCheetah-Run-v0")
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
    report = evaluate(run.path, episodes=5)
    print(f"\n{task.id}, expert reward, rewardgym PPO, {args.steps:,} steps -> {run.path}")
    print(f"  success rate {report['success_rate']:.2f}   return {report['return']['mean']:.1f} "
          f"± {report['return']['std']:.1f}   env return {report['env_return']['mean']:.1f}")
    for name, stats in report["terms"].items():
        print(f"  term {name:<12} {stats['mean']:10.2f} ± {stats['std']:.2f}")
    print(f"  learning curve: {run.path / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
