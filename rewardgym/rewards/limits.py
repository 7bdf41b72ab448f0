"""Run a function in a child process under a wall-clock and an address-space limit.

``rewardgym check`` and the LLM synthesis loop evaluate untrusted reward programs on
random rollouts with :func:`run_with_limits`: an infinite loop, a runaway allocation or a
crash in the program (or in the simulator it drives) costs the caller a
:class:`LimitExceeded` / :class:`ChildError`, never a hang or a dead process.

Design decisions
----------------
* **Start method.** ``"fork"`` on Linux by default: the child starts in milliseconds
  with every module the parent has imported (simulators, numba caches), which matters in
  a synthesis loop that checks hundreds of programs. Forking a multi-threaded parent is
  only unsafe when the child needs a lock or thread pool that another parent thread held;
  the libraries here cope: glibc's malloc and OpenBLAS install ``pthread_atfork``
  handlers, PyTorch re-creates its intra-op pool in a forked child, and the prelude's
  numba kernels are serial (no numba thread pool exists). The one known trap, GNU OpenMP
  (libgomp, used by torch's CPU kernels) after the parent ran a parallel region, is
  avoided by setting ``torch.set_num_threads(1)`` in the child before anything runs (a
  one-thread region never touches the inherited pool). Pass ``start_method="forkserver"``
  (clean single-threaded server, children forked from it; functions and arguments must
  be importable/picklable) or ``"spawn"`` (fresh interpreter, ~1-3 s per call) when the
  parent holds state a fork must not copy (CUDA contexts, open sockets). Non-Linux
  platforms default to ``"spawn"``.
* **Memory.** ``RLIMIT_AS`` in the child bounds its *address space*; an allocation past
  it fails with :class:`MemoryError` inside the child, reported as
  :class:`ProgramMemoryError` (also when the MemoryError was wrapped, e.g. in a
  ``RewardProgramError``; the message keeps the outer error's file and line). A forked child inherits the parent's mappings (several
  GiB of address space once torch is imported), so the limit is set to the child's
  address space at start plus ``memory_mb``: ``memory_mb`` is what the function itself
  may add. Linux only (``RLIMIT_AS`` is not enforced on macOS; there the limit is skipped).
* **Time.** The parent waits on the result pipe and the child's exit with a deadline and
  SIGKILLs the child's whole process group on expiry (the child calls ``setsid``, so
  simulator subprocesses it spawned die with it), then reaps it: no zombies, no orphans.
* **Errors.** An exception in the child is re-raised in the parent as :class:`ChildError`
  carrying the child's exception type name, message and formatted traceback (the
  original file and line); the type itself is not unpickled in the parent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from rewardgym.rewards.worker import address_space_bytes, caused_by


class LimitExceeded(RuntimeError):
    """The child ran past a limit. ``what`` names the work, ``limit`` is seconds or MiB."""

    def __init__(self, message: str, what: str, limit: float):
        super().__init__(message)
        self.what = what
        self.limit = limit


class ProgramTimeout(LimitExceeded):
    """The child did not finish within ``timeout_s`` seconds of wall-clock time."""


class ProgramMemoryError(LimitExceeded):
    """The child tried to use more than ``memory_mb`` MiB of additional address space."""


class ChildError(RuntimeError):
    """The function raised in the child (or the child died without a result).

    Attributes:
        what: the work that failed (the ``what`` argument).
        exc_type: the child's exception class name (e.g. ``"ValueError"``); for a child
            killed by a signal, ``"ChildCrashed"``.
        exc_message: ``str()`` of the child's exception.
        child_traceback: the child's formatted traceback (``""`` when it crashed).
    """

    def __init__(self, what: str, exc_type: str, exc_message: str, child_traceback: str = ""):
        text = f"{what} failed in the child process: {exc_type}: {exc_message}"
        if child_traceback:
            text += "\n\nChild traceback:\n" + child_traceback.rstrip()
        super().__init__(text)
        self.what = what
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.child_traceback = child_traceback


def default_start_method() -> str:
    """``"fork"`` on Linux (fast; see the module docstring), ``"spawn"`` elsewhere."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _child_main(conn: Connection, fn: Callable[..., Any], args: tuple, kwargs: dict,
                memory_mb: int | None) -> None:
    """Child entry: own process group, limits, run ``fn``, send ``(status, payload)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it stops this child
    try:
        os.setsid()
    except OSError:
        pass
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a core file
        if memory_mb is not None and sys.platform.startswith("linux"):
            base = address_space_bytes() or 0
            limit = base + int(memory_mb) * 2**20
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # no resource module / not permitted
        pass
    torch = sys.modules.get("torch")
    if torch is not None:  # GNU OpenMP's inherited pool is unusable after fork; stay serial
        torch.set_num_threads(1)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        if memory_mb is not None and caused_by(exc, MemoryError):  # also when wrapped (raise ... from)
            _send(conn, ("memory", f"{type(exc).__name__}: {exc}"))
        else:
            _send(conn, ("error", (type(exc).__name__, str(exc), traceback.format_exc())))
        return
    _send(conn, ("ok", result))


def _send(conn: Connection, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except MemoryError:
        conn.send(("memory", "MemoryError while sending the result"))
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
        conn.send(("error", (type(exc).__name__, f"cannot send the result to the parent: {exc}",
                             traceback.format_exc())))
    finally:
        conn.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_group(proc: mp.process.BaseProcess) -> None:
    """SIGKILL the child's process group (itself and anything it started)."""
    pid = proc.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            proc.kill()
        except (ProcessLookupError, OSError):
            pass


