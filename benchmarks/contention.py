"""Training speed on a busy machine: alone vs beside two CPU-burning processes, ONI on and off.

``rewardgym train``'s default PPO (``train()`` with a ``TrainSpec``, 8 envs, CPU) on a
MiniHack task, ``reward="env"`` and ``"env"`` + ONI (classification model, offline
embedding annotator: the annotation and refit threads run beside the learner). Each
variant runs twice in a row: *quiet* (nothing started beside it) and *busy* (this script
starts two ``while True: pass`` processes at the trainer's priority for the run, then
stops them). Reported: PPO's own steps/s (``fps`` of the last update: env steps since
``learn`` started over its wall time) and busy / quiet, whose target is at least 1/3 (two
burners take 2 of the 3 runnable threads' share of 2 cores; 1/3 is a fair share of one).

``--threads 2`` adds the learner with two torch threads, torch's own default on 2 cores
(what the NetHack network used before ``rewardgym.threads``), to show what the bound is for.

    python benchmarks/contention.py                  # ~6 min on 2 cores
    python benchmarks/contention.py --threads 2      # + the 2-thread learner
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=".*pkg_resources.*")

import rewardgym  # noqa: E402,F401  (registers ids)
from rewardgym.runs.train import TrainSpec, train  # noqa: E402

TASK = "rewardgym/MiniHack-KeyRoom-S5-v0"


def burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run(task: str, oni: bool, threads: int, steps: int, seed: int, root: str) -> float:
    spec = TrainSpec(task=task, reward="env", steps=steps, num_envs=8, seed=seed, device="cpu",
                     hyperparams={"num_threads": threads} if threads else {}, checkpoint_every_s=600,
                     intrinsic="oni" if oni else None, oni={"model": "classification"} if oni else {})
    run_dir = train(spec, runs_root=root, run_name=f"{'oni' if oni else 'env'}-{threads}-{time.time_ns()}")
    return float(run_dir.metrics()[-1]["fps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="*", default=[],
                        help="also run learners with these torch thread counts (default: the auto setting only)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as root:
        run(args.task, True, 0, 1024, 0, root)  # loads the caption encoder once, outside the timings
        for threads in [0, *args.threads]:
            for oni in (False, True):
                quiet = run(args.task, oni, threads, args.steps, 0, root)
                procs = burners(args.burners)
                try:
                    busy = run(args.task, oni, threads, args.steps, 0, root)
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
                rows.append({"threads": threads, "oni": oni, "quiet": quiet, "busy": busy})
                print(f"threads {threads or 'auto'} ONI {'on ' if oni else 'off'}: quiet {quiet:6.0f} steps/s, "
                      f"busy {busy:6.0f} steps/s", flush=True)
    print(f"\n{args.task}, {args.steps} steps per run, {args.burners} CPU burners, {os.cpu_count()} CPUs, "
          f"load average at start {load:.2f}\n")
    print("| learner torch threads | ONI | quiet steps/s | busy steps/s | busy / quiet |")
    print("|---|---|---|---|---|")
    for r in rows:
        name = "auto (1)" if r["threads"] == 0 else str(r["threads"])
        print(f"| {name} | {'on' if r['oni'] else 'off'} | {r['quiet']:.0f} | {r['busy']:.0f} | "
              f"{r['busy'] / r['quiet']:.2f} |")
    worst = min(r["busy"] / r["quiet"] for r in rows if r["threads"] == 0)
    print(f"\nworst busy / quiet of the default learner: {worst:.2f} (target >= 0.33: "
          f"{'met' if worst >= 1 / 3 else 'not met'})")


if __name__ == "__main__":
    main()
