"""Template: a driver that lets ``rewardgym`` deploy an exported policy on YOUR robot.

Copy this file and replace :class:`MockHardware` (which stands in for a robot SDK so that the
template runs anywhere) with your robot's SDK calls. A driver implements the five calls of
:class:`rewardgym.deploy.Robot`; the deploy loop does the rest (rate, safety layer, logging,
safe stop on every error path)::

    python examples/robot_driver_template.py runs/RUN/export/onnx --duration 5

What each call must do, and what to watch on real hardware:

``connect()``
    Open the link, check the robot is the one the policy was trained for, return a
    :class:`RobotInfo` (task, observation layout digest, control period, action size). It
    must NOT move the robot. If your robot has a hardware watchdog, arm it here and report
    its timeout in ``watchdog_s``.
``observe(timeout_s)``
    Read the sensors into the **readings** the task's :class:`ObservationLayout` names
    (for the locomotion tasks: ``qpos`` = base pose + joint angles, ``qvel`` = base
    velocity + joint velocities, in the simulator's order, units and sign conventions —
    ``rewardgym export`` writes them into the manifest) and build the policy observation with
    ``self.layout.build(readings)``: the very function the simulator task uses, so the
    policy sees what it saw in training. Raise ``RobotTimeout`` when the sensors do not
    answer within ``timeout_s``. With ``clock = "host"`` the loop calls ``observe`` at the
    control rate; if your robot streams states at its own rate, use ``clock = "robot"`` and
    block until the next state instead.
``act(action)``
    ``action`` is in the task's action units, already clamped, rate-limited and filtered by
    the safety layer. Convert it to your actuators' commands (MuJoCo motor: torque =
    ``gear x action`` N m, ``gear`` is in the manifest) and send it without blocking.
``safe_stop(reason)``
    Put the robot in its safe state (damping mode, brakes, zero torque — whatever your
    hardware documents). Called on every ending: normal, safety stop, fault, Ctrl-C. Must
    never raise.
``disconnect()``
    Release the hardware.

Before the first real run: check the sign and order of every joint against the manifest,
start with ``--duration 1`` and a tight ``--safety`` file (``max_delta``, ``max_tilt_rad``),
with the robot on a stand, a hand on the hardware e-stop.
"""

from __future__ import annotations

import argparse
import time
from typing import Literal

import numpy as np

from rewardgym.runs.export import ExportedPolicy
from rewardgym.deploy import EStop, RobotInfo, RobotObservation, RobotTimeout, SafetyConfig, run_deployment
from rewardgym.envs.observation import observation_layout


class MockHardware:
    """Stands in for a robot SDK: the task's MuJoCo model, advanced one control period per command.

    Replace every use of it in :class:`TemplateRobot` by your SDK's calls.
    """

    def __init__(self, task: str, seed: int = 0):
        from rewardgym.wrappers.make import make_task_env
        from rewardgym.wrappers.randomize import mujoco_sim

        self.env = make_task_env(task, max_episode_steps=10**9)
        self.env.reset(seed=seed)
        self.data = mujoco_sim(self.env).data
        self.damping_mode = False

    def read_joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Base pose + joint angles, base velocity + joint velocities (your SDK: encoders, IMU, estimator)."""
        return self.data.qpos.copy(), self.data.qvel.copy()

    def send_command(self, command: np.ndarray) -> None:
        """Your SDK: write the actuator commands. Here: one control period of physics."""
        self.env.step(command)

    def enter_damping_mode(self) -> None:
        self.damping_mode = True

    def close(self) -> None:
        self.env.close()


class TemplateRobot:
    """A :class:`rewardgym.deploy.Robot` for one robot. Edit the marked places.

    Args:
        task: the task id the policy was trained on (its manifest's ``task``).
        seed: passed to the mock hardware (a real robot has no seed).
    """

    clock: Literal["robot", "host"] = "host"  # the deploy loop paces the ticks

    def __init__(self, task: str, seed: int = 0):
        self.task = task
        self.layout = observation_layout(task)  # readings -> observation, shared with the simulator
        self.seed = seed
        self.hardware: MockHardware | None = None
        self.seq = 0
        self.stopped: str | None = None

    def connect(self) -> RobotInfo:
        self.hardware = MockHardware(self.task, self.seed)  # EDIT: open your SDK, check the robot's identity
        return RobotInfo(name="template", task=self.task, layout_digest=self.layout.digest,
                         control_period_s=self.layout.control_period_s,
                         action_size=len(self.layout.action_names), watchdog_s=None)

    def observe(self, timeout_s: float) -> RobotObservation:
        if self.hardware is None:
            raise RobotTimeout("not connected")
        qpos, qvel = self.hardware.read_joint_state()  # EDIT: your sensors, in the manifest's order and units
        readings = {"qpos": qpos, "qvel": qvel}
        observation = RobotObservation(seq=self.seq, readings=readings, obs=self.layout.build(readings),
                                       received_at=time.perf_counter(),
                                       robot_time=self.seq * self.layout.control_period_s, stopped=self.stopped)
        self.seq += 1
        return observation

    def act(self, action: np.ndarray) -> None:
        if self.hardware is not None and self.stopped is None:
            self.hardware.send_command(np.asarray(action, dtype=np.float64))  # EDIT: units -> your actuators

    def safe_stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason
        if self.hardware is not None:
            self.hardware.enter_damping_mode()  # EDIT: your robot's safe state; must not raise

    def disconnect(self) -> None:
        if self.hardware is not None:
            self.hardware.close()  # EDIT: release your SDK
            self.hardware = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Deploy an exported policy with the template driver.")
    parser.add_argument("policy", help="export directory (rewardgym export RUN)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", default="deployments/template")
    parser.add_argument("--max-delta", type=float, default=None, help="safety: largest action change per step")
    args = parser.parse_args()
    policy = ExportedPolicy.load(args.policy)
    result = run_deployment(policy, TemplateRobot(policy.task), args.duration, args.out,
                            safety=SafetyConfig(max_delta=args.max_delta), estop=EStop())
    print(f"{result.status}: {result.reason}\nreturn {result.summary['return']}  ->  {result.directory}")
    raise SystemExit(result.exit_code)


if __name__ == "__main__":
    main()
