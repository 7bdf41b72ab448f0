"""NetHack / MiniHack PPO training speed: today's default vs the version-1 setup, side by side.

Both learners run in this process, alternating (``--reps`` times), on the same vector env
(8 envs, ``reward="env"``), CPU:

* **v1** -- rewardgym's NetHack setup before issue 14, reproduced here as the reference:
  the version-1 encoder (a glyph embedding and two convolutions over the whole 21 x 79
  map, a 9 x 9 crop CNN without stride, ELU; copied below, frozen), ``PPOConfig``'s field
  defaults (256 steps per env, 32 minibatches of 64, 10 epochs) and torch's own thread
  count, which is what ``rewardgym train`` used for NetHack; MiniHack with MiniHack's own
  ``*_crop`` observation keys, which rewardgym requested then.
* **default** -- what ``rewardgym train TASK --reward env`` does now: the version-2
  encoder, the network's PPO defaults (``PPOConfig.for_space``), 1 torch thread.

Reported per (task, learner): env steps/s of the whole ``learn`` call, the share of it
spent collecting rollouts (env + policy inference) and in the update, and the speed-up.
The last column is the vector env alone with random actions (the ceiling).

    python benchmarks/nethack_throughput.py              # ~5 min on 2 cores
    python benchmarks/nethack_throughput.py --quick      # smoke run

``--learning`` compares learning per step instead: each learner trains ``--learn-steps``
env steps (default 200k) per seed on NetHack-Score and reports the mean return of the
last 100 finished episodes (PPO's episode window) at the end, per seed and averaged.
Each finished run is appended to ``--out`` (JSON lines), and runs already there are
skipped, so an interrupted comparison resumes where it stopped (~75 min on 2 cores):

    python benchmarks/nethack_throughput.py --learning --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=".*pkg_resources.*")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import rewardgym  # noqa: E402,F401  (registers ids)
from rewardgym.learners.nethack import NetHackActorCritic  # noqa: E402
from rewardgym.learners.policies import layer_init  # noqa: E402
from rewardgym.learners.ppo import PPO, PPOConfig  # noqa: E402

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before any learner changes it
TASKS = ["rewardgym/NetHack-Score-v0", "rewardgym/MiniHack-KeyRoom-S5-v0"]
V1_MINIHACK_KEYS = ("glyphs", "chars", "colors", "specials", "glyphs_crop", "chars_crop", "colors_crop",
                    "specials_crop", "blstats", "message", "inv_glyphs", "inv_strs", "inv_letters", "inv_oclasses")


class V1Encoder(nn.Module):
    """rewardgym's version-1 NetHack encoder, frozen as the reference (see the module docstring)."""

    def __init__(self, space: gym.spaces.Dict, embed_dim: int = 16, crop_size: int = 9, out_dim: int = 256):
        super().__init__()
        self.num_glyphs = int(np.max(space["glyphs"].high)) + 1
        self.use_crop_key = "glyphs_crop" in space.spaces
        self.crop_size = int(space["glyphs_crop"].shape[0]) if self.use_crop_key else crop_size
        self.use_message = "message" in space.spaces
        self.embed = nn.Embedding(self.num_glyphs + 1, embed_dim)
        self.map_cnn = nn.Sequential(
            layer_init(nn.Conv2d(embed_dim, 32, 3, stride=2, padding=1)), nn.ELU(),
            layer_init(nn.Conv2d(32, 32, 3, stride=2, padding=1)), nn.ELU(),
            nn.AdaptiveAvgPool2d((4, 8)), nn.Flatten(), layer_init(nn.Linear(32 * 4 * 8, 128)), nn.ELU())
        self.crop_cnn = nn.Sequential(
            layer_init(nn.Conv2d(embed_dim, 32, 3, padding=1)), nn.ELU(),
            layer_init(nn.Conv2d(32, 32, 3, padding=1)), nn.ELU(), nn.Flatten(),
            layer_init(nn.Linear(32 * self.crop_size * self.crop_size, 128)), nn.ELU())
        self.blstats_mlp = nn.Sequential(layer_init(nn.Linear(int(space["blstats"].shape[0]), 64)), nn.ELU(),
                                         layer_init(nn.Linear(64, 64)), nn.ELU())
        feat = 128 + 128 + 64
        if self.use_message:
            self.msg_embed = nn.Embedding(256, 16)
            self.msg_conv = nn.Sequential(layer_init(nn.Conv1d(16, 32, 3, padding=1)), nn.ELU())
            self.msg_fc = nn.Sequential(layer_init(nn.Linear(32, 32)), nn.ELU())
            feat += 32
        self.fc = nn.Sequential(layer_init(nn.Linear(feat, out_dim)), nn.ELU())
        self.out_dim = out_dim

    def crop(self, glyphs: torch.Tensor, blstats: torch.Tensor) -> torch.Tensor:
        r = self.crop_size // 2
        padded = nn.functional.pad(glyphs.long() + 1, (r, r, r, r))
        x = blstats[:, 0].long().clamp(0, glyphs.shape[2] - 1)
        y = blstats[:, 1].long().clamp(0, glyphs.shape[1] - 1)
        offs = torch.arange(self.crop_size, device=glyphs.device)
        rows = (y.unsqueeze(1) + offs).unsqueeze(2)
        cols = (x.unsqueeze(1) + offs).unsqueeze(1)
        return padded[torch.arange(glyphs.shape[0]).view(-1, 1, 1), rows, cols]

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        glyphs, blstats = obs["glyphs"], obs["blstats"]
        glyph_map = self.embed(glyphs.long() + 1).permute(0, 3, 1, 2)
        crop_ids = obs["glyphs_crop"].long() + 1 if self.use_crop_key else self.crop(glyphs, blstats)
        stats = blstats.to(torch.float32)
        stats = torch.sign(stats) * torch.log1p(stats.abs())
        parts = [self.map_cnn(glyph_map), self.crop_cnn(self.embed(crop_ids).permute(0, 3, 1, 2)),
                 self.blstats_mlp(stats)]
        if self.use_message:
            msg = obs["message"].long()
            h = self.msg_conv(self.msg_embed(msg).transpose(1, 2))
            present = (msg != 0).unsqueeze(1)
            pooled = torch.where(present, h, torch.full_like(h, -1e4)).amax(-1)
            parts.append(self.msg_fc(torch.where(present.any(-1), pooled, torch.zeros_like(pooled))))
        return self.fc(torch.cat(parts, -1))


