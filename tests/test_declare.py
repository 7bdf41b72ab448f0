"""Any Gymnasium env becomes a task: declared fields, a generic view, and the whole toolchain
(describe, check, train, eval) on it; bad declarations name the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rewardgym
from rewardgym import TaskField

CLI = [sys.executable, "-m", "rewardgym.cli.main"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PENDULUM_TASKS = '''
import numpy as np
import rewardgym
from rewardgym import TaskField

rewardgym.register_task(
    "Pendulum-Upright", env="Pendulum-v1",
    instruction="Swing the pendulum up and hold it upright.",
    fields=[TaskField("angle", "(B,)", "rad", "Pole angle from upright, in (-pi, pi].",
                      lambda env: (env.unwrapped.state[0] + np.pi) % (2 * np.pi) - np.pi),
            TaskField("angular_velocity", "(B,)", "rad/s", "Pole angular velocity.",
                      lambda env: env.unwrapped.state[1])],
    success=lambda s: np.abs(s.angle) < 0.1, success_doc="|angle| < 0.1 rad")
'''

UPRIGHT = '''
def compute_reward(state, action):
    upright = np.cos(state.angle)
    still = -0.1 * state.angular_velocity ** 2
    return upright + still, {"upright": upright, "still": still}
'''


@pytest.fixture(autouse=True)
def _forget(forget_declared_tasks):
    """Tasks declared by a test do not outlive it (conftest's forget_declared_tasks)."""


def _declare_pendulum(name: str = "Test-PendulumUpright"):
    return rewardgym.register_task(
        name, env="Pendulum-v1", instruction="Swing up and balance.", replace=True,
        fields=[TaskField("angle", "(B,)", "rad", "Angle from upright.",
                          lambda env: (env.unwrapped.state[0] + np.pi) % (2 * np.pi) - np.pi),
                TaskField("angular_velocity", "(B,)", "rad/s", "Angular velocity.", lambda env: env.unwrapped.state[1])],
        success=lambda s: np.abs(s.angle) < 0.1, success_doc="|angle| < 0.1 rad")


def test_a_declared_task_is_a_gymnasium_id_with_a_view(tmp_path):
    spec = _declare_pendulum()
    assert spec.id == "rewardgym/Test-PendulumUpright-v0" and "angle" in spec.view.fields
    program = tmp_path / "upright.py"
    program.write_text(UPRIGHT)
    env = gym.make_vec(spec.id, num_envs=2, reward=str(program))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    angle = env.state.angle
    np.testing.assert_allclose(info["reward_terms"]["upright"], np.cos(angle))
    assert reward.shape == (2,) and "angle" in spec.describe()
    env.close()


def test_generic_view_for_an_env_nobody_described():
    spec = rewardgym.register_task("Test-CartPoleGeneric", env="CartPole-v1", instruction="Balance the pole.",
                                   replace=True)
    assert "obs" in spec.view.fields and spec.view.fields["obs"].shape == "(B, 4)"
    env = gym.make(spec.id, reward="env")
    obs, _ = env.reset(seed=0)
    env.step(0)
    np.testing.assert_allclose(env.get_wrapper_attr("state").prev.obs[0], obs)
    env.close()


def test_bad_declarations_name_the_field():
    with pytest.raises(ValueError, match="field 'success' shadows the common field"):
        rewardgym.register_task("Test-Bad1", env="Pendulum-v1", instruction="x", replace=True,
                                fields=[TaskField("success", "(B,)", "bool", "s", lambda env: True)])
    with pytest.raises(ValueError, match="field name 'shape' shadows an attribute of arrays"):
        rewardgym.register_task("Test-Bad2", env="Pendulum-v1", instruction="x", replace=True,
                                fields=[TaskField("shape", "(B,)", "-", "s", lambda env: 1.0)])
    with pytest.raises(ValueError, match="declares fields twice"):
        rewardgym.register_task("Test-Bad3", env="Pendulum-v1", instruction="x", replace=True,
                                fields=[TaskField("a", "(B,)", "-", "a", lambda e: 1.0)] * 2)
    with pytest.raises(ValueError, match="field 'a': shape '\\(3,\\)' must read"):
        rewardgym.register_task("Test-Bad4", env="Pendulum-v1", instruction="x", replace=True,
                                fields=[TaskField("a", "(3,)", "-", "a", lambda e: 1.0)])
    _declare_pendulum("Test-Dup")
    with pytest.raises(ValueError, match="rewardgym/Test-Dup-v0' is already declared"):
        rewardgym.register_task("Test-Dup", env="Pendulum-v1", instruction="x",
                                fields=[TaskField("a", "(B,)", "-", "a", lambda e: 1.0)])
    spec = rewardgym.register_task("Test-WrongShape", env="Pendulum-v1", instruction="x", replace=True,
                                   fields=[TaskField("a", "(B, 3)", "-", "a", lambda e: np.zeros(2))])
    with pytest.raises(ValueError, match="field 'a' reader returned shape \\(2,\\), but the field is declared"):
        gym.make(spec.id, reward="env").reset(seed=0)


def _cli(*args, **kwargs):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"}, **kwargs)


def test_describe_check_train_and_eval_a_user_task_from_the_command_line(tmp_path):
    tasks = tmp_path / "my_tasks.py"
    tasks.write_text(PENDULUM_TASKS)
    program = tmp_path / "upright.py"
    program.write_text(UPRIGHT)
    described = _cli("--tasks", str(tasks), "describe", "Pendulum-Upright", "--no-prelude")
    assert described.returncode == 0 and "angular_velocity" in described.stdout, described.stderr
    checked = _cli("--tasks", str(tasks), "check", str(program), "--task", "Pendulum-Upright", "--steps", "20")
    assert checked.returncode == 0 and "upright" in checked.stdout, checked.stderr
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_steps": 64, "num_minibatches": 2, "update_epochs": 1}))
    trained = _cli("--tasks", str(tasks), "train", "Pendulum-Upright", "--reward", str(program), "--steps", "256",
                   "--num-envs", "2", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--name", "r")
    assert trained.returncode == 0, trained.stderr
    evaluated = _cli("--tasks", str(tasks), "eval", str(tmp_path / "runs" / "r"), "--episodes", "1")
    assert evaluated.returncode == 0 and "term upright" in evaluated.stdout, evaluated.stderr
    missing = _cli("describe", "Pendulum-Upright")  # without --tasks the id is unknown, with a hint
    assert missing.returncode == 2 and "unknown task" in missing.stderr


def test_the_readme_robot_example_is_a_task_with_an_expert():
    env_vars = {**os.environ, "REWARDGYM_TASKS": str(EXAMPLES / "my_robot.py")}
    code = textwrap.dedent('''
        import gymnasium as gym, numpy as np, rewardgym
        env = gym.make_vec("rewardgym/PlanarArm-Reach-v0", num_envs=2, reward="expert")
        env.reset(seed=0)
        _, r, _, _, info = env.step(np.zeros((2, 2), dtype=np.float32))
        assert set(k for k in info["reward_terms"] if not k.startswith("_")) == {"reach", "on_target", "still", "ctrl"}
        print("ok", r.shape)
    ''')
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env_vars)
    assert run.returncode == 0 and "ok (2,)" in run.stdout, run.stderr


def test_synthesize_designs_a_reward_for_a_user_task(tmp_path):
    """The designer sees the declared view; the candidate reads its fields; the loop trains it."""
    from rewardgym.testing.openai_server import ScriptedOpenAIServer

    tasks = tmp_path / "my_tasks.py"
    tasks.write_text(PENDULUM_TASKS)
    reply = "Here is a reward.\n\n```python\n" + UPRIGHT.strip() + "\n```\n"
    with ScriptedOpenAIServer([{"text": reply, "match": "angular_velocity", "repeat": True}]) as server:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa",
               "REWARDGYM_LLM_CACHE": str(tmp_path / "llm-cache")}
        result = subprocess.run(CLI + ["--tasks", str(tasks), "synthesize", "Pendulum-Upright", "--base-url",
                                       server.base_url, "--model", server.model, "--api-key", server.api_key,
                                       "--runs-dir", str(tmp_path / "runs"), "--name", "s", "--rounds", "1",
                                       "--samples", "1", "--steps", "256", "--num-envs", "1", "--eval-episodes", "1",
                                       "--check-timeout", "30"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "state.angle" in (tmp_path / "runs" / "s" / "best_reward.py").read_text()
