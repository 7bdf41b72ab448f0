"""The simulated robot: a task's MuJoCo model with its own perturbed physics, served in real time.

Run by :class:`~rewardgym.deploy.robot.SimRobot` (or by hand, to deploy to it from another
terminal or machine with ``--robot tcp://HOST:PORT``)::

    python -m rewardgym.deploy.simrobot --task rewardgym/Hopper-Hop-v0 --port 5555 --config robot.toml

It listens on ``--host`` (default 127.0.0.1), prints ``{"port": P}`` on stdout once
listening, serves one controller with :mod:`rewardgym.deploy.protocol`, and exits when the
controller leaves.

Each control period (the task's ``dt``, paced against ``time.perf_counter`` with absolute
deadlines) the robot applies the newest command that answers the state that opened the
period (zero-order hold), steps the task's simulator by one control step, and publishes the
new state. So a command that arrives within its period acts exactly as in the training
simulator; one that arrives later is counted (``late_commands``) and the previous command is
held; sub-period latency is modelled with ``latency`` in the perturbation.

Perturbation and sensors: the ``[randomize]`` table of the config
(:mod:`rewardgym.wrappers.randomize`) is sampled once at ``start`` from the seed;
``obs_noise`` is added to the published *readings* (sensor noise), ``action_noise``,
``latency`` and pushes act on the simulator.

Safety on the robot side: a **watchdog** (no valid command for ``watchdog_ms``), a ``stop``
message, an invalid command, the controller's disconnection and the task's termination
(fallen) all latch a **safe stop**: from then on every actuator gets the damping command
``-damping * joint_velocity`` (clipped to the bounds), and the states say why
(``stopped``).

Config file (TOML; every table optional)::

    [randomize]            # the robot's physics, e.g. a held-out perturbation
    friction = 0.7
    latency = 1
    [robot]
    watchdog_ms = 100      # safe stop after this long without a command
    damping = 0.05         # safe-stop command per rad/s of joint velocity (action units)
    task = "rewardgym/Hopper-Hop-v0"   # simulate another task than the policy's (tests refusals)
    lockstep = false       # true: wait for each command instead of running in real time
    [fault]                # fault injection, for testing a deployment stack
    kind = "silent"        # silent | garble | late | exit
    at_tick = 50
    delay_ms = 100         # late: how late that state is sent
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rewardgym.deploy.protocol import (PROTOCOL_VERSION, ConnectionLost, MessageStream, ProtocolError, RobotError,
                                       field as msg_field, number_list)
from rewardgym.envs.config import check_keys, read_table
from rewardgym.text import escape_control
from rewardgym.wrappers.randomize import RandomizationConfig, RandomizationError

FAULT_KINDS = ("silent", "garble", "late", "exit")


def _say(message: str) -> None:
    """One line on stderr; the controller's text in it is escaped (see rewardgym.text)."""
    print(f"simrobot: {escape_control(message)}", file=sys.stderr, flush=True)


class SimRobotConfigError(ValueError):
    """A SimRobot configuration is invalid (the message names the file, table and key)."""


