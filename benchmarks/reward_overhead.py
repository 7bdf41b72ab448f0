"""What reward injection costs: env steps/s raw vs with the expert program injected.

Measured side by side in one run (interleaved blocks, median of repeats, ratios rather
than absolute times): a single env and a 16-env SyncVectorEnv, on HalfCheetah and a
Meta-World task; the expert program both isolated (the default for untrusted programs: in
its worker process, docs/SECURITY.md) and ``trusted=True`` (in-process), whose ratio is the
cost of isolation; then the prelude kernels (numba) vs a per-item Python reference on a
batch of 4096 (from ``benchmarks/prelude_kernels.py``).

    python benchmarks/reward_overhead.py            # full table (about 2 minutes quiet, 10+ loaded)
    python benchmarks/reward_overhead.py --quick    # fewer steps
    python benchmarks/reward_overhead.py --handoff  # only the hand-off table (below), ~30 s

The hand-off table isolates what one isolated call costs apart from the program: a
reward worker whose program does nothing (returns zeros for a batch of 16) is called
``--calls`` times, right after the previous reply (gap 0) and after the caller has
busy-waited 200 µs or 1 ms, as a vector env's physics makes it wait between steps. It
prints wall µs per call and CPU µs of the caller and of the worker per call.

Each overhead is given twice: wall-clock time and CPU time (this process plus its reward
workers, from ``/proc/PID/schedstat``), both over the bare env's. On a machine with more
runnable processes than cores the two differ for isolated programs: every reward call
wakes the worker and then waits for its reply, and each wake-up can cost the caller a
scheduler time slice. The CPU ratio is what the code costs; the wall ratio is what a
user sees on that machine. ``load`` is the 1-minute load average at the end of the row.

Where the time goes (issue 14): HalfCheetah, 16 envs, expert program isolated; CPU µs per
vector step from timing each stage with ``time.thread_time`` (the worker's from
``/proc/PID/schedstat``), before (aa4ed81) and after, two runs each, 2 shared cores at
load 5.5-5.8:

    stage                                           before        after
    SyncVectorEnv.step (16 x physics + TaskEnv)   1035-1480      915-930   the floor
    raw rows (dict per env + np.stack per key)      177-234        76-78   columns, cached MjData views
    success test + state view + freeze               48-74           36   one view per step
    isolated call, caller side                      317-623          106   AST walk per call, pickled
      of which ProgramWorker.call                   173-362           69   layout, JSON -> 3-byte request,
      of which send + wait for the reply             --            34   7-byte reply, 3 of 8 arrays
    rest of RewardComputer + vector wrapper           ~80          ~65   stats, info, conversions
    injection in the caller, total                 620-1046      281-297
    worker process (program, fields, IPC)           298-487      129-133   cold caches after each sleep

The floor of an isolated call is one pipe round trip: ~15-40 µs here with nothing else
in it, comparable to HalfCheetah's whole single-env step (~25-45 µs), so a single
HalfCheetah env cannot get within 25 % with a per-step process hand-off.

Targets (issue 14): injection costs at most 5 % of the raw vector-env step time at 16
envs and 25 % for one env (isolation on); kernels at least 20x faster than the per-item
reference.
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
    if reward == "expert" and trusted:
        # "expert" always resolves to an untrusted (isolated) program; the same file passed
        # as a path with trusted=True runs in-process: the reference for the isolation cost.
        from rewardgym.envs.registry import get_task

        reward = str(get_task(task_id).expert_path)
    if num_envs == 1:
        return gym.make(task_id, reward=reward, trusted=trusted)
    return gym.make_vec(task_id, num_envs=num_envs, reward=reward, trusted=trusted)


def _worker_pids(env) -> list[int]:
    """Process ids of the reward workers behind ``env`` (isolated programs), for their CPU time."""
    inner, pids = env, []
    while inner is not None:
        source = inner.__dict__.get("source")
        if source is not None:
            parts = [s for _, s in getattr(source, "parts", [])] or [source]
            pids += [p._worker.pid for p in parts if getattr(p, "_worker", None) is not None]
            break
        inner = inner.__dict__.get("env")
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process plus that of ``pids`` (``/proc/PID/schedstat``, nanoseconds)."""
    total = time.process_time()
    for pid in pids:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as fh:
            total += int(fh.read().split()[0]) * 1e-9
    return total


