"""Deployment: the wire protocol, the safety layer, SimRobot in its own real-time process, the
deploy loop's log/summary/plot, the faults of the issue and the robot-side watchdog.

Assertions are on events, files, exit codes and log contents, never on how fast this
machine is; the bounds on waiting are generous."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rewardgym.runs.export import ExportedPolicy
from rewardgym.deploy import EStop, ProtocolError, SafetyConfig, SafetyLayer, SimRobot, run_deployment
from rewardgym.deploy.loop import read_log
from rewardgym.deploy.protocol import ConnectionLost, MessageStream, decode, encode
from rewardgym.deploy.safety import SafetyConfigError
from rewardgym.deploy.simrobot import SimRobotConfig, SimRobotConfigError, SimRobotServer
from rewardgym.envs.observation import observation_layout

HOPPER = "rewardgym/Hopper-Hop-v0"
ROOT = Path(__file__).resolve().parent.parent
STEADY = {"randomize": {"gravity": -0.2}}  # the tiny policy cannot fall over in a few seconds of this
# A busy machine must not turn a slow tick into a fault: the robots of these tests run in lock-step
# (the robot waits for the command answering each state, up to a generous watchdog: the pipeline
# with the timing taken out) or, where a test needs real time, with a generous watchdog; and the
# controller allows PATIENT control periods (8 ms each) per observation, not the default two.
# Real-time behaviour (the default) is measured in benchmarks/sim2sim.py.
LOCKSTEP = {"lockstep": True, "watchdog_ms": 30_000}
PATIENT = 625  # timeout_periods: 5 s without an observation is a fault
FAULT_PATIENCE = 250  # 2 s: how long the fault tests wait for a silent or late robot


@pytest.fixture(scope="module")
def policy(tiny_hopper_exports):
    return ExportedPolicy.load(tiny_hopper_exports["onnx"])


def _cli(*args):
    """The CLI in this process (typer's runner): ``.exit_code`` and ``.output``."""
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=400)


# ----------------------------------------------------------------------------- protocol
def test_protocol_frames_and_refuses_garbage():
    a, b = socket.socketpair()
    left, right = MessageStream(a, "robot"), MessageStream(b, "controller")
    left.send({"type": "state", "seq": 1, "readings": {"qpos": [0.5, 1.0]}})
    assert right.recv(5.0) == {"type": "state", "seq": 1, "readings": {"qpos": [0.5, 1.0]}}
    assert right.recv(0.01) is None  # nothing more: a timeout, not an error
    a.sendall(b"\x00\x00\x00\x03abc")
    with pytest.raises(ProtocolError, match="garbled message"):
        right.recv(5.0)
    a.sendall(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="announced 4294967295 bytes"):
        right.recv(5.0)
    a.close()
    c, d = socket.socketpair()
    c.close()
    with pytest.raises(ConnectionLost, match="the robot closed the connection"):
        MessageStream(d, "robot").recv(5.0)
    import msgpack

    assert decode(encode({"type": "x", "v": [1.5]})[4:]) == {"type": "x", "v": [1.5]}
    with pytest.raises(ProtocolError, match="expected a map with a string 'type'"):
        decode(msgpack.packb([1, 2]))
    with pytest.raises(ProtocolError, match="extension type 5"):
        decode(msgpack.packb({"type": msgpack.ExtType(5, b"x")}))


# ----------------------------------------------------------------------------- safety layer
def _readings(tilt=0.0, thigh=-0.5, thigh_vel=0.0):
    return {"qpos": np.array([0.0, 1.25, tilt, thigh, -0.5, 0.0]), "qvel": np.array([0, 0, 0, thigh_vel, 0, 0.0])}