@dataclass(frozen=True)
class SimRobotConfig:
    """The simulated robot's physics, robot-side safety, and optional injected fault.

    Attributes:
        randomize: the robot's perturbation (sampled once per session from the seed).
        watchdog_s: safe stop after this long without a valid command.
        damping: safe-stop command per rad/s of joint velocity, action units.
        task: simulate this task instead of the policy's (None: the policy's).
        lockstep: instead of running in real time, wait (up to the watchdog) for the command that
            answers each state, then step: a deterministic sim2sim of the whole pipeline (layout,
            protocol, safety layer) with the timing taken out.
        fault: ``{"kind", "at_tick", "delay_ms"}`` or None.
        source: where it came from (for messages).
    """

    randomize: RandomizationConfig | None = None
    watchdog_s: float = 0.1
    damping: float = 0.05
    task: str | None = None
    lockstep: bool = False
    fault: dict[str, Any] | None = None
    source: str = "sim robot config"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "sim robot config") -> "SimRobotConfig":
        """Validate ``{"randomize": {...}, "robot": {...}, "fault": {...}}``."""
        if not isinstance(data, Mapping):
            raise SimRobotConfigError(f"{source}: expected a table, got {type(data).__name__}")
        check_keys(data, ("randomize", "robot", "fault"), SimRobotConfigError, source, "table")
        try:
            randomize = RandomizationConfig.from_dict(data["randomize"], source=f"{source} [randomize]") \
                if "randomize" in data else None
        except RandomizationError as exc:
            raise SimRobotConfigError(str(exc)) from None
        robot = _table(data, "robot", source)
        check_keys(robot, ("watchdog_ms", "damping", "task", "lockstep"), SimRobotConfigError, f"{source} [robot]")
        watchdog_ms = _number(robot, "watchdog_ms", 100.0, 1.0, 60_000.0, source)
        damping = _number(robot, "damping", 0.05, 0.0, 1e3, source)
        task = robot.get("task")
        if task is not None and not isinstance(task, str):
            raise SimRobotConfigError(f"{source}: [robot] task must be a task id string")
        lockstep = robot.get("lockstep", False)
        if not isinstance(lockstep, bool):
            raise SimRobotConfigError(f"{source}: [robot] lockstep must be true or false")
        fault = _table(data, "fault", source) or None
        if fault is not None:
            check_keys(fault, ("kind", "at_tick", "delay_ms"), SimRobotConfigError, f"{source} [fault]")
            if fault.get("kind") not in FAULT_KINDS:
                raise SimRobotConfigError(f"{source}: [fault] kind must be one of {', '.join(FAULT_KINDS)}, got "
                                          f"{fault.get('kind')!r}")
            at = fault.get("at_tick", 0)
            if isinstance(at, bool) or not isinstance(at, int) or at < 0:
                raise SimRobotConfigError(f"{source}: [fault] at_tick must be a whole number >= 0")
            fault = {"kind": fault["kind"], "at_tick": at,
                     "delay_ms": _number(fault, "delay_ms", 100.0, 0.0, 60_000.0, source)}
        return cls(randomize=randomize, watchdog_s=watchdog_ms / 1e3, damping=damping, task=task,
                   lockstep=lockstep, fault=fault, source=source)

    @classmethod
    def load(cls, path: str | Path) -> "SimRobotConfig":
        """Read a ``.toml``/``.json`` robot config (tables ``[randomize]``, ``[robot]``, ``[fault]``)."""
        return cls.from_dict(read_table(path, SimRobotConfigError, "sim robot config"), source=str(path))

    @classmethod
    def resolve(cls, spec: Any) -> "SimRobotConfig":
        if spec is None:
            return cls()
        if isinstance(spec, SimRobotConfig):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        return cls.load(spec)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"robot": {"watchdog_ms": self.watchdog_s * 1e3, "damping": self.damping,
                                         "lockstep": self.lockstep}}
        if self.task:
            out["robot"]["task"] = self.task
        if self.randomize:
            out["randomize"] = self.randomize.to_dict()
        if self.fault:
            out["fault"] = dict(self.fault)
        return out


