"""ONI overhead: PPO training steps/s with ONI on vs off, and annotation throughput.

1. **Training steps/s**, side by side in one process, alternating off/on (``--reps``
   times): rewardgym's PPO on NetHackScore with ``reward="env"`` vs ``env`` + ONI
   (``--model``, offline embedding annotator), same steps and seed; steps/s is PPO's own
   ``fps`` (env steps / seconds since ``learn`` started, rollouts + updates). The packaged
   encoder is loaded once before the first run (its one-off load time is reported
   separately).
2. **Reward-source cost**: vector-env steps/s with random actions, ``env`` vs ``env + oni``.
3. **Annotation throughput** of the offline back-end: unique NetHack captions collected
   from random play, labelled through the asynchronous service from a cold embedding cache
   (captions/s, submit to idle).

    python benchmarks/oni_overhead.py            # ~5 min on 2 busy CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rewardgym  # noqa: E402,F401
from rewardgym.runs.train import TrainSpec, train  # noqa: E402
from rewardgym.intrinsic import AnnotationService, EmbeddingAnnotator, LabelStore  # noqa: E402
from rewardgym.intrinsic.encoder import CaptionEncoder, load_sentence_model  # noqa: E402

TASK = "rewardgym/NetHack-Score-v0"
HYPER = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 4, "num_threads": 1, "ent_coef": 0.01}


def training_fps(args) -> list[tuple[str, float]]:
    out = []
    for rep in range(args.reps):
        for variant in ("off", "on"):
            spec = TrainSpec(task=TASK, reward="env", steps=args.steps, num_envs=16, seed=rep, device="cpu",
                             hyperparams=dict(HYPER), checkpoint_every_s=600,
                             intrinsic="oni" if variant == "on" else None,
                             oni={"model": args.model} if variant == "on" else {})
            run = train(spec, runs_root=args.out, run_name=f"{variant}-{rep}-{time.time():.0f}")
            fps = float(np.mean([r["fps"] for r in run.metrics()[-1:]]))
            out.append((variant, fps))
            print(f"  rep {rep} ONI {variant:3s}: {fps:.0f} steps/s", flush=True)
    return out


def source_fps(args) -> dict[str, float]:
    res = {}
    for reward in ("env", "env + oni"):
        env = gym.make_vec(TASK, num_envs=16, reward=reward,
                           reward_kwargs={"oni": {"model": args.model, "store_path": ":memory:"}})
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(50):  # warm-up
            env.step(rng.integers(0, env.single_action_space.n, 16))
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            env.step(rng.integers(0, env.single_action_space.n, 16))
            n += 16
        res[reward] = n / (time.perf_counter() - t0)
        env.close()
    return res


def collect_captions(n_steps: int) -> list[str]:
    env = gym.make_vec(TASK, num_envs=16, reward="env")
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    seen: dict[str, None] = {}
    for _ in range(n_steps // 16):
        env.step(rng.integers(0, env.single_action_space.n, 16))
        for m in env.state.message:
            if m:
                seen.setdefault(m)
    env.close()
    return list(seen)


def annotation_throughput(captions: list[str]) -> float:
    annotator = EmbeddingAnnotator(encoder=CaptionEncoder())
    annotator.scores(["warm-up"])  # anchors encoded; the captions' cache stays cold
    store = LabelStore(":memory:", annotator.config)
    service = AnnotationService(annotator, store, batch_size=64)
    t0 = time.perf_counter()
    service.submit(captions)
    assert service.wait_idle(600)
    dt = time.perf_counter() - t0
    service.close()
    assert len(store) == len(captions)
    return len(captions) / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8192)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--model", default="classification")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", default="runs/oni_overhead")
    args = p.parse_args()
    t0 = time.perf_counter()
    load_sentence_model()
    load_s = time.perf_counter() - t0
    print(f"encoder load (once per process): {load_s:.1f} s")
    print("training steps/s (PPO, NetHackScore, 16 envs):")
    fps = training_fps(args)
    off = np.mean([f for v, f in fps if v == "off"])
    on = np.mean([f for v, f in fps if v == "on"])
    print("reward-source cost (random actions, 16 envs):")
    src = source_fps(args)
    captions = collect_captions(20_000)
    thr = annotation_throughput(captions)
    print(f"\n| measurement | ONI off | ONI on ({args.model}, embedding annotator) | slowdown |")
    print("|---|---|---|---|")
    print(f"| PPO training steps/s ({args.steps} steps x {args.reps} reps) | {off:.0f} | {on:.0f} | "
          f"{100 * (1 - on / off):.1f}% |")
    print(f"| vector-env steps/s, random actions | {src['env']:.0f} | {src['env + oni']:.0f} | "
          f"{100 * (1 - src['env + oni'] / src['env']):.1f}% |")
    print(f"\nannotation throughput, offline embedding annotator: {thr:.0f} captions/s "
          f"({len(captions)} unique NetHack captions from random play, cold cache, batches of 64)")


if __name__ == "__main__":
    main()