def test_safety_layer_in_order():
    layout = observation_layout(HOPPER)
    low, high = -np.ones(3), np.ones(3)
    layer = SafetyLayer(SafetyConfig(max_delta=0.25, low_pass=0.5, max_joint_vel=20.0), layout, low, high)
    result = layer.filter(np.array([3.0, -0.1, 0.1]), _readings())
    # clamp to 1.0, rate-limit from rest (0) to 0.25, then low-pass halves it
    np.testing.assert_allclose(result.action, [0.125, -0.05, 0.05])
    assert result.interventions == ("clamp", "rate", "low_pass") and result.stop is None
    assert layer.filter(np.array([np.nan, 0, 0]), _readings()).stop.startswith("non-finite action")
    assert "torso tilt 1.500 rad > max_tilt_rad 1.2" in layer.filter(np.zeros(3), _readings(tilt=1.5)).stop
    assert "joint thigh_joint at 0.400 rad is outside its range" in layer.filter(np.zeros(3), _readings(thigh=0.4)).stop
    assert layer.filter(np.zeros(3), _readings(thigh=0.2)).stop is None  # within the tolerance of soft limits
    assert "speed 25.00 rad/s > max_joint_vel 20" in layer.filter(np.zeros(3), _readings(thigh_vel=-25)).stop
    layer.estop.trigger("button")
    assert layer.filter(np.zeros(3), _readings()).stop == "e-stop: button"
    assert layer.counts == {"clamp": 1, "rate": 1, "low_pass": 2}  # stopped steps count nothing


def test_estop_file_and_safety_config_errors(tmp_path):
    estop = EStop(tmp_path / "STOP")
    assert not estop.is_set()
    (tmp_path / "STOP").touch()
    assert estop.is_set() and "STOP" in estop.reason
    bad = tmp_path / "safety.toml"
    bad.write_text("max_tilt = 0.5\n")
    with pytest.raises(SafetyConfigError, match=f"{bad}: unknown safety key 'max_tilt'; did you mean 'max_tilt_rad'"):
        SafetyConfig.load(bad)
    with pytest.raises(SafetyConfigError, match="low_pass = 2 must be in"):
        SafetyConfig.from_dict({"low_pass": 2})
    assert SafetyConfig.from_dict({"max_tilt_rad": "none"}).max_tilt_rad is None
    with pytest.raises(SimRobotConfigError, match=r"\[fault\] kind must be one of"):
        SimRobotConfig.from_dict({"fault": {"kind": "explode"}})
    with pytest.raises(SimRobotConfigError, match="unknown randomisation parameter 'frction'"):
        SimRobotConfig.from_dict({"randomize": {"frction": 1}})
    with pytest.raises(SimRobotConfigError, match=r"\[robot\]: unknown key 'watchdog'; did you mean 'watchdog_ms'"):
        SimRobotConfig.from_dict({"robot": {"watchdog": 5}})


# ----------------------------------------------------------------------------- robot side, in-process
def test_simrobot_server_validates_commands_and_stops_on_request():
    server = SimRobotServer(HOPPER, SimRobotConfig(watchdog_s=5.0))
    a, b = socket.socketpair()
    thread = threading.Thread(target=server.serve, args=(MessageStream(a, "controller"),), daemon=True)
    thread.start()
    ctl = MessageStream(b, "robot")
    ctl.send({"type": "hello", "protocol": 1, "task": HOPPER, "layout": "x"})
    hello = ctl.recv(30.0)
    assert hello["task"] == HOPPER and hello["control_period_s"] == pytest.approx(0.008)
    ctl.send({"type": "start", "seed": 0})
    state = ctl.recv(30.0)
    assert state["seq"] == 0 and state["stopped"] is None
    ctl.send({"type": "command", "seq": 0, "action": [0.1, float("nan"), 0.0]})
    for _ in range(200):
        state = ctl.recv(30.0)
        if state["stopped"]:
            break
    assert state["stopped"].startswith("invalid command: command: field 'action' holds nan")
    ctl.send({"type": "bye"})
    thread.join(30.0)
    assert not thread.is_alive() and server.stopped is not None


