"""A hostile robot: input from a robot is bounded per control tick, not only per message.

A robot that floods the controller with valid small frames (one state per period is the
protocol) must not make it read, decode or queue without bound: one tick reads at most
``MAX_MESSAGES_PER_TICK`` messages and ``MAX_BYTES_PER_TICK`` bytes, and more is a robot
fault (``RobotFlood``): safe stop, ``summary.json``, the ``end`` line, exit 3.

Assertions are on events, files, exit codes and byte counts, never on how fast this machine
is; every wait is bounded and generous. All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from rewardgym.deploy.loop import read_log
from rewardgym.deploy.protocol import (MAX_BYTES_PER_TICK, MAX_MESSAGES_PER_TICK, PROTOCOL_VERSION, MessageStream,
                                       ProtocolError, ReadBudget, RobotError, RobotFlood, encode)
from rewardgym.envs.observation import observation_layout

HOPPER = "rewardgym/Hopper-Hop-v0"


def _state(seq: int) -> dict:
    """A well-formed Hopper state (upright, still): every field the controller checks is valid."""
    return {"type": "state", "seq": seq, "time": seq * 0.008, "readings": {"qpos": [0.0, 1.25, 0.0, 0.0, 0.0, 0.0],
                                                                           "qvel": [0.0] * 6},
            "reward": 0.0, "terminated": False, "stopped": None}


# ----------------------------------------------------------------------------- the stream's budget
def test_one_tick_reads_a_bounded_number_of_messages():
    a, b = socket.socketpair()
    try:
        controller = MessageStream(b, "robot")
        a.sendall(b"".join(encode(_state(i)) for i in range(MAX_MESSAGES_PER_TICK)))
        assert [m["seq"] for m in controller.recv_ready()] == list(range(MAX_MESSAGES_PER_TICK))  # a backlog: fine

        a.sendall(b"".join(encode(_state(i)) for i in range(3 * MAX_MESSAGES_PER_TICK)))
        budget = ReadBudget()
        with pytest.raises(RobotFlood, match=f"flood: the robot sent more than {MAX_MESSAGES_PER_TICK} messages "
                                             "within one control tick") as caught:
            controller.recv_ready(budget)
        assert isinstance(caught.value, ProtocolError)  # a robot fault like any garbled message
        assert budget.messages == MAX_MESSAGES_PER_TICK  # it stopped at the bound, did not read the rest first

        # past its deadline a tick reads nothing more from the socket (the rest waits for the next tick)
        c, d = socket.socketpair()
        try:
            late = MessageStream(d, "robot")
            c.sendall(encode(_state(0)) * 3)
            assert late.recv_ready(ReadBudget(deadline=0.0)) == []
            assert len(late.recv_ready()) == 3
        finally:
            c.close()
            d.close()
    finally:
        a.close()
        b.close()


def test_one_tick_reads_a_bounded_number_of_bytes():
    """Frames of almost the largest size: the fifth exceeds one tick's bytes, whatever the count."""
    a, b = socket.socketpair()
    big = encode({"type": "state", "pad": b"x" * 1_000_000})
    assert 4 * len(big) <= MAX_BYTES_PER_TICK < 5 * len(big)
    sender = threading.Thread(target=lambda: _send_quietly(a, big * 6), daemon=True)
    sender.start()
    try:
        controller = MessageStream(b, "robot")
        budget = ReadBudget()
        with pytest.raises(RobotFlood, match=f"flood: the robot sent more than {MAX_BYTES_PER_TICK} bytes"):
            for _ in range(6):  # one tick: every read is charged to the same budget
                assert controller.recv(30.0, budget) is not None
        assert budget.messages == 4 and budget.bytes == MAX_BYTES_PER_TICK
    finally:
        b.close()
        sender.join(timeout=30.0)
        a.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(30.0)
        sock.sendall(data)
    except OSError:
        pass  # the reader closed: that is the point


