"""Your own MuJoCo robot as a rewardgym task: a two-link planar arm that reaches a target.

The robot is an MJCF string and a ~30-line Gymnasium env (no gymnasium-robotics, no
assets). :func:`rewardgym.register_task` turns it into ``rewardgym/PlanarArm-Reach-v0``
with a documented state view read from MuJoCo, a success test and an expert reward, so
``describe``, ``check``, ``train``, ``eval`` and ``synthesize`` work on it:

    rewardgym --tasks examples/my_robot.py describe PlanarArm-Reach
    rewardgym --tasks examples/my_robot.py train PlanarArm-Reach --reward expert --steps 50000
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import rewardgym
from rewardgym import TaskField

ARM_XML = """
<mujoco model="planar_arm">
  <option timestep="0.01"/>
  <worldbody>
    <body name="upper" pos="0 0 0">
      <joint name="shoulder" type="hinge" axis="0 0 1" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.01" mass="0.1"/>
      <body name="lower" pos="0.1 0 0">
        <joint name="elbow" type="hinge" axis="0 0 1" damping="0.05"/>
        <geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.01" mass="0.1"/>
        <site name="hand" pos="0.1 0 0" size="0.01"/>
      </body>
    </body>
    <site name="target" pos="0.1 0.1 0" size="0.01"/>
  </worldbody>
  <actuator>
    <motor joint="shoulder" gear="0.05" ctrlrange="-1 1"/>
    <motor joint="elbow" gear="0.05" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


class PlanarArmEnv(gym.Env):
    """A two-link arm on a table; the observation is joint angles, velocities and the target."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.model = mujoco.MjModel.from_xml_string(ARM_XML)
        self.data = mujoco.MjData(self.model)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.target = np.zeros(3)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel, self.target[:2]])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = self.np_random.uniform(-np.pi, np.pi, 2)
        angle, radius = self.np_random.uniform(-np.pi, np.pi), self.np_random.uniform(0.05, 0.19)
        self.target = np.array([radius * np.cos(angle), radius * np.sin(angle), 0.0])
        self.model.site_pos[self.model.site("target").id] = self.target
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action):
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=2)
        return self._obs(), 0.0, False, False, {}


def _site(env: gym.Env, name: str) -> np.ndarray:
    arm = env.unwrapped
    return arm.data.site_xpos[arm.model.site(name).id][:2].copy()


rewardgym.register_task(
    "PlanarArm-Reach", env=PlanarArmEnv, max_episode_steps=100,
    instruction="Move the hand of the two-link arm onto the red target and keep it there.",
    fields=[
        TaskField("hand_pos", "(B, 2)", "m", "Hand (end effector) position in the table plane.",
                  lambda env: _site(env, "hand")),
        TaskField("target_pos", "(B, 2)", "m", "Target position in the table plane.",
                  lambda env: _site(env, "target")),
        TaskField("joint_vel", "(B, 2)", "rad/s", "Shoulder and elbow angular velocities.",
                  lambda env: env.unwrapped.data.qvel.copy()),
    ],
    success=lambda s: np.linalg.norm(s.hand_pos - s.target_pos, axis=-1) < 0.02,
    success_doc="hand within 2 cm of the target",
    expert=Path(__file__).with_name("my_robot_reward.py"),
)