# ----------------------------------------------------------------------------- SimRobot process
def test_watchdog_stops_a_robot_that_gets_no_commands():
    # lock-step: the held command acts for one period only (in real time, a slow machine could let
    # it tip the robot over before the watchdog fires); the watchdog runs on the robot's wall clock
    robot = SimRobot(HOPPER, config={"robot": {"lockstep": True, "watchdog_ms": 500, "damping": 0.5}, **STEADY},
                     seed=1)
    try:
        info = robot.connect()
        assert info.watchdog_s == pytest.approx(0.5) and robot.pid is not None
        for _ in range(10):  # a healthy controller ...
            ob = robot.observe(30.0)
            robot.act(np.array([0.3, -0.3, 0.3]))
        pair = (ob, ob)
        for _ in range(2000):  # ... that stops sending commands but keeps listening
            pair = (pair[1], robot.observe(30.0))
            if pair[1].stopped:
                break
        ob = pair[1]
        assert ob.stopped is not None and ob.stopped.startswith("watchdog: no command for")
        silent_ms = int(re.match(r"watchdog: no command for (\d+) ms \(limit 500 ms\)", ob.stopped).group(1))
        assert silent_ms >= 500  # the robot's own measure: it waited the watchdog's time
        # what the robot applied after its stop is the damping command of the state before, not the held
        # command (a stopped robot damps in real time: take two consecutive states if the reader skipped one)
        for _ in range(2000):
            if pair[1].seq == pair[0].seq + 1:
                break
            pair = (pair[1], robot.observe(30.0))
        previous, ob = pair
        expected = np.clip(-0.5 * robot.layout.joint_vel(previous.readings), -1, 1)
        np.testing.assert_allclose(ob.applied, expected)
        assert not np.allclose(ob.applied, [0.3, -0.3, 0.3])
    finally:
        robot.disconnect()


def _deploy(policy, tmp_path, config, name, duration=5.0, on_tick=None, timeout_periods=PATIENT):
    robot = SimRobot(policy.task, config=config, seed=0, log_path=tmp_path / f"{name}.log")
    result = run_deployment(policy, robot, duration, tmp_path / name, on_tick=on_tick, handle_signals=False,
                            timeout_periods=timeout_periods)
    header, rows, end = read_log(result.directory)
    assert header["event"] == "start" and end["status"] == result.status and end["safe_stop"] is True
    assert (result.directory / "summary.json").is_file()
    assert (result.directory / "deploy.png").is_file() == bool(rows)
    return robot, result, rows


def test_killed_robot_process_stops_the_controller(policy, tmp_path):
    killed = []

    def kill_at_tick_10(tick, ob):
        if tick == 10:
            os.kill(robot_box[0].pid, signal.SIGKILL)
            killed.append(tick)

    robot_box = []
    robot = SimRobot(policy.task, config={"robot": LOCKSTEP, **STEADY}, seed=0)
    robot_box.append(robot)
    result = run_deployment(policy, robot, 5.0, tmp_path / "killed", on_tick=kill_at_tick_10, handle_signals=False,
                            timeout_periods=PATIENT)
    _, rows, end = read_log(result.directory)
    assert killed == [10]
    assert result.status == "fault" and result.exit_code == 3
    # the loss shows as a closed connection or as silence, whichever the kernel delivers first;
    # the reason then says what happened to the process
    assert result.reason.startswith(("ConnectionLost", "RobotTimeout"))
    assert "the SimRobot process was killed by signal 9 (SIGKILL)" in result.reason
    assert rows[-1]["tick"] <= 11  # at most the state already in flight when it died
    assert end["reason"] == result.reason and result.summary["status"] == "fault"


@pytest.mark.parametrize("fault, message", [
    ({"kind": "silent", "at_tick": 10}, "RobotTimeout: no observation from the robot within 2000 ms"),
    ({"kind": "late", "at_tick": 10, "delay_ms": 3000}, "RobotTimeout: no observation from the robot within 2000 ms"),
    ({"kind": "garble", "at_tick": 10}, "ProtocolError: garbled message"),
])
def test_silent_late_and_garbled_robots_stop_the_controller(policy, tmp_path, fault, message):
    # lock-step and a 2 s deadline: the fault at tick 10 is the only way this run can fail
    _, result, rows = _deploy(policy, tmp_path, {**STEADY, "robot": LOCKSTEP, "fault": fault}, fault["kind"],
                              timeout_periods=FAULT_PATIENCE)
    assert result.status == "fault" and result.exit_code == 3
    assert result.reason.startswith(message)
    # every state the robot sent before the fault was answered (a busy controller may skip to the
    # newest of two queued states), nothing after it
    assert rows[-1]["seq"] == 9 and [r["tick"] for r in rows] == list(range(len(rows)))
    assert all(r["action_sent"] is not None for r in rows)


