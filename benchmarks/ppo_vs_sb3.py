"""rewardgym's PPO vs Stable-Baselines3's PPO: training speed and final return, side by side.

Both learners train on the same rewardgym task (same injected reward) with the same
hyper-parameters (SB3's PPO defaults with 8 environments):

    8 envs x 256 steps = 2048 per update, minibatch 64 (32 per epoch), 10 epochs,
    Adam lr 3e-4 constant (eps 1e-5), gamma 0.99, GAE lambda 0.95, clip 0.2, no value clipping,
    ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, advantages normalised per minibatch,
    tanh MLPs 64-64 (separate actor and critic, orthogonal init), log-std init 0,
    observation + reward normalisation (SB3: VecNormalize), 1 torch thread for both.

rewardgym's PPO runs twice: its default (``compile="auto"``: the update is compiled for a
run of 100k steps or more) and eager (``compile=False``). Reported per learner: env-steps/s
of the whole ``learn`` call (``steps/s``; compilation included: the first run in a fresh
process traces the graph, and torch's on-disk compile cache decides whether C++ is rebuilt,
see ``--cold-cache``), the same over the CPU time of this process and the compiler processes
it waited for (``CPU steps/s``, what a busy machine disturbs least), steady-state env-steps/s
after the first update (``steady``), the ratio of ``steps/s`` to SB3's, and the mean return
of the last 10 finished episodes (the injected reward), as mean +- std over seeds.

    python benchmarks/ppo_vs_sb3.py              # 100k steps x 3 seeds x 2 tasks (~10 min, 2 cores)
    python benchmarks/ppo_vs_sb3.py --quick      # smoke run
    python benchmarks/ppo_vs_sb3.py --cold-cache # compile caches start empty (the first run on a machine)
    python benchmarks/ppo_vs_sb3.py --steps 300000 --seeds 5 --tasks rewardgym/HalfCheetah-Run-v0:env
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: its CPU time is counted
if "--cold-cache" in sys.argv:  # must precede importing torch
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import rewardgym  # noqa: E402,F401  (registers ids)
from rewardgym.learners.ppo import PPO, PPOConfig  # noqa: E402

NUM_ENVS, NUM_STEPS, BATCH, EPOCHS, LR = 8, 256, 64, 10, 3e-4
TASKS = ["rewardgym/HalfCheetah-Run-v0:env", "rewardgym/MetaWorld-Reach-v0:expert"]


def _cpu() -> float:
    """CPU seconds of this process and of the children it waited for (the C++ compiler)."""
    return time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime \
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def run_rewardgym(task: str, reward: str, steps: int, seed: int, compile_: bool | str) -> dict[str, Any]:
    env = gym.make_vec(task, num_envs=NUM_ENVS, reward=reward)
    cfg = PPOConfig(num_envs=NUM_ENVS, num_steps=NUM_STEPS, num_minibatches=NUM_ENVS * NUM_STEPS // BATCH,
                    update_epochs=EPOCHS, learning_rate=LR, anneal_lr=False, clip_vloss=False, seed=seed,
                    device="cpu", num_threads=1, compile=compile_)
    marks: list[tuple[float, int]] = []
    start, cpu = time.perf_counter(), _cpu()
    agent = PPO(env, cfg).learn(steps, callback=lambda m: marks.append((time.perf_counter(), m["global_step"])))
    total, cpu = time.perf_counter() - start, _cpu() - cpu
    env.close()
    returns = [e["return"] for e in agent.episodes][-10:]
    steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else float("nan")
    return {"fps": agent.global_step / total, "cpu_fps": agent.global_step / cpu, "steady": steady,
            "return": float(np.mean(returns)) if returns else float("nan"), "steps": agent.global_step}


def run_sb3(task: str, reward: str, steps: int, seed: int) -> dict[str, Any]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    class Marks(BaseCallback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[float, int]] = []

        def _on_rollout_start(self) -> None:
            self.marks.append((time.perf_counter(), self.num_timesteps))

        def _on_step(self) -> bool:
            return True

    venv = VecNormalize(make_vec_env(lambda: gym.make(task, reward=reward), n_envs=NUM_ENVS, seed=seed), gamma=0.99)
    model = SB3PPO("MlpPolicy", venv, n_steps=NUM_STEPS, batch_size=BATCH, n_epochs=EPOCHS, learning_rate=LR,
                   gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                   seed=seed, device="cpu",
                   policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    marks = Marks()
    start, cpu = time.perf_counter(), _cpu()
    model.learn(steps, callback=marks)
    end, cpu = time.perf_counter(), _cpu() - cpu
    venv.close()
    returns = [e["r"] for e in model.ep_info_buffer][-10:]
    # steady state: from the start of the 2nd rollout (after the 1st update) to the end
    m = marks.marks
    steady = (model.num_timesteps - m[1][1]) / (end - m[1][0]) if len(m) > 1 else float("nan")
    return {"fps": model.num_timesteps / (end - start), "cpu_fps": model.num_timesteps / cpu, "steady": steady,
            "return": float(np.mean(returns)) if returns else float("nan"), "steps": model.num_timesteps}


def fmt(values: list[float], digits: int = 0) -> str:
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per learner and task")
    parser.add_argument("--tasks", nargs="+", default=TASKS, help="task:reward pairs")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (3 updates, 1 seed)")
    parser.add_argument("--no-eager", action="store_true", help="skip the compile=False runs")
    parser.add_argument("--cold-cache", action="store_true", help="start with empty torch compile caches")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 3 * NUM_ENVS * NUM_STEPS, 1
    torch.set_num_threads(1)

    learners = [("sb3", None), ("rewardgym", "auto")] + ([] if args.no_eager else [("rewardgym eager", False)])
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for spec in args.tasks:
        task, reward = spec.rsplit(":", 1)
        for seed in range(args.seeds):
            for name, compile_ in learners:
                out = (run_sb3(task, reward, args.steps, seed) if name == "sb3"
                       else run_rewardgym(task, reward, args.steps, seed, compile_))
                results.setdefault((spec, name), []).append(out)
                print(f"{spec:40s} {name:18s} seed {seed}: {out['fps']:7.0f} steps/s (CPU {out['cpu_fps']:7.0f}, "
                      f"steady {out['steady']:7.0f}), return {out['return']:9.2f}", flush=True)

    print(f"\n{args.steps} steps x {args.seeds} seeds; {NUM_ENVS} envs x {NUM_STEPS} steps, minibatch {BATCH}, "
          f"{EPOCHS} epochs, lr {LR}, 1 torch thread; compile caches {'cold' if args.cold_cache else 'as found'}; "
          f"load average at the end {os.getloadavg()[0]:.2f}\n")
    header = f"| {'task:reward':38s} | {'learner':15s} | {'steps/s':>13s} | {'CPU steps/s':>13s} | " \
             f"{'steady':>13s} | {'vs SB3':>6s} | {'CPU vs SB3':>10s} | {'return (last 10 ep.)':>20s} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for spec in args.tasks:
        base = np.mean([r["fps"] for r in results[(spec, "sb3")]])
        cpu_base = np.mean([r["cpu_fps"] for r in results[(spec, "sb3")]])
        for name, _ in learners:
            rows = results[(spec, name)]
            ratio = np.mean([r["fps"] for r in rows]) / base
            cpu_ratio = np.mean([r["cpu_fps"] for r in rows]) / cpu_base
            print(f"| {spec:38s} | {name:15s} | {fmt([r['fps'] for r in rows]):>13s} | "
                  f"{fmt([r['cpu_fps'] for r in rows]):>13s} | {fmt([r['steady'] for r in rows]):>13s} | "
                  f"{ratio:5.2f}x | {cpu_ratio:9.2f}x | {fmt([r['return'] for r in rows], 1):>20s} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({f"{k[0]}|{k[1]}": v for k, v in results.items()}, handle, indent=1)


if __name__ == "__main__":
    main()
