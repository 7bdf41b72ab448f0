"""run_with_limits: results, timeouts, memory limits, child errors, no zombies or orphans."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rewardgym.rewards.limits import (ChildError, LimitExceeded, ProgramMemoryError, ProgramTimeout,
                                      run_with_limits)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits are Linux-specific")


# -- functions run in the child (module level: picklable) ---------------------------------
def add_arrays(a, b, scale=1.0):
    return (a + b) * scale


def spin_forever():
    x = 0
    while True:
        x += 1


def allocate_gib(gib: float):
    block = np.ones(int(gib * 2**30) // 8)  # touches every page
    return float(block.sum())


def allocate_wrapped(gib: float):
    try:
        return allocate_gib(gib)
    except MemoryError as exc:
        raise RuntimeError("reward.py:2: error in compute_reward") from exc


def raise_value_error():
    values = [1.0, 2.0]
    raise ValueError(f"bad reward scale {values[1]}")  # the line the test looks for


def start_sleeper_then_spin(pid_file: str):
    proc = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(proc.pid))
    spin_forever()


def exit_hard():
    os._exit(3)


def torch_matmul():
    import torch

    a = torch.ones(300, 300, dtype=torch.float64)
    return float((a @ a).sum())


def _children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is ``pid`` (other tests' idle reward workers,
    which live as long as their programs, are not counted)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and "(rg-reward-wkr)" not in stat:
            out.append((int(entry.name), fields[0]))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _wait_until_dead(pid: int, hang_s: float = 120.0) -> bool:
    """Wait for ``pid`` to exit (a zombie counts: its parent, not this test, reaps it); whether it
    died, not how fast: ``hang_s`` only keeps a broken kill from hanging the suite. A pidfd
    (Linux 5.3+) wakes on the exit itself; without one, the process state is polled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already gone
    except (AttributeError, OSError):  # no pidfd on this kernel
        deadline = time.monotonic() + hang_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return not _alive(pid)
    try:
        select.select([fd], [], [], hang_s)
    finally:
        os.close(fd)
    return not _alive(pid)


# -- tests ------------------------------------------------------------------------------------
def test_returns_the_value_and_leaves_no_child():
    out = run_with_limits(add_arrays, args=(np.arange(3.0), np.ones(3)), kwargs={"scale": 2.0},
                          timeout_s=10, memory_mb=512, what="add")
    np.testing.assert_array_equal(out, [2.0, 4.0, 6.0])
    assert _children_of(os.getpid()) == []


def test_infinite_loop_times_out_at_the_limit():
    start = time.monotonic()
    with pytest.raises(ProgramTimeout) as info:
        run_with_limits(spin_forever, timeout_s=1.0, memory_mb=256, what="reward program loop.py")
    waited = time.monotonic() - start
    assert waited >= 1.0  # not stopped before its limit (that it stopped at all: pytest's own timeout)
    assert "reward program loop.py" in str(info.value) and "1 s" in str(info.value)
    assert isinstance(info.value, LimitExceeded) and info.value.limit == 1.0
    assert _children_of(os.getpid()) == []  # killed and reaped: no zombie


def test_timeout_also_kills_what_the_child_started(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    with pytest.raises(ProgramTimeout):
        run_with_limits(start_sleeper_then_spin, args=(str(pid_file),), timeout_s=1.0, memory_mb=None,
                        what="spawner")
    sleeper = int(pid_file.read_text())
    assert _wait_until_dead(sleeper), f"the child's own child {sleeper} outlived the timeout"


def test_allocating_4_gib_under_512_mib_is_a_memory_error():
    with pytest.raises(ProgramMemoryError) as info:
        run_with_limits(allocate_gib, args=(4.0,), timeout_s=20, memory_mb=512, what="hog")
    assert "512 MiB" in str(info.value) and info.value.limit == 512
    # the same allocation size fits when the limit allows it (the limit is what failed)
    assert run_with_limits(allocate_gib, args=(0.1,), timeout_s=20, memory_mb=512, what="small") > 0


def test_wrapped_memory_error_is_still_a_memory_error():
    with pytest.raises(ProgramMemoryError, match="reward.py:2: error in compute_reward"):
        run_with_limits(allocate_wrapped, args=(4.0,), timeout_s=20, memory_mb=512, what="hog")


def test_child_exception_carries_type_message_and_original_line():
    with pytest.raises(ChildError) as info:
        run_with_limits(raise_value_error, timeout_s=10, memory_mb=512, what="reward program bad.py")
    err = info.value
    assert err.exc_type == "ValueError"
    assert err.exc_message == "bad reward scale 2.0"
    line = raise_value_error.__code__.co_firstlineno + 2
    assert f'{__file__}", line {line}, in raise_value_error' in err.child_traceback
    assert "the line the test looks for" in err.child_traceback
    assert str(err).startswith("reward program bad.py failed in the child process: ValueError")


def test_child_dying_without_result_is_reported():
    with pytest.raises(ChildError, match="exited with code 3") as info:
        run_with_limits(exit_hard, timeout_s=10, memory_mb=None, what="crash")
    assert info.value.exc_type == "ChildCrashed"


def test_fork_after_parent_used_torch_threads_does_not_hang():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(500, 500)
        (a @ a).sum()  # the parent runs an OpenMP parallel region
        # without torch.set_num_threads(1) in the child this hangs (libgomp) -> ProgramTimeout
        assert run_with_limits(torch_matmul, timeout_s=10, memory_mb=None, what="torch") == 300.0 ** 3
    finally:
        torch.set_num_threads(threads)


def test_spawn_start_method():
    out = run_with_limits(add_arrays, args=(1.0, 2.0), timeout_s=60, memory_mb=None, what="spawned",
                          start_method="spawn")
    assert out == 3.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s"):
        run_with_limits(add_arrays, args=(1, 2), timeout_s=0, memory_mb=None, what="x")
    with pytest.raises(ValueError, match="memory_mb"):
        run_with_limits(add_arrays, args=(1, 2), timeout_s=1, memory_mb=0, what="x")
