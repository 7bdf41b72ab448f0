"""The :class:`Robot` protocol, a TCP client for robots that speak the wire protocol, and
:class:`SimRobot`: the task's MuJoCo model with its own perturbed physics in another
process, in real time, behind a loopback socket.

A robot driver implements five calls (after LeRobot's ``Robot``; ``examples/robot_driver_template.py``
is a documented template for a real one):

``connect() -> RobotInfo``
    Open the connection and identify the robot (task, observation layout, control
    period). Must not move the robot.
``observe(timeout_s) -> RobotObservation``
    The newest observation: raw ``readings`` and the policy observation ``obs`` built
    from them by the task's :class:`~rewardgym.envs.observation.ObservationLayout` — the
    function the simulator task shares. The first call arms the robot. Drivers whose
    ``clock`` is ``"robot"`` block until the robot's next control tick (the robot sets the
    rate); ``"host"`` drivers return at once and the deploy loop paces itself.
    Raises :class:`~rewardgym.deploy.protocol.RobotError` on a lost, silent, garbled or
    flooding robot (:class:`TcpRobot` reads at most ``MAX_MESSAGES_PER_TICK`` messages and
    ``MAX_BYTES_PER_TICK`` bytes per call: more is :class:`~rewardgym.deploy.protocol.RobotFlood`).
``act(action)``
    Send one action (already filtered by the safety layer) for the observation just read.
``safe_stop(reason)``
    Bring the robot to its safe state now (never raises; best effort when the link is gone).
``disconnect()``
    Close everything (the robot safe-stops if it was not already stopped).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from rewardgym.deploy.protocol import (PROTOCOL_VERSION, ConnectionLost, MessageStream, ProtocolError, ReadBudget,
                                       RobotError, RobotTimeout, field as msg_field, number_list)
from rewardgym.envs.observation import ObservationLayout, ReadingsError, observation_layout


@dataclass(frozen=True)
class RobotInfo:
    """What a robot says about itself at ``connect()``.

    Attributes:
        name: the robot's name (``"sim"`` for :class:`SimRobot`).
        task: the task id whose observation layout it produces.
        layout_digest: :attr:`ObservationLayout.digest` of that layout.
        control_period_s: its control period, seconds.
        action_size: actions it takes.
        watchdog_s: its own watchdog (no command for this long: safe stop); None if it has none.
        details: anything else (a simulated robot's perturbation ...).
    """

    name: str
    task: str
    layout_digest: str
    control_period_s: float
    action_size: int
    watchdog_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RobotObservation:
    """One observation from a robot.

    Attributes:
        seq: the robot's tick counter.
        readings: raw readings, name -> float64 array (see the layout).
        obs: the policy observation ``(obs_dim,)`` float64, ``layout.build(readings)``.
        received_at: ``time.perf_counter()`` when it arrived (host clock).
        robot_time: seconds since the robot started its loop (robot clock).
        reward: the robot's task reward for the last period (simulated robots), else None.
        terminated: the robot reports the task's termination (fallen).
        stopped: reason of a safe stop the robot made itself (watchdog, fall ...), else None.
        applied: the command the robot applied in the last period, if it reports it.
        cmd_seq: the ``seq`` of the observation that command answered (-1: none yet).
        late_commands: commands that reached the robot after their period (cumulative).
        overruns: control ticks the robot itself was late for (cumulative).
    """

    seq: int
    readings: dict[str, np.ndarray]
    obs: np.ndarray
    received_at: float
    robot_time: float = 0.0
    reward: float | None = None
    terminated: bool = False
    stopped: str | None = None
    applied: np.ndarray | None = None
    cmd_seq: int = -1
    late_commands: int = 0
    overruns: int = 0


@runtime_checkable
class Robot(Protocol):
    """A robot the deploy loop can drive (see the module docstring for the contract)."""

    clock: Literal["robot", "host"]

    def connect(self) -> RobotInfo: ...

    def observe(self, timeout_s: float) -> RobotObservation: ...

    def act(self, action: np.ndarray) -> None: ...

    def safe_stop(self, reason: str) -> None: ...

    def disconnect(self) -> None: ...


class TcpRobot:
    """A robot behind a TCP socket speaking :mod:`rewardgym.deploy.protocol` (``--robot tcp://HOST:PORT``).

    Args:
        host, port: where the robot server listens.
        task: the task whose observation layout the robot must produce (checked at ``connect``).
        seed: sent with ``start`` (a simulated robot seeds its episode with it).
        connect_timeout_s: for the TCP connection and the hello exchange.
    """

    clock: Literal["robot", "host"] = "robot"

    def __init__(self, host: str, port: int, task: str, seed: int = 0, connect_timeout_s: float = 10.0):
        self.host, self.port = host, int(port)
        self.task = task
        self.seed = int(seed)
        self.connect_timeout_s = float(connect_timeout_s)
        self.layout: ObservationLayout = observation_layout(task)
        self.info: RobotInfo | None = None
        self._stream: MessageStream | None = None
        self._started = False
        self._last_seq = -1
        self.dropped_states = 0
        """States that were already superseded by a newer one when read (the controller fell behind)."""

    # -- Robot protocol -----------------------------------------------------------------------
    def connect(self) -> RobotInfo:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to the robot at {self.host}:{self.port} "
                                 f"({exc.strerror or exc})") from None
        self._stream = MessageStream(sock, "robot")
        self._stream.send({"type": "hello", "protocol": PROTOCOL_VERSION, "task": self.layout.task,
                           "layout": self.layout.digest})
        reply = self._stream.recv(self.connect_timeout_s)
        if reply is None:
            raise RobotTimeout(f"the robot at {self.host}:{self.port} did not answer hello within "
                               f"{self.connect_timeout_s:g} s")
        self.info = self._parse_hello(reply)
        return self.info

    def observe(self, timeout_s: float) -> RobotObservation:
        stream = self._require_stream()
        if not self._started:
            stream.send({"type": "start", "seed": self.seed})
            self._started = True
        deadline = time.perf_counter() + timeout_s
        # everything this tick reads: MAX_MESSAGES_PER_TICK messages, MAX_BYTES_PER_TICK bytes, reading
        # until the observation's deadline at most; more is a flood (RobotFlood, a robot fault)
        budget = ReadBudget(deadline=deadline)
        newest: dict[str, Any] | None = None
        while newest is None:
            message = stream.recv(deadline - time.perf_counter(), budget)
            if message is None:
                raise RobotTimeout(f"no observation from the robot within {timeout_s * 1e3:.0f} ms "
                                   f"(silent or late robot)")
            newest = self._state_or_raise(message)
        for message in stream.recv_ready(budget):  # fell behind: keep only the newest state
            state = self._state_or_raise(message)
            if state is not None:
                newest = state
                self.dropped_states += 1
        received = time.perf_counter()
        return self._parse_state(newest, received)

    def act(self, action: np.ndarray) -> None:
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        self._require_stream().send({"type": "command", "seq": self._last_seq, "action": values.tolist()})

    def safe_stop(self, reason: str) -> None:
        if self._stream is None:
            return
        try:
            self._stream.send({"type": "stop", "reason": str(reason)[:500]}, timeout_s=0.2)
        except RobotError:
            pass  # the link is gone: the robot's own watchdog stops it

    def disconnect(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.send({"type": "bye"}, timeout_s=0.2)
        except RobotError:
            pass
        self._stream.close()
        self._stream = None

    # -- parsing ------------------------------------------------------------------------------------
    def _require_stream(self) -> MessageStream:
        if self._stream is None:
            raise ConnectionLost("not connected to the robot (call connect() first)")
        return self._stream

    def _parse_hello(self, reply: dict[str, Any]) -> RobotInfo:
        where = "robot hello"
        if reply.get("type") == "error":
            raise ProtocolError(f"the robot refused the connection: {str(reply.get('message'))[:300]}")
        if reply.get("type") != "hello":
            raise ProtocolError(f"{where}: expected type 'hello', got {reply.get('type')!r}")
        if msg_field(reply, "protocol", int, where) != PROTOCOL_VERSION:
            raise ProtocolError(f"{where}: protocol {reply['protocol']} (this rewardgym speaks {PROTOCOL_VERSION})")
        period = float(msg_field(reply, "control_period_s", (int, float), where))
        if not 0.0 < period <= 10.0:
            raise ProtocolError(f"{where}: field 'control_period_s' = {period} must be in (0, 10] s")
        watchdog = reply.get("watchdog_s")
        details = reply.get("details", {})
        return RobotInfo(name=str(msg_field(reply, "robot", str, where)), task=msg_field(reply, "task", str, where),
                         layout_digest=msg_field(reply, "layout", str, where), control_period_s=period,
                         action_size=int(msg_field(reply, "action_size", int, where)),
                         watchdog_s=float(watchdog) if isinstance(watchdog, (int, float)) else None,
                         details=details if isinstance(details, dict) else {})

    @staticmethod
    def _state_or_raise(message: dict[str, Any]) -> dict[str, Any] | None:
        kind = message["type"]
        if kind == "state":
            return message
        if kind == "error":
            raise ProtocolError(f"the robot reports an error: {str(message.get('message'))[:300]}")
        raise ProtocolError(f"unexpected message type {kind!r} from the robot")

    def _parse_state(self, message: dict[str, Any], received: float) -> RobotObservation:
        where = "robot state"
        seq = msg_field(message, "seq", int, where)
        if seq <= self._last_seq:
            raise ProtocolError(f"{where}: seq {seq} does not follow {self._last_seq} (stale message)")
        readings_msg = msg_field(message, "readings", dict, where)
        try:
            readings = self.layout.check(readings_msg)
            obs = self.layout.build(readings)
        except ReadingsError as exc:
            raise ProtocolError(f"{where}: {exc}") from None
        stopped = message.get("stopped")
        applied = message.get("applied")
        self._last_seq = seq
        return RobotObservation(
            seq=seq, readings=readings, obs=obs, received_at=received,
            robot_time=float(msg_field(message, "time", (int, float), where)),
            reward=float(msg_field(message, "reward", (int, float), where)) if "reward" in message else None,
            terminated=bool(message.get("terminated", False)),
            stopped=str(stopped)[:300] if stopped is not None else None,
            applied=np.asarray(number_list(message, "applied", self.layout_action_size, where))
            if applied is not None else None,
            cmd_seq=int(msg_field(message, "cmd_seq", int, where)) if "cmd_seq" in message else -1,
            late_commands=int(msg_field(message, "late_commands", int, where)) if "late_commands" in message else 0,
            overruns=int(msg_field(message, "overruns", int, where)) if "overruns" in message else 0)

    @property
    def layout_action_size(self) -> int:
        return len(self.layout.action_names)


class SimRobot(TcpRobot):
    """The task's MuJoCo model with its own (perturbed) physics, in a separate process, in real time.

    Starts ``python -m rewardgym.deploy.simrobot`` on 127.0.0.1 (a free port) and talks to it
    over TCP like any robot. See :mod:`rewardgym.deploy.simrobot` for the robot side
    (perturbations, watchdog, fault injection).

    Args:
        task: task id.
        config: a :class:`~rewardgym.deploy.simrobot.SimRobotConfig`, a dict, or a ``.toml`` path
            (``[randomize]`` perturbation, ``[robot]`` watchdog/damping/task, ``[fault]``).
        seed: seeds the robot's episode (initial state, sampled perturbation, noise).
        log_path: the robot process's stderr goes here (default: discarded).
        start_timeout_s: how long the process may take to start listening.
    """

    def __init__(self, task: str, config: Any = None, seed: int = 0, log_path: str | Path | None = None,
                 start_timeout_s: float = 120.0):
        from rewardgym.deploy.simrobot import SimRobotConfig

        super().__init__("127.0.0.1", 0, task, seed=seed)
        self.config = SimRobotConfig.resolve(config)
        self.log_path = Path(log_path) if log_path else None
        self.start_timeout_s = float(start_timeout_s)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The robot process's id (None before ``connect``)."""
        return self.process.pid if self.process is not None else None

    def connect(self) -> RobotInfo:
        robot_task = self.config.task or self.task
        cmd = [sys.executable, "-m", "rewardgym.deploy.simrobot", "--task", robot_task, "--port", "0",
               "--config-json", json.dumps(self.config.to_dict())]
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # its own session: a Ctrl-C in the terminal reaches the controller, which stops the robot
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        self.port = self._read_port()
        return super().connect()

    def _read_port(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        line = b""
        while not line.endswith(b"\n"):
            if self.process.poll() is not None:
                where = f" (see {self.log_path})" if self.log_path else ""
                raise ConnectionLost(f"the SimRobot process exited with code {self.process.returncode} before "
                                     f"listening{where}")
            if time.monotonic() > deadline:
                self._kill()
                raise RobotTimeout(f"the SimRobot process did not start listening within {self.start_timeout_s:g} s")
            if select.select([self.process.stdout], [], [], 0.1)[0]:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        try:
            return int(json.loads(line.decode().splitlines()[0])["port"])
        except (ValueError, KeyError, IndexError) as exc:
            raise ProtocolError(f"the SimRobot process announced {line[:200]!r}, not its port ({exc})") from None

    def disconnect(self) -> None:
        super().disconnect()
        if self.process is not None:
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._kill()
            if self.process.stdout is not None:
                self.process.stdout.close()

    def post_mortem(self) -> str | None:
        """After :meth:`disconnect`: how the robot process ended, when that explains a fault."""
        code = self.process.returncode if self.process is not None else None
        if code is None or code == 0:
            return None
        where = f"; its log: {self.log_path}" if self.log_path else ""
        if code < 0:
            return f"the SimRobot process was killed by signal {-code} ({signal.Signals(-code).name}){where}"
        return f"the SimRobot process exited with code {code}{where}"

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait(timeout=5.0)


def robot_from_spec(spec: str, task: str, seed: int = 0, log_dir: str | Path | None = None) -> Robot:
    """The robot of ``rewardgym deploy --robot SPEC``.

    ``sim`` (a :class:`SimRobot` with the task's nominal physics), ``sim:CONFIG.toml`` (a
    :class:`SimRobot` with that configuration: perturbation, watchdog, faults) or
    ``tcp://HOST:PORT`` (any robot server speaking the protocol).

    Raises:
        ValueError: an unknown form, or an invalid configuration (named).
    """
    if spec == "sim" or spec.startswith("sim:"):
        config = spec[4:] or None
        log = Path(log_dir) / "simrobot.log" if log_dir else None
        return SimRobot(task, config=config, seed=seed, log_path=log)
    if spec.startswith("tcp://"):
        host, _, port = spec[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--robot {spec!r}: expected tcp://HOST:PORT")
        return TcpRobot(host.strip("[]"), int(port), task, seed=seed)
    raise ValueError(f"--robot {spec!r}: expected sim, sim:CONFIG.toml or tcp://HOST:PORT")
