"""Deployment: exported policies on robots through a safety layer (docs/ARCHITECTURE.md, "Deployment").

* :mod:`rewardgym.deploy.robot` — the :class:`Robot` protocol, :class:`TcpRobot`, :class:`SimRobot`
* :mod:`rewardgym.deploy.simrobot` — the simulated robot process (perturbed MuJoCo, real time, watchdog)
* :mod:`rewardgym.deploy.protocol` — the wire protocol (length-prefixed msgpack over TCP)
* :mod:`rewardgym.deploy.safety` — the safety layer and the e-stop
* :mod:`rewardgym.deploy.loop` — the deploy loop, its log, summary and plot
* :mod:`rewardgym.deploy.robustness` — sweeps of physical parameters (RAPP) and LLM-proposed ranges
"""

from rewardgym.deploy.loop import DeploymentRefused, DeploymentResult, run_deployment
from rewardgym.deploy.protocol import ConnectionLost, ProtocolError, RobotError, RobotTimeout
from rewardgym.deploy.robot import Robot, RobotInfo, RobotObservation, SimRobot, TcpRobot
from rewardgym.deploy.safety import EStop, SafetyConfig, SafetyLayer

__all__ = ["ConnectionLost", "DeploymentRefused", "DeploymentResult", "EStop", "ProtocolError", "Robot",
           "RobotError", "RobotInfo", "RobotObservation", "RobotTimeout", "SafetyConfig", "SafetyLayer", "SimRobot",
           "TcpRobot", "run_deployment"]