def test_policy_for_another_task_or_layout_is_refused_by_name(policy, tmp_path):
    _, result, rows = _deploy(policy, tmp_path, {"robot": {"task": "rewardgym/Walker2d-Walk-v0"}}, "other-task")
    assert result.status == "refused" and result.exit_code == 2 and rows == []
    assert "was exported for rewardgym/Hopper-Hop-v0; robot 'sim' runs rewardgym/Walker2d-Walk-v0" in result.reason

    class OtherLayout:  # the same policy, claiming another observation layout
        def __getattr__(self, name):
            return getattr(policy, name)
        layout_digest = "0" * 64
    _, result, rows = _deploy(OtherLayout(), tmp_path, None, "other-layout")
    assert result.status == "refused" and "expects observation layout 000000000000" in result.reason


def test_nonfinite_policy_output_stops_with_a_host_clocked_driver(policy, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from robot_driver_template import TemplateRobot
    finally:
        sys.path.pop(0)

    class BreaksAtTick5:
        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(policy, name)

        def __call__(self, obs):
            self.calls += 1
            return np.full(3, np.nan, np.float32) if self.calls == 6 else policy(obs)

    robot = TemplateRobot(policy.task)
    result = run_deployment(BreaksAtTick5(), robot, 1.0, tmp_path / "nan", handle_signals=False)
    _, rows, _ = read_log(result.directory)
    assert result.status == "stopped" and result.reason.startswith("non-finite action from the policy")
    assert rows[-1]["tick"] == 5 and rows[-1]["action_raw"] == [None, None, None]
    assert "action_sent" not in rows[-1] and robot.stopped == result.reason and robot.hardware is None
    assert all(r["jitter_ms"] is not None for r in rows[1:])  # the loop kept the pace itself

    robot = TemplateRobot(policy.task)  # and a whole short run completes
    result = run_deployment(policy, robot, 0.1, tmp_path / "template", handle_signals=False)
    assert result.status == "completed" and result.summary["commands_sent"] == 13


def test_cli_deploy_logs_every_tick_and_stops_on_a_state_limit(tiny_hopper_exports, tmp_path):
    robot_cfg = tmp_path / "robot.toml"
    robot_cfg.write_text("[randomize]\nfriction = 0.8\nmass = 1.1\nlatency = 1\n"
                         "[robot]\nlockstep = true\nwatchdog_ms = 30000\n")
    out = tmp_path / "dep"
    result = _cli("deploy", tiny_hopper_exports["torchscript"], "--robot", f"sim:{robot_cfg}", "--duration", "0.2",
                  "--timeout-periods", PATIENT, "--trusted", "--out", out)
    assert result.exit_code == 0, result.output
    header, rows, end = read_log(out)
    assert header["robot"]["details"]["perturbation"] == {"friction": 0.8, "mass": 1.1, "latency": 1}
    assert end == {**end, "status": "completed", "ticks": 25}
    assert [r["tick"] for r in rows] == list(range(26)) and rows[-1]["seq"] >= 25
    for key in ("obs", "action_raw", "action_sent", "interventions", "latency_ms", "jitter_ms", "reward"):
        assert rows[5][key] is not None, key
    sent = {r["seq"]: r["action_sent"] for r in rows if r.get("action_sent")}
    for r in rows[1:]:  # the robot reports which command it applied: the one answering that state
        assert r["cmd_seq"] == -1 or r["applied"] == sent[r["cmd_seq"]]
    assert any(r["cmd_seq"] >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["commands_sent"] == 25 and summary["timing_ms"]["obs_to_action_latency"]["count"] == 25
    assert (out / "deploy.png").stat().st_size > 10_000 and (out / "simrobot.log").is_file()

    safety = tmp_path / "safety.toml"
    safety.write_text("max_tilt_rad = 0.05\nmax_delta = 0.05\n")
    lockstep = tmp_path / "lockstep.toml"  # the task's nominal physics, in lock-step
    lockstep.write_text("[robot]\nlockstep = true\nwatchdog_ms = 30000\n")
    result = _cli("deploy", tiny_hopper_exports["torchscript"], "--robot", f"sim:{lockstep}", "--duration", "5",
                  "--timeout-periods", PATIENT, "--trusted", "--safety", safety, "--out", tmp_path / "tilt")
    assert result.exit_code == 1, result.output
    assert "state limit: torso tilt" in result.output and "max_tilt_rad 0.05" in result.output
    summary = json.loads((tmp_path / "tilt" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["interventions"].get("rate", 0) > 0
    robot_log = (tmp_path / "tilt" / "simrobot.log").read_text()
    assert "safe stop: stop requested by the controller: state limit" in robot_log



def test_ctrl_c_ends_in_safe_stop_with_a_complete_log(tiny_hopper_exports, tmp_path):
    # real time, but nothing else may end the run first on a busy machine: a generous watchdog and
    # observation deadline, and a robot that cannot fall for a long while (no gravity; the safety
    # layer's rate limit keeps the policy's commands near zero)
    robot_cfg = tmp_path / "robot.toml"
    robot_cfg.write_text("[randomize]\ngravity = 0.0\n[robot]\nwatchdog_ms = 30000\n")
    safety = tmp_path / "safety.toml"
    safety.write_text("max_delta = 1e-6\n")
    out = tmp_path / "ctrl-c"
    proc = subprocess.Popen([sys.executable, "-m", "rewardgym.cli.main", "deploy", str(tiny_hopper_exports["onnx"]),
                             "--robot", f"sim:{robot_cfg}", "--safety", str(safety), "--duration", "120",
                             "--timeout-periods", str(PATIENT), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until it is really controlling
            log = out / "deploy.jsonl"
            if log.is_file() and log.read_text().count('"tick"') >= 20:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    _, rows, end = read_log(out)
    assert end["status"] == "interrupted" and end["reason"] == "Ctrl-C" and end["safe_stop"] is True
    assert len(rows) >= 20 and rows[-1]["tick"] == len(rows) - 1
    assert "safe stop: stop requested by the controller: Ctrl-C" in (out / "simrobot.log").read_text()
    assert (out / "summary.json").is_file() and (out / "deploy.png").is_file()


def test_simrobot_reproduces_the_training_simulator_while_commands_are_on_time(policy, tmp_path):
    """Socket, robot process, observation layout and safety layer add nothing of their own: in
    lock-step (timing taken out) the deployment is the simulator's episode from the same seed,
    observation for observation; in real time, the same holds while commands arrive in time."""
    import gymnasium as gym

    def simulator(seed, steps_of):
        env = gym.make(policy.task)
        obs, _ = env.reset(seed=seed)
        for row in steps_of:
            yield obs
            obs, *_ = env.step(np.asarray(row["action_sent"]))

    robot = SimRobot(policy.task, config={"robot": LOCKSTEP}, seed=7)
    result = run_deployment(policy, robot, 2.0, tmp_path / "lockstep", handle_signals=False, timeout_periods=PATIENT)
    _, rows, _ = read_log(result.directory)
    assert result.reason.endswith("the robot has fallen (the simulator's unhealthy test)")  # the tiny policy falls
    sent = [r for r in rows if r.get("action_sent")]
    assert len(sent) > 20 and all(r["cmd_seq"] == r["seq"] - 1 for r in rows[1:] if "stop" not in r)
    for row, obs in zip(sent, simulator(7, sent)):
        assert np.array_equal(np.asarray(row["obs"]), obs)  # JSON keeps float64 exactly

    robot = SimRobot(policy.task, seed=7)  # real time: identical up to the first late command
    result = run_deployment(policy, robot, 0.5, tmp_path / "realtime", handle_signals=False, timeout_periods=PATIENT)
    _, rows, _ = read_log(result.directory)
    for previous, row, obs in zip(rows, rows[1:], simulator(7, rows)):
        assert np.array_equal(np.asarray(previous["obs"]), obs)
        if row["cmd_seq"] != previous["seq"] or row["seq"] != previous["seq"] + 1:
            break  # from here on the robot held a command: the trajectories may part