class V1ActorCritic(NetHackActorCritic):
    ARCH = "nethack-1"

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, config: PPOConfig):
        super().__init__(observation_space, action_space, config, encoder=V1Encoder(observation_space))


def make_env(task: str, learner: str) -> gym.vector.VectorEnv:
    keys = {"observation_keys": V1_MINIHACK_KEYS} if learner == "v1" and "MiniHack" in task else {}
    return gym.make_vec(task, num_envs=8, reward="env", **keys)


def train(task: str, learner: str, steps: int, seed: int) -> dict[str, Any]:
    """Train one learner for ``steps`` env steps; steps/s, time shares and the final episode return."""
    env = make_env(task, learner)
    if learner == "v1":
        config = PPOConfig(num_envs=8, seed=seed, device="cpu", num_threads=TORCH_DEFAULT_THREADS)
        agent = PPO(env, config, policy=V1ActorCritic)  # PPO builds it under the seeded RNG
    else:
        agent = PPO(env, {"seed": seed, "device": "cpu"})
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    agent.learn(steps, callback=rows.append)
    wall = time.perf_counter() - start
    env.close()
    rollout, update = sum(r["time_rollout"] for r in rows), sum(r["time_update"] for r in rows)
    final = next((r["episode_return"] for r in reversed(rows) if r["episode_return"] is not None), None)
    return {"fps": agent.global_step / wall, "rollout": rollout / wall, "update": update / wall,
            "config": agent.config, "final_return": final}


