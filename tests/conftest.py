"""Shared fixtures. ``cartpole_task`` is a real (classic-control) task built in the test
so that the injection machinery can be tested fast and independently of the big simulators."""

from __future__ import annotations

import os
import subprocess
import threading

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym
import numpy as np
import pytest

import rewardgym  # noqa: F401  (registers ids)
from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, ViewSpec, raw


class CartPoleTaskEnv(TaskEnv):
    def read_raw(self) -> dict:
        x, x_dot, theta, theta_dot = self.env.unwrapped.state
        return {"x": float(x), "x_dot": float(x_dot), "theta": float(theta), "theta_dot": float(theta_dot)}


CARTPOLE_VIEW = ViewSpec.build("cartpole", "Cart-pole for tests.", [
    Field("x", "(B,)", "m", "Cart position.", raw("x")),
    Field("theta", "(B,)", "rad", "Pole angle from upright.", raw("theta")),
    Field("x_dot", "(B,)", "m/s", "Cart velocity.", raw("x_dot")),
    Field("theta_dot", "(B,)", "rad/s", "Pole angular velocity.", raw("theta_dot")),
])


def _make_cartpole(render_mode=None, state_in_info=False, **kwargs) -> TaskEnv:
    return CartPoleTaskEnv(gym.make("CartPole-v1", render_mode=render_mode, **kwargs), CARTPOLE_TASK,
                           state_in_info=state_in_info)


CARTPOLE_TASK = TaskSpec(
    id="rewardgym/Test-CartPole-v0", family="test", base_id="CartPole-v1",
    instruction="Keep the pole upright near the centre.",
    success_doc="|theta| < 0.05 rad and |x| < 0.5 m.",
    success=lambda s: (np.abs(s.theta) < 0.05) & (np.abs(s.x) < 0.5),
    view=CARTPOLE_VIEW, make_env=_make_cartpole, max_episode_steps=500)


@pytest.fixture
def cartpole_task() -> TaskSpec:
    return CARTPOLE_TASK


@pytest.fixture
def forget_declared_tasks():
    """Tasks a test declares (``rewardgym.register_task``) do not outlive it: other tests iterate
    over every registered task."""
    from rewardgym.envs import registry

    before = set(registry.all_tasks())
    yield
    for task_id in set(registry.all_tasks()) - before:
        registry._TASKS.pop(task_id)
        gym.registry.pop(task_id, None)


@pytest.fixture
def write_program(tmp_path):
    """Write a program file and return its path: ``write_program(text, name="r.py")``."""
    def write(text: str, name: str = "reward.py"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


TINY_PPO = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 2}


@pytest.fixture(scope="session")
def tiny_hopper_run(tmp_path_factory):
    """A short real PPO run on Hopper-Hop (2048 steps, trained with domain randomisation) for the
    export, deploy and robustness tests; returns its run directory."""
    from rewardgym.runs.train import TrainSpec, train

    spec = TrainSpec(task="Hopper-Hop", reward="env", steps=2048, num_envs=4, seed=3, hyperparams=dict(TINY_PPO),
                     randomize={"friction": [0.8, 1.2]})
    return train(spec, runs_root=tmp_path_factory.mktemp("runs"), run_name="hopper").path


@pytest.fixture(scope="session")
def tiny_hopper_exports(tiny_hopper_run):
    """``{"onnx": dir, "torchscript": dir}``: the tiny run exported in both formats."""
    from rewardgym.runs.export import export_run

    return {fmt: export_run(tiny_hopper_run, fmt) for fmt in ("onnx", "torchscript")}


class StderrWatch:
    """Reads a subprocess's stderr on a thread: ``lines`` so far, and ``heard`` set once a line
    holds ``marker`` (a test waits on the event, not on a sleep)."""

    def __init__(self, proc: subprocess.Popen, marker: str):
        self.lines: list[str] = []
        self.heard = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc, marker), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen, marker: str) -> None:
        for line in proc.stderr:
            self.lines.append(line)
            if marker in line:
                self.heard.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)


@pytest.fixture
def watch_stderr():
    """``watch_stderr(proc, marker) -> StderrWatch`` (``proc`` started with ``stderr=PIPE, text=True``)."""
    return StderrWatch