# ----------------------------------------------------------------------------- a flooding robot server
class FloodingRobot(threading.Thread):
    """A robot server on 127.0.0.1 that answers ``hello`` correctly, then, after ``start``, sends
    valid states as fast as the socket takes them: at most ``max_bytes`` and for ``max_s`` seconds,
    then it closes by itself (:meth:`stop` ends a wait for a controller that never came).
    ``sent`` counts the bytes the controller's kernel accepted."""

    def __init__(self, max_bytes: int = 128 << 20, max_s: float = 60.0, accept_s: float = 240.0):
        super().__init__(name="flooding-robot", daemon=True)
        self.layout = observation_layout(HOPPER)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.max_bytes, self.max_s, self.accept_s = max_bytes, max_s, accept_s
        self.sent = 0
        self.events: list[str] = []
        self._quit = threading.Event()

    def stop(self) -> None:
        self._quit.set()

    def _accept(self) -> socket.socket | None:
        deadline = time.monotonic() + self.accept_s
        try:
            while not self._quit.is_set() and time.monotonic() < deadline:
                try:
                    return self.listener.accept()[0]
                except socket.timeout:
                    continue
            return None
        finally:
            self.listener.close()

    def run(self) -> None:
        conn = self._accept()
        if conn is None:
            self.events.append("no controller")
            return
        stream = MessageStream(conn, "controller")
        try:
            hello = stream.recv(120.0)
            assert hello is not None and hello["type"] == "hello", hello
            stream.send({"type": "hello", "protocol": PROTOCOL_VERSION, "task": self.layout.task,
                         "layout": self.layout.digest, "control_period_s": self.layout.control_period_s,
                         "action_size": len(self.layout.action_names), "watchdog_s": None, "robot": "flood",
                         "details": {}})
            start = stream.recv(120.0)
            assert start is not None and start["type"] == "start", start
            self.events.append("started")
            self._flood(conn)
        except (RobotError, AssertionError, OSError) as exc:
            self.events.append(f"{type(exc).__name__}: {exc}")
        finally:
            stream.close()

    def _flood(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.max_s
        seq = 0
        while self.sent < self.max_bytes and time.monotonic() < deadline:
            block = memoryview(b"".join(encode(_state(seq + i)) for i in range(512)))
            seq += 512
            while block:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.events.append("time limit")
                    return
                if not select.select([], [conn], [], min(left, 1.0))[1]:
                    continue  # the controller does not read (it stopped): wait, bounded by the deadline
                try:
                    n = conn.send(block)
                except BlockingIOError:
                    continue
                except OSError as exc:  # the controller closed the connection
                    self.events.append(f"closed by the controller ({exc.strerror or exc})")
                    return
                self.sent += n
                block = block[n:]
        self.events.append("byte limit")


def _wait_with_rusage(proc: subprocess.Popen, timeout_s: float) -> tuple[int, int]:
    """``(exit code, peak RSS in KiB)`` of ``proc`` (``wait4``: this child's own peak, not the test's)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            pytest.fail(f"the controller did not end within {timeout_s:g} s (exit {proc.returncode} after SIGKILL)")
        time.sleep(0.05)


def _deploy_cli(policy, port: int, out, tmp_path) -> tuple[int, int, str]:
    """``rewardgym deploy POLICY --robot tcp://127.0.0.1:PORT`` for up to 600 s of control, in a
    subprocess: ``(exit code, its peak RSS in KiB, its output)``."""
    with open(tmp_path / f"{out.name}.out", "w") as stdout, open(tmp_path / f"{out.name}.err", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "rewardgym.cli.main", "deploy", str(policy),
                                 "--robot", f"tcp://127.0.0.1:{port}", "--duration", "600", "--out", str(out)],
                                stdout=stdout, stderr=stderr, start_new_session=True)
        code, peak_kib = _wait_with_rusage(proc, timeout_s=300.0)
    return code, peak_kib, (tmp_path / f"{out.name}.out").read_text() + (tmp_path / f"{out.name}.err").read_text()


def test_a_flooding_robot_is_a_robot_fault_with_bounded_memory(tiny_hopper_exports, tmp_path):
    policy = tiny_hopper_exports["onnx"]
    # the controller's peak memory without any flood: the same command against a port that refuses
    # (it loads the policy, fails to connect, writes its summary: a robot fault with no tick)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections to it are refused
        code, baseline_kib, output = _deploy_cli(policy, closed.getsockname()[1], tmp_path / "refused", tmp_path)
    assert code == 3 and "ConnectionLost" in output, output

    robot = FloodingRobot()
    robot.start()
    out = tmp_path / "flood"
    try:
        code, peak_kib, output = _deploy_cli(policy, robot.port, out, tmp_path)
    finally:
        robot.stop()
        robot.join(timeout=120.0)
    assert not robot.is_alive(), robot.events
    assert "started" in robot.events, (robot.events, output)

    # the robot-fault ending, like a lost, silent or garbled robot: exit 3, not a MemoryError
    assert code == 3, output
    assert "MemoryError" not in output and "Traceback" not in output, output
    assert f"fault: RobotFlood: flood: the robot sent more than {MAX_MESSAGES_PER_TICK} messages within one " \
           "control tick" in " ".join(output.split()), output
    header, rows, end = read_log(out)
    assert header["robot"]["name"] == "flood"
    assert end is not None and end["status"] == "fault" and end["safe_stop"] is True
    assert end["reason"].startswith(f"RobotFlood: flood: the robot sent more than {MAX_MESSAGES_PER_TICK} messages")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "fault" and "flood" in summary["reason"]
    assert not (out / "error.txt").exists()

    # bounded: the controller stopped reading after a bounded number of frames per tick, so the
    # robot could push only that plus the kernel's socket buffers, a small part of its flood; and the
    # controller's peak memory grew by far less than the flood would take: read and decoded without a
    # bound, 128 MiB of these frames grow it by several hundred MiB (the margin left here covers
    # matplotlib, imported for the plot when a tick was logged before the flood was seen)
    assert robot.sent < 32 << 20 < robot.max_bytes, (robot.sent, robot.events)
    assert any(e.startswith("closed by the controller") for e in robot.events), robot.events
    growth_mib = (peak_kib - baseline_kib) / 1024
    assert growth_mib < 160, f"peak RSS {peak_kib / 1024:.0f} MiB, {baseline_kib / 1024:.0f} MiB without the flood"
