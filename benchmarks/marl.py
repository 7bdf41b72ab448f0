"""Multi-agent tasks: throughput vs the bare PettingZoo env, and IPPO / MAPPO learning outcomes.

Part 1, throughput (``--part throughput``): env steps/s (one step = every agent acts) of the
bare PettingZoo parallel env (``mpe2``'s simple_spread_v3; gymnasium-robotics' MaMuJoCo
HalfCheetah 2x3) against rewardgym's ``make_parallel`` (the same PettingZoo API with the
injected reward) and the batched parameter-sharing vector env that training uses
(``gym.make_vec``, 8 copies), with ``reward="env"`` and the expert team reward (sandboxed, and
``trusted=True``); 8 bare envs stepped in a loop are the batched baseline. Interleaved
blocks, median of repeats.

Part 2, learning (``--part learning``): MAPPO and IPPO (rewardgym's PPO with shared
parameters, :mod:`rewardgym.learners.mappo`) with the expert team reward on MPE simple_spread
and on MaMuJoCo HalfCheetah 2x3, and single-agent PPO on the same robot
(``rewardgym/HalfCheetah-Run-v0``: the same HalfCheetah-v5 and the same reward, one agent
driving all six joints), at equal env-step budgets and seeds; each final policy is
evaluated on 10 deterministic episodes. Learning curves go to ``--plot``.

    python benchmarks/marl.py                                   # both parts, 3 seeds (2 seeds took ~2 h on 2 busy cores)
    python benchmarks/marl.py --part throughput
    python benchmarks/marl.py --part learning --tasks mpe --seeds 1 --scale 0.25
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("MUJOCO_GL", "osmesa")

import gymnasium as gym
import numpy as np

import rewardgym

MPE, CHEETAH = "rewardgym/MPE-SimpleSpread-v0", "rewardgym/MaMuJoCo-HalfCheetah-2x3-v0"

# MPE: MAPPO's MPE settings where the project's PPO has them (Yu et al. 2022, appendix: lr 7e-4,
# entropy 0.01, 10 epochs, few minibatches); MaMuJoCo and the single-agent robot: CleanRL's
# continuous-control defaults (PPOConfig), identical for the three learners.
MPE_HYPER = {"num_steps": 100, "num_minibatches": 4, "update_epochs": 10, "learning_rate": 7e-4, "ent_coef": 0.01}
RUNS = {
    "mpe": [(MPE, "mappo", MPE_HYPER), (MPE, "ippo", MPE_HYPER)],
    "cheetah": [(CHEETAH, "mappo", {}), (CHEETAH, "ippo", {}), ("rewardgym/HalfCheetah-Run-v0", "ppo", {})],
}
BUDGET = {"mpe": 200_000, "cheetah": 300_000}


# -- part 1: throughput ---------------------------------------------------------------------------------
def _bare(task_id: str):
    if task_id == MPE:
        from mpe2 import simple_spread_v3

        return simple_spread_v3.parallel_env(N=3, local_ratio=0.5, max_cycles=25)
    from gymnasium_robotics import mamujoco_v1

    return mamujoco_v1.parallel_env("HalfCheetah", "2x3")


def _dict_rate(env, steps: int) -> float:
    """Env steps/s of a PettingZoo ParallelEnv (bare or rewardgym's) under random actions."""
    env.reset(seed=0)
    actions = [{a: env.action_space(a).sample() for a in env.possible_agents} for _ in range(64)]
    start = time.perf_counter()
    for k in range(steps):
        env.step(actions[k % 64])
        if not env.agents:
            env.reset()
    return steps / (time.perf_counter() - start)


def _bare_batch_rate(task_id: str, copies: int, steps: int) -> float:
    envs = [_bare(task_id) for _ in range(copies)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    actions = [{a: envs[0].action_space(a).sample() for a in envs[0].possible_agents} for _ in range(64)]
    start = time.perf_counter()
    for k in range(steps // copies):
        for env in envs:
            env.step(actions[k % 64])
            if not env.agents:
                env.reset()
    return steps // copies * copies / (time.perf_counter() - start)


def _vector_rate(env, steps: int) -> float:
    """Env steps/s (copies x vector steps) of the agent vector env."""
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(64)]
    copies = env.num_envs // env.num_agents
    start = time.perf_counter()
    for k in range(steps // copies):
        env.step(actions[k % 64])
    return steps // copies * copies / (time.perf_counter() - start)


def throughput(repeats: int, steps: int) -> list[dict]:
    cases = []
    for task_id in (MPE, CHEETAH):
        cases += [
            (task_id, "bare PettingZoo", 1, "-", lambda t=task_id: _dict_rate(_bare(t), steps)),
            (task_id, "make_parallel", 1, "env", lambda t=task_id: _dict_rate(rewardgym.make_parallel(t), steps)),
            (task_id, "make_parallel", 1, "expert", lambda t=task_id: _dict_rate(
                rewardgym.make_parallel(t, reward="expert"), steps)),
            (task_id, "bare PettingZoo x8 (loop)", 8, "-", lambda t=task_id: _bare_batch_rate(t, 8, steps)),
            (task_id, "gym.make_vec (agents)", 8, "env", lambda t=task_id: _vector_rate(
                gym.make_vec(t, num_envs=8), steps)),
            (task_id, "gym.make_vec (agents)", 8, "expert", lambda t=task_id: _vector_rate(
                gym.make_vec(t, num_envs=8, reward="expert"), steps)),
            (task_id, "gym.make_vec (agents)", 8, "expert trusted", lambda t=task_id: _vector_rate(
                gym.make_vec(t, num_envs=8, reward="expert", trusted=True), steps)),
            (task_id, "gym.make_vec + global state", 8, "expert", lambda t=task_id: _vector_rate(
                gym.make_vec(t, num_envs=8, reward="expert", global_state=True), steps)),
        ]
    rates: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for _ in range(repeats):  # interleaved: every case sees the same machine load
        for i, case in enumerate(cases):
            rates[i].append(case[4]())
    rows = []
    for i, (task_id, kind, copies, reward, _) in enumerate(cases):
        rows.append({"task": task_id.split("/")[1], "env": kind, "copies": copies, "reward": reward,
                     "steps_per_s": median(rates[i])})
    bare = {(r["task"], r["copies"]): r["steps_per_s"] for r in rows if r["reward"] == "-"}
    print(f"\n{'task':<26} {'env':<28} {'copies':>6} {'reward':<15} {'env steps/s':>11} {'vs bare':>8}")
    for r in rows:
        ratio = r["steps_per_s"] / bare[(r["task"], r["copies"])]
        print(f"{r['task']:<26} {r['env']:<28} {r['copies']:>6} {r['reward']:<15} {r['steps_per_s']:>11.0f} "
              f"{ratio:>7.2f}x")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")
    return rows


# -- part 2: learning -------------------------------------------------------------------------------------
def learning(tasks: list[str], seeds: int, scale: float, out: Path) -> list[dict]:
    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.directory import RunDir
    from rewardgym.runs.train import TrainSpec, train

    results = []
    for group in tasks:
        steps = int(BUDGET[group] * scale)
        for task, algo, hyper in RUNS[group]:
            for seed in range(seeds):
                name = f"{task.split('/')[1]}-{algo}-s{seed}"
                start = time.perf_counter()
                if (out / name / "eval.json").is_file():
                    run, report = RunDir(out / name), json.loads((out / name / "eval.json").read_text())
                else:
                    run = train(TrainSpec(task=task, reward="expert", algo=algo, steps=steps, num_envs=8, seed=seed,
                                          device="cpu", hyperparams=hyper, checkpoint_every_s=300),
                                runs_root=out, run_name=name)
                    report = evaluate(run.path, episodes=10, seed=70_000 + seed)
                rows = [m for m in run.metrics() if m.get("episode_return") is not None]
                row = {"group": group, "task": task, "algo": algo, "seed": seed, "steps": steps,
                       "eval_return": report["return"]["mean"], "eval_env_return": report["env_return"]["mean"],
                       "eval_success": report["success_rate"], "train_return_first": rows[0]["episode_return"],
                       "train_return_last": float(np.mean([m["episode_return"] for m in rows[-5:]])),
                       "fps": float(np.median([m["fps"] for m in run.metrics()])),
                       "minutes": (time.perf_counter() - start) / 60}
                if "coverage" in report["terms"]:
                    row["eval_coverage"] = report["terms"]["coverage"]["mean"]
                results.append(row)
                print(json.dumps(row), flush=True)
    _table(results)
    return results


def _table(results: list[dict]) -> None:
    print(f"\n{'task':<28} {'algo':<6} {'steps':>8} {'eval return (mean ± std over seeds)':>36} {'env return':>18} "
          f"{'success':>8} {'first → last training return':>30} {'env steps/s':>11}")
    keys = sorted({(r["task"], r["algo"]) for r in results}, key=lambda k: [r["task"] for r in results].index(k[0]))
    for task, algo in keys:
        rs = [r for r in results if r["task"] == task and r["algo"] == algo]

        def ms(key: str) -> str:
            values = np.array([r[key] for r in rs])
            return f"{values.mean():.1f} ± {values.std():.1f}"

        print(f"{task.split('/')[1]:<28} {algo:<6} {rs[0]['steps']:>8} {ms('eval_return'):>36} "
              f"{ms('eval_env_return'):>18} {np.mean([r['eval_success'] for r in rs]):>8.2f} "
              f"{np.mean([r['train_return_first'] for r in rs]):>13.1f} → {np.mean([r['train_return_last'] for r in rs]):>12.1f}"
              f" {np.mean([r['fps'] for r in rs]):>11.0f}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")


def plot(out: Path, results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardgym.runs.directory import RunDir

    groups = [g for g in ("mpe", "cheetah") if any(r["group"] == g for r in results)]
    titles = {"mpe": "MPE simple_spread (3 agents), expert team reward",
              "cheetah": "HalfCheetah: MaMuJoCo 2x3 (2 agents) vs one agent, expert reward"}
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for task, algo in sorted({(r["task"], r["algo"]) for r in results if r["group"] == group}):
            curves = []
            for r in results:
                if (r["task"], r["algo"]) == (task, algo):
                    rows = [m for m in RunDir(out / f"{task.split('/')[1]}-{algo}-s{r['seed']}").metrics()
                            if m.get("episode_return") is not None]
                    curves.append((np.array([m["global_step"] for m in rows]),
                                   np.array([m["episode_return"] for m in rows])))
            grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), 60)
            values = np.stack([np.interp(grid, x, y) for x, y in curves])
            label = f"{algo.upper()} ({task.split('/')[1]})" if group == "cheetah" else algo.upper()
            ax.plot(grid, values.mean(0), label=f"{label}, {len(curves)} seeds")
            ax.fill_between(grid, values.min(0), values.max(0), alpha=0.2)
        ax.set_title(titles[group], fontsize=9)
        ax.set_xlabel("env steps (every agent acts once per step)")
        ax.set_ylabel("training episode return (per agent)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"learning curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["throughput", "learning", "both"], default="both")
    parser.add_argument("--tasks", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--repeats", type=int, default=5, help="throughput: interleaved repeats (median)")
    parser.add_argument("--steps", type=int, default=2000, help="throughput: env steps per measurement")
    parser.add_argument("--out", default="runs/marl")
    parser.add_argument("--plot", default="runs/marl/marl.png", help="learning curves (PNG)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part in ("throughput", "both"):
        (out / "throughput.json").write_text(json.dumps(throughput(args.repeats, args.steps), indent=2))
    if args.part in ("learning", "both"):
        results = learning(args.tasks, args.seeds, args.scale, out)
        (out / f"learning-{'-'.join(args.tasks)}.json").write_text(json.dumps(results, indent=2))
        # groups run by separate invocations (e.g. one per core) are plotted together
        every = {(r["task"], r["algo"], r["seed"]): r for f in sorted(out.glob("learning-*.json"))
                 for r in json.loads(f.read_text())}
        if len(every) > len(results):
            _table(list(every.values()))
        plot(out, list(every.values()), Path(args.plot))


if __name__ == "__main__":
    main()
