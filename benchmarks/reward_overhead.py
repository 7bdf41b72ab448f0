"""What reward injection costs: env steps/s raw vs with the expert program injected.

Measured side by side in one run (interleaved blocks, median of repeats, ratios rather
than absolute times): a single env and a 16-env SyncVectorEnv, on HalfCheetah and a
Meta-World task; the expert program both isolated (the default for untrusted programs: in
its worker process, docs/SECURITY.md) and ``trusted=True`` (in-process), whose ratio is the
cost of isolation; then the prelude kernels (numba) vs a per-item Python reference on a
batch of 4096 (from ``benchmarks/prelude_kernels.py``).

    python benchmarks/reward_overhead.py            # full table (about 2 minutes)
    python benchmarks/reward_overhead.py --quick    # fewer steps

Targets (issue: core): injection costs at most 5 % of the raw vector-env step time;
kernels at least 20x faster than the per-item reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("MUJOCO_GL", "osmesa")

import gymnasium as gym
import numpy as np

import rewardgym  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))

def _raw_halfcheetah() -> gym.Env:
    return gym.make("HalfCheetah-v5")


def _raw_metaworld_reach() -> gym.Env:
    # The same simulator env the task wraps, without rewardgym's TaskEnv and injection.
    from rewardgym.envs.families.metaworld import make_metaworld_base

    return make_metaworld_base("reach-v3")


CASES = [
    ("HalfCheetah", _raw_halfcheetah, "rewardgym/HalfCheetah-Run-v0"),
    ("Meta-World reach", _raw_metaworld_reach, "rewardgym/MetaWorld-Reach-v0"),
]


def _make(kind: str, raw_fn, task_id: str, num_envs: int, reward: str, trusted: bool = False):
    if kind == "raw":
        if num_envs == 1:
            return raw_fn()
        return gym.vector.SyncVectorEnv([raw_fn] * num_envs)
    if num_envs == 1:
        return gym.make(task_id, reward=reward, trusted=trusted)
    return gym.make_vec(task_id, num_envs=num_envs, reward=reward, trusted=trusted)


def _time_steps(env, actions: np.ndarray) -> float:
    """Seconds per step over ``actions`` (resets handled by the env's autoreset / here)."""
    vector = isinstance(env, gym.vector.VectorEnv)
    start = time.perf_counter()
    for a in actions:
        if vector:
            env.step(a)
        else:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
    return (time.perf_counter() - start) / len(actions)


def env_rows(steps: int, repeats: int) -> list[dict]:
    rows = []
    for name, raw_fn, task_id in CASES:
        for num_envs in (1, 16):
            kinds = {"raw": ("raw", "env", False), "rewardgym env": ("rg", "env", False),
                     "rewardgym expert": ("rg", "expert", False), "rewardgym expert trusted": ("rg", "expert", True)}
            envs = {k: _make(kind, raw_fn, task_id, num_envs, reward, trusted)
                    for k, (kind, reward, trusted) in kinds.items()}
            space = envs["raw"].action_space
            rng = np.random.default_rng(0)
            actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
            for env in envs.values():
                env.reset(seed=0)
                _time_steps(env, actions[: max(10, steps // 10)])  # warm-up (numba JIT, caches)
            times = {k: [] for k in envs}
            for _ in range(repeats):  # interleave so drift hits all variants alike
                for k, env in envs.items():
                    times[k].append(_time_steps(env, actions))
            raw = median(times["raw"])
            row = {"case": name, "num_envs": num_envs,
                   "raw steps/s": num_envs / raw}
            for k in ("rewardgym env", "rewardgym expert", "rewardgym expert trusted"):
                t = median(times[k])
                row[f"{k} steps/s"] = num_envs / t
                row[f"{k} overhead"] = t / raw - 1.0
            row["isolation cost"] = median(times["rewardgym expert"]) / median(times["rewardgym expert trusted"]) - 1.0
            rows.append(row)
            for env in envs.values():
                env.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (200 if args.quick else 1000)
    repeats = args.repeats or (3 if args.quick else 7)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)  # the table is wide; a pipe must not truncate it
    table = Table(title=f"Reward injection overhead (SyncVectorEnv, median of {repeats} x {steps} steps)")
    for col in ("case", "envs", "raw steps/s", "rg env steps/s", "overhead", "rg expert steps/s", "overhead",
                "trusted expert steps/s", "isolation cost"):
        table.add_column(col, justify="right")
    for r in env_rows(steps, repeats):
        table.add_row(r["case"], str(r["num_envs"]), f"{r['raw steps/s']:.0f}",
                      f"{r['rewardgym env steps/s']:.0f}", f"{100 * r['rewardgym env overhead']:+.1f}%",
                      f"{r['rewardgym expert steps/s']:.0f}", f"{100 * r['rewardgym expert overhead']:+.1f}%",
                      f"{r['rewardgym expert trusted steps/s']:.0f}", f"{100 * r['isolation cost']:+.1f}%")
    console.print(table)

    from prelude_kernels import kernel_rows

    krows = kernel_rows(4096)
    ktable = Table(title="Prelude kernels on a batch of 4096 (µs per call)")
    for col in list(krows[0]):
        ktable.add_column(col, justify="right")
    for r in krows:
        ktable.add_row(*[f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(ktable)


if __name__ == "__main__":
    main()