def learning(task: str, steps: int, seeds: int, out: str) -> None:
    """Learning per step, v1 vs default, ``seeds`` seeds each; resumable through ``out`` (JSON lines)."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if os.path.exists(out):
        with open(out) as fh:
            for line in fh:
                row = json.loads(line)
                if row["task"] == task and row["steps"] == steps:
                    done[(row["learner"], row["seed"])] = row
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    for seed in range(seeds):
        for learner in ("v1", "default"):
            if (learner, seed) in done:
                continue
            res = train(task, learner, steps, seed)
            row = {"task": task, "steps": steps, "learner": learner, "seed": seed, "fps": res["fps"],
                   "final_return": res["final_return"], "load": os.getloadavg()[0]}
            with open(out, "a") as fh:  # one line per finished run: an interrupted comparison resumes
                fh.write(json.dumps(row) + "\n")
            done[(learner, seed)] = row
            print(f"{task} {learner:8s} seed {seed}: return {row['final_return']} at {steps} steps "
                  f"({row['fps']:.0f} steps/s)", flush=True)
    print(f"\n| {'learner':8s} | {'seed':>4s} | {'return (last 100 episodes)':>26s} | {'steps/s':>7s} |")
    print(f"|{'-' * 10}|{'-' * 6}|{'-' * 28}|{'-' * 9}|")
    for learner in ("v1", "default"):
        rows = [done[(learner, s)] for s in range(seeds)]
        for r in rows:
            print(f"| {learner:8s} | {r['seed']:4d} | {_fmt(r['final_return']):>26s} | {r['fps']:7.0f} |")
        finals = [r["final_return"] for r in rows if r["final_return"] is not None]
        print(f"| {learner:8s} | mean | {_fmt(np.mean(finals) if finals else None):>26s} | "
              f"{np.mean([r['fps'] for r in rows]):7.0f} |")


def _fmt(value: float | None) -> str:
    return "no episode finished" if value is None else f"{value:.2f}"


def env_only(task: str, seconds: float) -> float:
    env = make_env(task, "default")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.integers(0, env.single_action_space.n, env.num_envs))
        n += env.num_envs
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--reps", type=int, default=2, help="alternating repetitions per learner")
    parser.add_argument("--v1-steps", type=int, default=4096, help="env steps per v1 run (2 updates)")
    parser.add_argument("--steps", type=int, default=16384, help="env steps per default run (16 updates)")
    parser.add_argument("--quick", action="store_true", help="1 rep, 1 update each")
    parser.add_argument("--learning", action="store_true", help="compare learning per step instead (first task)")
    parser.add_argument("--learn-steps", type=int, default=200_000, help="--learning: env steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="--learning: seeds per learner")
    parser.add_argument("--out", default="runs/nethack_learning.jsonl", help="--learning: results (resumable)")
    args = parser.parse_args()
    if args.learning:
        learning(args.tasks[0], args.learn_steps, args.seeds, args.out)
        return
    if args.quick:
        args.reps, args.v1_steps, args.steps = 1, 2048, 1024
    load = os.getloadavg()[0]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ceiling: dict[str, float] = {}
    for task in args.tasks:
        ceiling[task] = env_only(task, 5.0)
        for rep in range(args.reps):
            for learner, steps in (("v1", args.v1_steps), ("default", args.steps)):
                out = train(task, learner, steps, seed=rep)
                results.setdefault((task, learner), []).append(out)
                print(f"{task} {learner:8s} rep {rep}: {out['fps']:7.0f} steps/s (rollout {100 * out['rollout']:.0f} %, "
                      f"update {100 * out['update']:.0f} %)", flush=True)
    cfg = results[(args.tasks[0], "default")][0]["config"]
    print(f"\nload average at start {load:.2f}; torch threads v1 {TORCH_DEFAULT_THREADS}, default {cfg.num_threads or 1}; "
          f"default PPO: {cfg.num_steps} steps x 8 envs, {cfg.num_minibatches} minibatches, {cfg.update_epochs} epochs\n")
    header = (f"| {'task':28s} | {'learner':8s} | {'steps/s':>8s} | {'rollout':>7s} | {'update':>6s} | "
              f"{'vs v1':>6s} | {'env alone':>9s} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for task in args.tasks:
        base = np.mean([r["fps"] for r in results[(task, "v1")]])
        for learner in ("v1", "default"):
            rows = results[(task, learner)]
            fps = np.mean([r["fps"] for r in rows])
            print(f"| {task.split('/')[1]:28s} | {learner:8s} | {fps:8.0f} | "
                  f"{100 * np.mean([r['rollout'] for r in rows]):6.0f}% | {100 * np.mean([r['update'] for r in rows]):5.0f}% | "
                  f"{fps / base:5.1f}x | {ceiling[task]:9.0f} |")


if __name__ == "__main__":
    main()
