"""What camera frames cost a perceptual reward: render time per frame and env steps/s.

Side by side in one process, on one Meta-World env (``corner3`` camera, 64x64):

* ms per frame rendered from the full model vs from :func:`rewardgym.envs.frames.render_model`'s
  copy with simplified meshes (``max_faces_per_mesh=1000``), no shadows, no multisampling;
* env steps/s with a state reward (``sparse``) vs the same env asked for a frame every step
  (what ``reward="model.pt"`` does; the perceptual model's own forward pass is not included).

    python benchmarks/frames.py [--task MetaWorld-DrawerClose] [--frames 300] [--steps 2000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")

import gymnasium as gym
import numpy as np

import rewardgym  # noqa: F401 - registers the ids
from rewardgym.envs.frames import FrameRenderer, FrameSpec


def _ms_per_frame(sim, spec: FrameSpec, frames: int) -> float:
    renderer = FrameRenderer(sim, spec)
    try:
        renderer.render()  # warm-up: GL context and buffers
        t0 = time.perf_counter()
        for _ in range(frames):
            renderer.render()
        return 1e3 * (time.perf_counter() - t0) / frames
    finally:
        renderer.close()


def _steps_per_s(task: str, steps: int, frames: FrameSpec | None) -> float:
    env = gym.make(task, reward="sparse")
    if frames is not None:
        env.get_wrapper_attr("task_env").require(frames=frames)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if frames is not None:
            env.get_wrapper_attr("task_env").raw_state()  # the reward reads the frame each step
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="MetaWorld-DrawerClose")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    task = rewardgym.get_task(args.task)
    spec = FrameSpec.for_family(task.family, size=64)
    env = gym.make(task.id, reward="sparse")
    env.reset(seed=0)
    sim = env.get_wrapper_attr("task_env").sim
    full = _ms_per_frame(sim, FrameSpec(**{**spec.as_dict(), "max_faces_per_mesh": None}), args.frames)
    simple = _ms_per_frame(sim, spec, args.frames)
    env.close()
    state = _steps_per_s(task.id, args.steps, None)
    pixels = _steps_per_s(task.id, args.steps, spec)
    print(f"{task.id}, camera {spec.camera!r}, {spec.height}x{spec.width}, MUJOCO_GL={os.environ['MUJOCO_GL']}\n")
    print("| measurement | value | ratio |\n|---|---|---|")
    print(f"| ms per frame, full meshes | {full:.2f} | 1.00 |")
    print(f"| ms per frame, simplified render model | {simple:.2f} | {simple / full:.2f} |")
    print(f"| env steps/s, state reward (sparse) | {state:.0f} | 1.00 |")
    print(f"| env steps/s, plus one frame per step | {pixels:.0f} | {pixels / state:.2f} |")


if __name__ == "__main__":
    main()