def _table(data: Mapping[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise SimRobotConfigError(f"{source}: [{name}] must be a table")
    return dict(value)


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float, source: str) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise SimRobotConfigError(f"{source}: {key} = {value!r} must be a number in [{low:g}, {high:g}]")
    return float(value)


# ----------------------------------------------------------------------------- the server
class SimRobotServer:
    """One real-time session of a simulated robot (see the module docstring).

    Args:
        task: task id.
        config: the robot's configuration.
    """

    def __init__(self, task: str, config: SimRobotConfig):
        from rewardgym.wrappers.make import make_task_env
        from rewardgym.envs.observation import observation_layout
        from rewardgym.wrappers.randomize import mujoco_sim

        self.task = task
        self.config = config
        self.layout = observation_layout(task)
        # the policy, not the time limit, ends a deployment
        self.env = make_task_env(task, randomize=config.randomize, max_episode_steps=10**9)
        self.sim = mujoco_sim(self.env)
        self.period = self.layout.control_period_s
        self.low = np.asarray(self.layout.action_low)
        self.high = np.asarray(self.layout.action_high)
        self.stopped: str | None = None
        self.late_commands = 0
        self.overruns = 0
        self._rng = np.random.default_rng(0)
        self._obs_noise = 0.0

    # -- messages -----------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        details = {"perturbation": self.config.randomize.to_dict() if self.config.randomize else {},
                   "damping": self.config.damping, "lockstep": self.config.lockstep, "pid": os.getpid()}
        return {"type": "hello", "protocol": PROTOCOL_VERSION, "robot": "sim", "task": self.task,
                "layout": self.layout.digest, "control_period_s": self.period,
                "action_size": len(self.layout.action_names), "watchdog_s": self.config.watchdog_s,
                "details": details}

    def _state(self, seq: int, t: float, reward: float, terminated: bool, applied: np.ndarray,
               cmd_seq: int) -> dict[str, Any]:
        readings = self.layout.read(self.sim.data)
        if self._obs_noise > 0.0:
            readings = {k: v + self._rng.normal(0.0, self._obs_noise, v.shape) for k, v in readings.items()}
        return {"type": "state", "seq": seq, "time": t,
                "readings": {k: v.reshape(-1).tolist() for k, v in readings.items()},
                "reward": float(reward), "terminated": bool(terminated), "stopped": self.stopped,
                "applied": applied.tolist(), "cmd_seq": cmd_seq, "late_commands": self.late_commands,
                "overruns": self.overruns}

    def _damping_action(self) -> np.ndarray:
        qvel = self.layout.joint_vel({"qvel": self.sim.data.qvel})
        return np.clip(-self.config.damping * qvel, self.low, self.high)

    def _safe_stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            _say(f"safe stop: {reason}")

    def _command(self, message: dict[str, Any]) -> tuple[int, np.ndarray]:
        seq = msg_field(message, "seq", int, "command")
        action = np.asarray(number_list(message, "action", len(self.low), "command"), dtype=np.float64)
        return seq, np.clip(action, self.low, self.high)

    # -- session ------------------------------------------------------------------------------
    def serve(self, stream: MessageStream) -> None:
        """Handshake, wait for ``start``, then run the real-time loop until the controller leaves."""
        hello = stream.recv(30.0)
        if hello is None or hello.get("type") != "hello":
            stream.send({"type": "error", "message": "expected hello"})
            return
        if hello.get("protocol") != PROTOCOL_VERSION:
            stream.send({"type": "error", "message": f"protocol {hello.get('protocol')!r} is not "
                                                     f"{PROTOCOL_VERSION}"})
            return
        stream.send(self.hello())
        start = stream.recv(60.0)
        if start is None or start.get("type") != "start":
            return
        seed = start.get("seed", 0)
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5E,)))
        self.env.reset(seed=seed)
        self._obs_noise = float(getattr(self.env, "sampled", {}).get("obs_noise", 0.0))
        self._loop(stream)

    def _loop(self, stream: MessageStream) -> None:
        fault = self.config.fault or {}
        period = self.period
        action = np.zeros_like(self.low)
        cmd_seq = -1
        t0 = time.perf_counter()
        last_command = t0
        seq = 0
        stream.send(self._state(0, 0.0, 0.0, False, action, cmd_seq))
        silent = False
        lockstep = self.config.lockstep
        while True:
            deadline = t0 + (seq + 1) * period if not lockstep else time.perf_counter() + period
            pending: tuple[int, np.ndarray] | None = None
            while True:  # collect commands until the period ends (lock-step: until the answer comes)
                if lockstep and self.stopped is None:  # once stopped, it damps in real time
                    if pending is not None:
                        break
                    left = last_command + self.config.watchdog_s - time.perf_counter()
                else:
                    left = deadline - time.perf_counter()
                if left <= 0:
                    break
                if not select.select([stream.sock], [], [], left)[0]:
                    continue
                try:
                    messages = stream.recv_ready()
                except ConnectionLost:
                    self._safe_stop("controller disconnected")
                    return
                except ProtocolError as exc:
                    self._safe_stop(f"garbled message from the controller: {exc}")
                    messages = []
                for message in messages:
                    kind = message["type"]
                    if kind == "bye":
                        self._safe_stop("controller said bye")
                        return
                    if kind == "stop":
                        self._safe_stop(f"stop requested by the controller: {str(message.get('reason'))[:200]}")
                    elif kind == "command":
                        try:
                            cseq, caction = self._command(message)
                        except ProtocolError as exc:
                            self._safe_stop(f"invalid command: {exc}")
                            continue
                        if cseq == seq:
                            pending = (cseq, caction)
                            last_command = time.perf_counter()
                        else:  # answers an older state: it missed its period
                            self.late_commands += 1
            now = time.perf_counter()
            if pending is not None:
                cmd_seq, action = pending
            if self.stopped is None and now - last_command > self.config.watchdog_s:
                self._safe_stop(f"watchdog: no command for {(now - last_command) * 1e3:.0f} ms "
                                f"(limit {self.config.watchdog_s * 1e3:.0f} ms)")
            applied = self._damping_action() if self.stopped is not None else action
            _, reward, terminated, _, _ = self.env.step(applied)
            if terminated and self.stopped is None:
                self._safe_stop("task termination: the robot has fallen (the simulator's unhealthy test)")
            seq += 1
            if not lockstep and time.perf_counter() > deadline + period:  # a period behind: re-anchor, never burst
                self.overruns += 1
                t0 = time.perf_counter() - seq * period
            kind = fault.get("kind")
            if kind and seq >= fault["at_tick"]:
                if kind == "exit":
                    os._exit(3)
                if kind == "silent":
                    silent = True
                elif kind == "garble" and seq == fault["at_tick"]:
                    stream.sock.sendall(b"\x00\x00\x00\x08\xc1\xc1garbage")  # a frame that is not msgpack
                    continue
                elif kind == "late" and seq == fault["at_tick"]:
                    time.sleep(fault["delay_ms"] / 1e3)
            if silent:
                continue
            try:
                stream.send(self._state(seq, seq * period, reward, terminated, applied, cmd_seq))
            except RobotError:
                self._safe_stop("controller disconnected")
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A simulated robot (rewardgym task, perturbed MuJoCo) on TCP.")
    parser.add_argument("--task", required=True, help="task id, e.g. rewardgym/Hopper-Hop-v0")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (announced on stdout)")
    parser.add_argument("--config", help="robot config (.toml: [randomize], [robot], [fault])")
    parser.add_argument("--config-json", help=argparse.SUPPRESS)  # used by SimRobot
    args = parser.parse_args(argv)
    try:
        if args.config_json:
            config = SimRobotConfig.from_dict(json.loads(args.config_json))
        else:
            config = SimRobotConfig.resolve(args.config)
        server = SimRobotServer(args.task, config)
    except (SimRobotConfigError, ValueError) as exc:
        _say(f"error: {exc}")
        return 2
    listener = socket.create_server((args.host, args.port))
    listener.settimeout(120.0)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        _say("no controller connected within 120 s")
        return 1
    finally:
        listener.close()
    stream = MessageStream(conn, "controller")
    try:
        server.serve(stream)
    except RobotError as exc:
        _say(str(exc))
        return 1
    finally:
        stream.close()
        server.env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
