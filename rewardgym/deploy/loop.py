"""The deploy loop: an exported policy drives a :class:`~rewardgym.deploy.robot.Robot` through
the safety layer, every tick logged, every ending a ``safe_stop``.

One tick::

    observe (readings -> obs, built by the task's layout)  ->  policy(obs)  ->  safety layer
      ->  act(action)  ->  log {obs, raw action, sent action, interventions, timings}

Timing. With a robot-clocked driver (``robot.clock == "robot"``, e.g. :class:`SimRobot`)
the robot sets the rate and each observation opens a tick; with ``"host"`` the loop keeps
the task's control period itself with absolute deadlines (sleep, then a short spin). Per tick
the log has the interval since the previous observation, the **jitter** (that interval minus
the control period, or the tick's lateness for host-clocked robots) and the
**observation-to-action latency** (observation received -> command sent); the summary adds
``late_commands`` (commands the robot received after their period ended, so it held the
previous one) and ``skipped_states`` (robot states the controller skipped because a newer
one was already queued).

Endings (``DeploymentResult.status`` and the CLI's exit code):

==============  ====  ===========================================================================
``completed``   0     ran ``duration_s`` (``ceil(duration_s / period)`` commands)
``stopped``     1     the safety layer (non-finite action, state limit, e-stop) or the robot
                      (its watchdog, a fall, a stop) stopped it
``refused``     2     the policy's task or observation layout is not the robot's (nothing moved)
``fault``       3     the robot's connection was lost, it went silent or late (no observation
                      within ``timeout_periods`` = 2 control periods of the previous one, i.e. one
                      period after it was due), it sent a garbled message, or it flooded: more
                      than ``MAX_MESSAGES_PER_TICK`` (64) messages or ``MAX_BYTES_PER_TICK``
                      (4 MiB) within one control tick (``RobotFlood``; see
                      :mod:`rewardgym.deploy.protocol`: one tick's reading is bounded)
``error``       4     anything else went wrong in the controller (the traceback is in the log dir)
``interrupted`` 130   Ctrl-C
==============  ====  ===========================================================================

In every case ``safe_stop`` is sent (best effort when the link is gone: the robot's own
watchdog then stops it), and the deployment directory holds ``deploy.jsonl`` (a header line,
one line per tick, an ``end`` line), ``summary.json`` and ``deploy.png``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from rewardgym.files import atomic_write_text, save_figure
from rewardgym.deploy.protocol import ConnectionLost, ProtocolError, RobotError, RobotTimeout
from rewardgym.deploy.robot import Robot, RobotInfo, RobotObservation
from rewardgym.deploy.safety import EStop, SafetyConfig, SafetyLayer
from rewardgym.envs.observation import observation_layout

EXIT_CODES = {"completed": 0, "stopped": 1, "refused": 2, "fault": 3, "error": 4, "interrupted": 130}
LOG_NAME = "deploy.jsonl"


class DeploymentRefused(ValueError):
    """The policy does not fit the robot (another task, observation layout, rate or action size)."""


@dataclass
class DeploymentResult:
    """How a deployment ended (see the module docstring).

    Attributes:
        status: ``completed``, ``stopped``, ``refused``, ``fault``, ``error`` or ``interrupted``.
        reason: one sentence.
        directory: the deployment directory.
        summary: ``summary.json``'s content.
    """

    status: str
    reason: str
    directory: Path
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


class TickLog:
    """``deploy.jsonl`` written by a background thread: the control loop never waits on the disk.

    Lines are flushed as soon as the writer has them (a crash of the controller loses at
    most the lines still queued); :meth:`close` drains the queue and fsyncs.
    """

    def __init__(self, path: Path):
        self.path = path
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the writer thread
        self._thread = threading.Thread(target=self._run, name="deploy-log", daemon=True)
        self._thread.start()

    def write(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    def _run(self) -> None:
        while True:
            row = self._queue.get()
            if row is None:
                break
            try:
                line = json.dumps(row, allow_nan=False, default=_jsonable)
            except (TypeError, ValueError) as exc:  # never lose the rest of the log over one row
                line = json.dumps({"event": "log_error", "error": str(exc), "tick": row.get("tick")})
            self._file.write(line + "\n")
            if self._queue.empty():
                self._file.flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30.0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(values: np.ndarray) -> list[float | None]:
    """A list for JSON with non-finite entries as null (a NaN action is logged, not lost)."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def check_compatible(policy: Any, info: RobotInfo) -> None:
    """Refuse (by name) a policy that was exported for another task, layout, rate or action size."""
    if policy.task != info.task:
        raise DeploymentRefused(f"policy {policy.path} was exported for {policy.task}; robot {info.name!r} runs "
                                f"{info.task}")
    if policy.layout_digest != info.layout_digest:
        raise DeploymentRefused(f"policy {policy.path} expects observation layout {policy.layout_digest[:12]} of "
                                f"{policy.task}; robot {info.name!r} builds layout {info.layout_digest[:12]}")
    if abs(policy.control_period_s - info.control_period_s) > 1e-9:
        raise DeploymentRefused(f"policy {policy.path} was trained at a control period of "
                                f"{policy.control_period_s:g} s; robot {info.name!r} runs at "
                                f"{info.control_period_s:g} s")
    if policy.act_dim != info.action_size:
        raise DeploymentRefused(f"policy {policy.path} outputs {policy.act_dim} actions; robot {info.name!r} takes "
                                f"{info.action_size}")


