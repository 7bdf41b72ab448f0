"""The main job on its default: inspect a task, check its expert reward, train on it.

1. prints the task as an LLM would see it (instruction, success test, state view);
2. checks the expert reward program on random rollouts of the real simulator, in a
   child process with time and memory limits, and prints per-term statistics;
3. trains Stable-Baselines3 PPO on the injected reward and reports returns and success
   before and after training.

    python examples/quickstart.py [--task rewardgym/HalfCheetah-Run-v0] [--steps 20000]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import rewardgym
from rewardgym.rewards.check import check_program


def evaluate(model, task_id: str, episodes: int = 3, seed: int = 100) -> tuple[float, float, float]:
    """Mean injected return, env return and success over ``episodes`` deterministic episodes."""
    env = gym.make(task_id, reward="expert")
    returns, env_returns, successes = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        while True:
            action = model.predict(obs, deterministic=True)[0] if model else env.action_space.sample()
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                stats = info["episode_stats"]
                returns.append(stats["return"]); env_returns.append(stats["env_return"])
                successes.append(stats["success"])
                break
    env.close()
    return float(np.mean(returns)), float(np.mean(env_returns)), float(np.mean(successes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="rewardgym/HalfCheetah-Run-v0")
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    task = rewardgym.get_task(args.task)

    print(task.describe(), "\n")
    print(check_program(task.expert_path, task.id, steps=100, num_envs=4).format(), "\n")

    from stable_baselines3 import PPO

    before = evaluate(None, task.id)
    model = PPO("MlpPolicy", gym.make(task.id, reward="expert"), seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=args.steps, progress_bar=True)
    after = evaluate(model, task.id)
    print(f"\n{task.id}, expert reward, SB3 PPO {args.steps} steps")
    print(f"  random policy : return {before[0]:9.1f}  env return {before[1]:9.1f}  success {before[2]:.2f}")
    print(f"  trained policy: return {after[0]:9.1f}  env return {after[1]:9.1f}  success {after[2]:.2f}")


if __name__ == "__main__":
    main()