def run_with_limits(fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None, *,
                    timeout_s: float, memory_mb: int | None, what: str,
                    start_method: str | None = None) -> Any:
    """Run ``fn(*args, **kwargs)`` in a child process with limits and return its result.

    Args:
        fn: a module-level (picklable) function; its arguments and result must pickle.
        args, kwargs: the call's arguments.
        timeout_s: wall-clock limit in seconds, from the child's start to its result.
        memory_mb: address space (MiB) the child may add beyond what it has at start;
            ``None`` for no memory limit.
        what: what is being run, e.g. ``"reward program r.py on rewardgym/Hopper-Hop-v0"``;
            it starts every error message.
        start_method: multiprocessing start method; default :func:`default_start_method`.

    Raises:
        ProgramTimeout: no result within ``timeout_s`` (the child is killed).
        ProgramMemoryError: the child hit the memory limit (MemoryError, or it was killed
            by a signal while a memory limit was set).
        ChildError: ``fn`` raised (type name, message and the child's traceback), or the
            child died without a result.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if memory_mb is not None and memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive or None, got {memory_mb}")
    ctx = mp.get_context(start_method or default_start_method())
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send_conn, fn, tuple(args), dict(kwargs or {}), memory_mb),
                       name=f"rewardgym-limited: {what}"[:120])
    deadline = time.monotonic() + timeout_s
    proc.start()
    send_conn.close()  # the child holds the write end; EOF on recv means it died
    message: tuple[str, Any] | None = None
    timed_out = False
    try:
        while message is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready = wait([recv_conn, proc.sentinel], timeout=remaining)
            if recv_conn in ready:
                try:
                    message = recv_conn.recv()
                except EOFError:  # died without sending
                    break
                except Exception as exc:  # noqa: BLE001 - e.g. the result's class is not importable here
                    message = ("error", (type(exc).__name__, f"cannot receive the result: {exc}",
                                         traceback.format_exc()))
            elif proc.sentinel in ready:
                if recv_conn.poll(0):
                    continue  # the result arrived together with the exit
                break
    finally:
        if message is not None:
            proc.join(timeout=1.0)  # it exits right after sending
        _kill_group(proc)  # the child if still running, and anything it started
        proc.join()
        recv_conn.close()
        exitcode = proc.exitcode
        proc.close()
    if message is None:
        if timed_out:
            raise ProgramTimeout(f"{what}: no result within the time limit of {timeout_s:g} s "
                                 f"(child killed)", what, timeout_s)
        if exitcode is not None and exitcode < 0 and memory_mb is not None \
                and -exitcode in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
            raise ProgramMemoryError(
                f"{what}: child killed by {_signal_name(-exitcode)} with a memory limit of "
                f"{memory_mb} MiB set (most likely out of memory)", what, memory_mb)
        reason = (f"killed by {_signal_name(-exitcode)}" if exitcode is not None and exitcode < 0
                  else f"exited with code {exitcode}")
        raise ChildError(what, "ChildCrashed", f"the child process {reason} without a result")
    status, payload = message
    if status == "ok":
        return payload
    if status == "memory":
        raise ProgramMemoryError(f"{what}: exceeded the memory limit of {memory_mb} MiB ({payload})",
                                 what, memory_mb)
    exc_type, exc_message, tb = payload
    raise ChildError(what, exc_type, exc_message, tb)