def _time_steps(env, actions: np.ndarray) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its reward workers) per step over ``actions``."""
    vector = isinstance(env, gym.vector.VectorEnv)
    pids = _worker_pids(env)
    cpu = _cpu_seconds(pids)
    start = time.perf_counter()
    for a in actions:
        if vector:
            env.step(a)
        else:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
    wall = time.perf_counter() - start
    return wall / len(actions), (_cpu_seconds(pids) - cpu) / len(actions)


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
                _time_steps(env, actions[: max(10, steps // 10)])  # warm-up (numba JIT, caches, the worker)
            times = {k: [] for k in envs}
            cpus = {k: [] for k in envs}
            for _ in range(repeats):  # interleave so drift hits all variants alike
                for k, env in envs.items():
                    wall, cpu = _time_steps(env, actions)
                    times[k].append(wall)
                    cpus[k].append(cpu)
            raw, raw_cpu = median(times["raw"]), median(cpus["raw"])
            row = {"case": name, "num_envs": num_envs, "raw steps/s": num_envs / raw, "load": os.getloadavg()[0]}
            for k in ("rewardgym env", "rewardgym expert", "rewardgym expert trusted"):
                t = median(times[k])
                row[f"{k} steps/s"] = num_envs / t
                row[f"{k} overhead"] = t / raw - 1.0
                row[f"{k} cpu overhead"] = median(cpus[k]) / raw_cpu - 1.0
            row["isolation cost"] = median(times["rewardgym expert"]) / median(times["rewardgym expert trusted"]) - 1.0
            row["isolation cpu cost"] = median(cpus["rewardgym expert"]) / median(cpus["rewardgym expert trusted"]) - 1.0
            rows.append(row)
            for env in envs.values():
                env.close()
    return rows


def _noop_runner():
    """A reward worker's runner whose program returns one zero per row (the hand-off alone)."""
    def run(fn_name, backend, cur, prev, action):
        return [], [np.zeros(len(cur["env_reward"]))]
    return run


def handoff_rows(batch: int = 16, gaps_us: tuple[int, ...] = (0, 200, 1000), calls: int = 1000,
                 repeats: int = 5) -> list[dict]:
    """Wall and CPU µs per isolated call of a no-op program after each gap (median of ``repeats``)."""
    from rewardgym.rewards.worker import ProgramLimits, ProgramWorker

    cur = {"env_reward": np.zeros(batch), "qpos": np.zeros((batch, 9))}
    worker = ProgramWorker(_noop_runner, "<hand-off>", ProgramLimits(), 4096, batch * 65)
    try:
        worker.call("compute_reward", "numpy", cur, None, None)
        rows = []
        for gap_us in gaps_us:
            samples = []
            for _ in range(repeats):
                wall = caller = 0.0
                before = _cpu_seconds([worker.pid]) - time.process_time()  # the worker's alone
                for _ in range(calls):
                    t_gap = time.perf_counter()
                    while time.perf_counter() - t_gap < gap_us * 1e-6:
                        pass  # the caller busy, as during physics: its core stays awake
                    c0, t0 = time.thread_time(), time.perf_counter()
                    worker.call("compute_reward", "numpy", cur, None, None)
                    wall += time.perf_counter() - t0
                    caller += time.thread_time() - c0
                worker_cpu = _cpu_seconds([worker.pid]) - time.process_time() - before
                samples.append((wall / calls, caller / calls, worker_cpu / calls))
            rows.append({"gap µs": gap_us, "call wall µs": 1e6 * median(s[0] for s in samples),
                         "caller CPU µs": 1e6 * median(s[1] for s in samples),
                         "worker CPU µs": 1e6 * median(s[2] for s in samples), "load": os.getloadavg()[0]})
        return rows
    finally:
        worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--handoff", action="store_true", help="only the hand-off table (an isolated no-op call)")
    parser.add_argument("--calls", type=int, default=1000, help="hand-off: calls per repeat")
    args = parser.parse_args()
    steps = args.steps or (200 if args.quick else 1000)
    repeats = args.repeats or (3 if args.quick else 7)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)  # the table is wide; a pipe must not truncate or wrap it
    htable = Table(title=f"Hand-off: an isolated no-op call, B=16, median of 5 x {args.calls}")
    for col in ("gap µs", "call wall µs", "caller CPU µs", "worker CPU µs", "load"):
        htable.add_column(col, justify="right")
    for r in handoff_rows(calls=args.calls):
        htable.add_row(*[f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()])
    if args.handoff:
        console.print(htable)
        return
    table = Table(title=f"Reward injection overhead (SyncVectorEnv, median of {repeats} x {steps} steps; "
                        f"overhead = wall time / CPU time over the bare env's)")
    for col in ("case", "envs", "raw steps/s", "rg env steps/s", "overhead wall/CPU", "rg expert steps/s",
                "overhead wall/CPU", "trusted expert steps/s", "overhead wall/CPU", "isolation cost wall/CPU",
                "load"):
        table.add_column(col, justify="right")
    for r in env_rows(steps, repeats):
        cells = [r["case"], str(r["num_envs"]), f"{r['raw steps/s']:.0f}"]
        for k in ("rewardgym env", "rewardgym expert", "rewardgym expert trusted"):
            cells += [f"{r[f'{k} steps/s']:.0f}",
                      f"{100 * r[f'{k} overhead']:+.1f}% / {100 * r[f'{k} cpu overhead']:+.1f}%"]
        cells += [f"{100 * r['isolation cost']:+.1f}% / {100 * r['isolation cpu cost']:+.1f}%", f"{r['load']:.1f}"]
        table.add_row(*cells)
    console.print(table)
    console.print(htable)

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