@contextmanager
def _stop_on_signals(estop: EStop, enabled: bool) -> Iterator[dict[str, bool]]:
    """Ctrl-C and SIGTERM trigger the e-stop (a second Ctrl-C raises KeyboardInterrupt)."""
    state = {"interrupted": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_sigint(signum, frame):
        if state["interrupted"]:
            raise KeyboardInterrupt
        state["interrupted"] = True
        estop.trigger("Ctrl-C")

    def on_sigterm(signum, frame):
        estop.trigger("SIGTERM")

    previous = signal.signal(signal.SIGINT, on_sigint), signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def run_deployment(policy: Any, robot: Robot, duration_s: float, out_dir: str | Path,
                   safety: SafetyConfig | None = None, estop: EStop | None = None,
                   on_tick: Callable[[int, RobotObservation], None] | None = None,
                   first_observation_timeout_s: float = 30.0, timeout_periods: float = 2.0,
                   handle_signals: bool = True) -> DeploymentResult:
    """Drive ``robot`` with ``policy`` for ``duration_s`` seconds (see the module docstring).

    Args:
        policy: an :class:`~rewardgym.runs.export.ExportedPolicy` (task, layout digest, bounds,
            control period; called on ``(obs_dim,)`` float32).
        robot: any :class:`~rewardgym.deploy.robot.Robot`.
        duration_s: seconds of control (ticks = ``ceil(duration_s / control period)``).
        out_dir: the deployment directory (created).
        safety: the safety limits (defaults of :class:`SafetyConfig` when None).
        estop: an e-stop to honour (Ctrl-C and SIGTERM trigger it too).
        on_tick: called after every tick with ``(tick, observation)`` (monitoring, tests).
        first_observation_timeout_s: how long the robot may take to send its first observation.
        timeout_periods: a robot that sends nothing for this many control periods after the
            previous observation is a fault (2: stop one period after the observation was due).
        handle_signals: install the Ctrl-C/SIGTERM handlers (main thread only).
    """
    if not timeout_periods > 1.0:
        raise ValueError(f"timeout_periods must be > 1 (an observation is due every period), got {timeout_periods}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safety = safety or SafetyConfig()
    estop = estop or EStop()
    log = TickLog(out / LOG_NAME)
    status, reason = "error", "did not start"
    info: RobotInfo | None = None
    layer: SafetyLayer | None = None
    ticks = 0
    with _stop_on_signals(estop, handle_signals) as signals:
        try:
            info = robot.connect()
            log.write({"event": "start", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "task": policy.task,
                       "policy": str(policy.path), "policy_sha256": policy.manifest["policy"]["sha256"],
                       "robot": {"name": info.name, "task": info.task, "control_period_s": info.control_period_s,
                                 "watchdog_s": info.watchdog_s, "clock": robot.clock, "details": info.details},
                       "duration_s": duration_s, "safety": safety.to_dict(),
                       "action_names": list(observation_layout(policy.task).action_names)})
            check_compatible(policy, info)  # before the robot is armed: a refused policy moves nothing
            layer = SafetyLayer(safety, observation_layout(policy.task), policy.low, policy.high, estop)
            status, reason, ticks = _control(policy, robot, info, layer, duration_s, log, on_tick,
                                             first_observation_timeout_s, timeout_periods)
        except DeploymentRefused as exc:
            status, reason = "refused", str(exc)
        except (ConnectionLost, RobotTimeout, ProtocolError, RobotError) as exc:
            status, reason = "fault", f"{type(exc).__name__}: {exc}"
        except KeyboardInterrupt:
            status, reason = "interrupted", "Ctrl-C"
        except Exception as exc:  # noqa: BLE001 - any controller error must still end in safe_stop
            status, reason = "error", f"{type(exc).__name__}: {exc}"
            atomic_write_text(out / "error.txt", traceback.format_exc())
        finally:
            if signals["interrupted"] and status == "stopped":
                status, reason = "interrupted", "Ctrl-C"
            robot.safe_stop(reason)
            robot.disconnect()
            post_mortem = getattr(robot, "post_mortem", None)
            if status == "fault" and callable(post_mortem) and post_mortem():
                reason = f"{reason} ({post_mortem()})"
            log.write({"event": "end", "status": status, "reason": reason, "ticks": ticks,
                       "safe_stop": True, "interventions": layer.counts if layer is not None else {}})
            log.close()
    plot_deployment(out)
    summary = summarize_deployment(out)
    return DeploymentResult(status, reason, out, summary)


def _control(policy: Any, robot: Robot, info: RobotInfo, layer: SafetyLayer, duration_s: float, log: TickLog,
             on_tick: Callable[[int, RobotObservation], None] | None,
             first_timeout_s: float, timeout_periods: float) -> tuple[str, str, int]:
    """The loop itself; returns ``(status, reason, ticks)`` or raises a robot fault."""
    period = info.control_period_s
    total = max(1, math.ceil(duration_s / period - 1e-9))
    host_clock = robot.clock == "host"
    previous: float | None = None
    start: float | None = None
    cumulative = 0.0
    for tick in range(total + 1):
        if layer.estop.is_set():
            return "stopped", f"e-stop: {layer.estop.reason}", tick
        scheduled = None
        if host_clock and start is not None:
            scheduled = start + tick * period
            _sleep_until(scheduled)
        ob = robot.observe(first_timeout_s if tick == 0 else timeout_periods * period)
        received = ob.received_at
        if start is None:
            start = received
        interval = (received - previous) if previous is not None else None
        previous = received
        jitter = (received - scheduled) if scheduled is not None else (
            interval - period if interval is not None else None)
        cumulative += ob.reward or 0.0
        row: dict[str, Any] = {
            "tick": tick, "t": received - start, "seq": ob.seq, "robot_time": ob.robot_time,
            "obs": _finite(ob.obs), "reward": ob.reward, "return": cumulative,
            "tilt": layer.layout.torso_tilt(ob.readings), "height": layer.layout.torso_height(ob.readings),
            "applied": _finite(ob.applied) if ob.applied is not None else None, "cmd_seq": ob.cmd_seq,
            "interval_ms": interval * 1e3 if interval is not None else None,
            "jitter_ms": jitter * 1e3 if jitter is not None else None,
            "late_commands": ob.late_commands, "robot_overruns": ob.overruns,
        }
        if ob.stopped is not None:
            log.write({**row, "stop": ob.stopped})
            return "stopped", f"the robot safe-stopped itself: {ob.stopped}", tick
        if tick == total:
            log.write(row)
            return "completed", f"ran {duration_s:g} s ({total} control ticks)", tick
        t_policy = time.perf_counter()
        raw = np.asarray(policy(ob.obs.astype(np.float32)), dtype=np.float64)
        t_safety = time.perf_counter()
        result = layer.filter(raw, ob.readings)
        row.update(action_raw=_finite(raw), interventions=list(result.interventions),
                   policy_ms=(t_safety - t_policy) * 1e3)
        if result.stop is not None:
            log.write({**row, "stop": result.stop})
            return "stopped", result.stop, tick
        robot.act(result.action)
        sent = time.perf_counter()
        row.update(action_sent=_finite(result.action), latency_ms=(sent - received) * 1e3)
        log.write(row)
        if on_tick is not None:
            on_tick(tick, ob)
    raise AssertionError("unreachable")


def _sleep_until(deadline: float) -> None:
    """Sleep to ~1 ms before ``deadline`` (``time.perf_counter``), then spin to it."""
    left = deadline - time.perf_counter()
    if left > 1e-3:
        time.sleep(left - 1e-3)
    while time.perf_counter() < deadline:
        pass


# ----------------------------------------------------------------------------- summary and plot
def read_log(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """``(start header, tick rows, end line or None)`` of ``deploy.jsonl`` (a cut last line is ignored)."""
    header: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    end = None
    path = Path(directory) / LOG_NAME
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("event") == "start":
            header = row
        elif row.get("event") == "end":
            end = row
        else:
            rows.append(row)
    return header, rows, end


def _stats(values: list[float]) -> dict[str, float] | None:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return None
    return {"mean": float(arr.mean()), "std": float(arr.std()), "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max()), "count": int(arr.size)}


def summarize_deployment(directory: str | Path) -> dict[str, Any]:
    """``summary.json`` from ``deploy.jsonl`` (works on the log of a crashed controller too)."""
    directory = Path(directory)
    header, rows, end = read_log(directory)
    period = header.get("robot", {}).get("control_period_s")
    sent = [r for r in rows if r.get("action_sent") is not None]
    counts: dict[str, int] = {}
    for r in rows:
        for name in r.get("interventions") or []:
            counts[name] = counts.get(name, 0) + 1
    last = rows[-1] if rows else {}
    summary = {
        "status": end["status"] if end else "unknown (the controller died before writing its end line)",
        "reason": end["reason"] if end else None,
        "task": header.get("task"), "policy": header.get("policy"), "robot": header.get("robot"),
        "ticks": len(rows), "commands_sent": len(sent),
        "duration_s": last.get("t"), "return": last.get("return"),
        "control_period_ms": period * 1e3 if period else None,
        "timing_ms": {
            "interval": _stats([r.get("interval_ms") for r in rows]),
            "abs_jitter": _stats([abs(r["jitter_ms"]) for r in rows if r.get("jitter_ms") is not None]),
            "obs_to_action_latency": _stats([r.get("latency_ms") for r in sent]),
            "policy": _stats([r.get("policy_ms") for r in rows if r.get("policy_ms") is not None]),
        },
        "late_commands": last.get("late_commands"), "robot_overruns": last.get("robot_overruns"),
        "skipped_states": int(sum(max(0, b["seq"] - a["seq"] - 1) for a, b in zip(rows, rows[1:]))),
        "interventions": counts,
        "files": [name for name in (LOG_NAME, "summary.json", "deploy.png", "error.txt")
                  if name == "summary.json" or (directory / name).is_file()],
    }
    atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def plot_deployment(directory: str | Path) -> Path | None:
    """``deploy.png``: actions (raw vs sent), torso state, timing, return; interventions marked
    (None, and no file, when no tick was logged)."""
    directory = Path(directory)
    header, rows, end = read_log(directory)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray([r["t"] for r in rows])
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    names = header.get("action_names") or []
    for j in range(len(rows[0].get("action_raw") or rows[0].get("applied") or [])):
        raw = [(r.get("action_raw") or [None] * (j + 1))[j] for r in rows]
        sent = [(r.get("action_sent") or [None] * (j + 1))[j] for r in rows]
        line, = axes[0].plot(t, [np.nan if v is None else v for v in sent], lw=1,
                             label=names[j] if j < len(names) else f"a{j}")
        axes[0].plot(t, [np.nan if v is None else v for v in raw], lw=0.8, ls=":", color=line.get_color())
    axes[0].set_ylabel("action (solid sent, dotted raw)")
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[1].plot(t, [r["height"] for r in rows], label="torso height (m)")
    axes[1].plot(t, [r["tilt"] for r in rows], label="torso tilt (rad)")
    axes[1].legend(fontsize=7, loc="upper right")
    axes[1].set_ylabel("state")
    axes[2].plot(t, [np.nan if r.get("interval_ms") is None else r["interval_ms"] for r in rows], lw=0.8,
                 label="observation interval (ms)")
    axes[2].plot(t, [np.nan if r.get("latency_ms") is None else r["latency_ms"] for r in rows], lw=0.8,
                 label="obs-to-action latency (ms)")
    axes[2].set_ylabel("timing (ms)")
    axes[2].legend(fontsize=7, loc="upper right")
    axes[3].plot(t, [r.get("return") or 0.0 for r in rows])
    axes[3].set_ylabel("return (robot reward)")
    axes[3].set_xlabel("time since the first observation (s)")
    for r in rows:
        if r.get("interventions"):
            for ax in axes:
                ax.axvline(r["t"], color="orange", alpha=0.15, lw=0.5)
    title = f"{header.get('task')} on {header.get('robot', {}).get('name')}: "
    title += f"{end['status']} — {end['reason']}" if end else "no end line"
    fig.suptitle(title[:160], fontsize=9)
    fig.tight_layout()
    return save_figure(fig, directory / "deploy.png")
