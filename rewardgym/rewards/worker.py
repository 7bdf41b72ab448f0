"""Untrusted reward programs run in a worker process: the same limits in every run.

Every untrusted :class:`~rewardgym.rewards.program.RewardProgram` executes in its own
*reward worker*, a child process forked on the program's first call, whatever started it
(``gym.make``/``make_vec``, ``rewardgym check``, ``train``, ``eval``, synthesis training
workers). The program's code never runs in the caller's process, so nothing it does can
reach the simulator, the agent, the reported ``info`` or the caller's files:

* **Isolation** (after ``fork``, before the program's first line): its own session (Ctrl-C
  at the terminal reaches the caller only, which decides), death with the parent
  (``PR_SET_PDEATHSIG``), every inherited file descriptor closed except its three pipes,
  no core files, an address-space limit (``RLIMIT_AS``), and, where ``libseccomp`` exists
  (Linux), a system-call allow-list: reading and writing its pipes, memory, clocks and
  exit. Opening files, sockets, processes, signals to others and raising its own limits
  fail with ``EPERM``. :attr:`ProgramWorker.seccomp` tells whether that layer is on.
* **Data in**: the raw batch (and the previous one) is copied into shared memory each call
  (``mmap``, inherited at fork) and exposed to the program as read-only arrays (numpy) or
  inference-mode tensors (torch, which refuse in-place writes). Strings and other objects
  travel pickled from the caller to the worker (trusted to untrusted only).
* **Data out**: the reward and terms come back as float64 in shared memory plus a small
  JSON header. Nothing from the worker is ever unpickled; the caller re-checks shapes and
  finiteness (:mod:`rewardgym.rewards.program`).
* **Limits**: a wall-clock limit per call (:attr:`ProgramLimits.timeout_s`; the first call
  also runs the module body) and a memory limit (:attr:`ProgramLimits.memory_mb`). A call
  past its time is ended: the worker's stack is dumped (``faulthandler`` on ``SIGUSR1``)
  to name the program line it was executing, then it is killed. A crash (a C stack
  overflow from deeply nested calls, a fatal signal) is reported the same way, with the
  line where ``faulthandler`` caught it. Each ends as a :class:`RewardProgramError` naming
  the file and line; the next call starts a fresh worker.

Cost: one round trip through two pipes and two ``memcpy`` s per call (see
``benchmarks/reward_overhead.py``, column "isolated"); ``trusted=True`` runs in-process
with none of this.
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import json
import math
import mmap
import os
import pickle
import re
import select
import signal
import sys
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from rewardgym.threads import limit_process

_ALIGN = 64
_MAX_REPLY_BYTES = 1 << 20
_MAX_TERMS = 64
_MAX_MESSAGE = 4000


class RewardProgramError(RuntimeError):
    """A reward program failed at run time; the message names file, line and term.

    Attributes:
        filename: the program's file (or pseudo-file name).
        line: 1-based line in the program, when known.
        term: the term that was bad (``"reward"`` for the total), when relevant.
        kind: ``"error"`` (an exception or a bad value), ``"timeout"`` (past the per-call
            time limit), ``"memory"`` (past the memory limit) or ``"crash"`` (the worker
            died, e.g. a C stack overflow).
    """

    def __init__(self, message: str, filename: str, line: int | None = None, term: str | None = None,
                 kind: str = "error"):
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.term = term
        self.kind = kind


@dataclass(frozen=True)
class ProgramLimits:
    """Limits of an untrusted reward program, enforced by its worker process.

    Attributes:
        timeout_s: wall-clock seconds one call may take (one batch through
            ``compute_reward``, ``compute_potential`` or ``compute_success``). Generous by
            default: a reward call takes micro- to milliseconds.
        memory_mb: address space (MiB) the worker may add to what it has when it starts.
    """

    timeout_s: float = 10.0
    memory_mb: int = 1024

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"reward program time limit must be a positive number of seconds, got {self.timeout_s!r}")
        if not (isinstance(self.memory_mb, int) and not isinstance(self.memory_mb, bool) and self.memory_mb > 0):
            raise ValueError(f"reward program memory limit must be a positive number of MiB, got {self.memory_mb!r}")

    @classmethod
    def of(cls, value: "ProgramLimits | dict[str, Any] | None") -> "ProgramLimits":
        """``value`` as limits: ``None`` gives the defaults, a dict its fields (unknown keys are errors)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"timeout_s", "memory_mb"}
            if unknown:
                raise ValueError(f"unknown reward limit(s) {sorted(unknown)}; use timeout_s and memory_mb")
            return cls(**value)
        raise TypeError(f"reward limits must be ProgramLimits or a dict, got {type(value).__name__}")


# -- the system-call allow-list (seccomp) ----------------------------------------------------
SYSCALL_ALLOWLIST: tuple[str, ...] = (
    "read", "write", "readv", "writev", "close", "fstat", "lseek", "mmap", "munmap", "mremap", "mprotect",
    "brk", "madvise", "futex", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "exit",
    "exit_group", "getpid", "gettid", "clock_gettime", "clock_getres", "gettimeofday", "nanosleep",
    "clock_nanosleep", "sched_yield", "sched_getaffinity", "getrandom", "poll", "ppoll", "select",
    "pselect6", "restart_syscall", "getrusage",
)
"""System calls a reward worker may make once its program is loaded; every other one fails
with ``EPERM`` (no ``open``, ``socket``, ``execve``, ``clone``, ``kill``, ``setrlimit`` ...)."""


def _install_seccomp() -> bool:
    """Load the system-call allow-list into this process; False where libseccomp is missing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return False
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(EPERM)
    ctx = lib.seccomp_init(deny)
    if not ctx:
        return False
    try:
        for name in SYSCALL_ALLOWLIST:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add(ctx, allow, number, 0) != 0:
                return False
        return lib.seccomp_load(ctx) == 0
    finally:
        lib.seccomp_release(ctx)


WORKER_PROCESS_NAME = b"rg-reward-wkr"
"""The worker's process name (``ps``/``top``; at most 15 bytes)."""


def _name_and_tie_to_parent() -> None:
    """Name the process and make it die with its parent (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(WORKER_PROCESS_NAME), 0, 0, 0)  # PR_SET_NAME
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def address_space_bytes() -> int | None:
    """This process's current virtual size (VmSize) in bytes, or None if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# -- shared-memory layout ------------------------------------------------------------------
Layout = tuple[tuple[str, str, str, tuple[int, ...], int], ...]
"""``((part, key, dtype, shape, offset), ...)`` of the numeric arrays in the input region;
``part`` is ``"cur"``, ``"prev"`` or ``"action"``."""


def _numeric(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


class _Region:
    """A shared anonymous memory region (inherited by the forked worker)."""

    def __init__(self, size: int):
        self.size = size
        self.buffer = mmap.mmap(-1, size)

    def array(self, dtype: str, shape: tuple[int, ...], offset: int) -> np.ndarray:
        count = math.prod(shape)
        return np.frombuffer(self.buffer, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)

    def close(self) -> None:
        try:
            self.buffer.close()
        except BufferError:  # an array still views it; the mapping goes with the last reference
            pass


# -- the worker's side --------------------------------------------------------------------
Runner = Callable[[str, str, dict, dict | None, Any], tuple[list[str], list[np.ndarray]]]
"""``runner(fn_name, backend, cur, prev, action) -> (names, float64 arrays)``: the program
executed in-process (built in the worker after fork); raises RewardProgramError."""


def _worker_main(make_runner: Callable[[], Runner], filename: str, ctrl_fd: int, reply_fd: int, fault_fd: int,
                 inputs: _Region, outputs: _Region, memory_mb: int) -> int:
    """Body of the forked worker; returns its exit code. Never returns into the caller's code."""
    try:
        os.setsid()
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _name_and_tie_to_parent()
    low = 3  # keep stdin/stdout/stderr and the three pipes; close every other inherited descriptor
    for keep in sorted((ctrl_fd, reply_fd, fault_fd)):
        os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, 1 << 16)
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    base = address_space_bytes() or 0
    limit = base + memory_mb * 2**20
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    fault = os.fdopen(fault_fd, "w", buffering=1)
    faulthandler.enable(file=fault, all_threads=False)
    faulthandler.register(signal.SIGUSR1, file=fault, all_threads=False, chain=False)
    # Serial: GNU OpenMP's inherited pool is unusable after fork, and OpenBLAS would try to start
    # its pool on the first large matrix product, which the system-call filter forbids (a hang).
    limit_process(1)
    ctrl = Connection(ctrl_fd, writable=False)
    reply = Connection(reply_fd, readable=False)
    try:
        runner = make_runner()  # runs the module body: under the limits, before seccomp is off the table
    except BaseException as exc:  # noqa: BLE001 - reported to the caller
        reply.send_bytes(_error_reply(exc, filename))
        return 1
    seccomp = _install_seccomp()
    reply.send_bytes(json.dumps({"ready": True, "seccomp": seccomp}).encode())
    arrays: dict[tuple[str, str], np.ndarray] = {}
    layout: Layout = ()
    while True:
        try:
            message = ctrl.recv_bytes()
        except (EOFError, OSError):
            return 0
        fn_name, backend, new_layout, objects = pickle.loads(message)  # from the trusted caller
        if new_layout is not None:
            layout = new_layout
            arrays = {}
            for part, key, dtype, shape, offset in layout:
                arr = inputs.array(dtype, shape, offset)
                if backend == "numpy":
                    arr.flags.writeable = False
                arrays[(part, key)] = arr
        try:
            cur = {k: a for (p, k), a in arrays.items() if p == "cur"}
            prev = {k: a for (p, k), a in arrays.items() if p == "prev"}
            action = arrays.get(("action", "action"))
            for (part, key), values in objects.items():
                obj = np.empty(len(values), dtype=object)
                for i, v in enumerate(values):  # one by one: tuples must stay items, not become axes
                    obj[i] = v
                obj.flags.writeable = False
                (cur if part == "cur" else prev)[key] = obj
            names, results = runner(fn_name, backend, cur, prev if prev else None, action)
            if len(names) > _MAX_TERMS:
                raise RewardProgramError(f"{filename}: compute_reward returned {len(names)} terms; "
                                         f"at most {_MAX_TERMS} are allowed", filename)
            offset = 0
            for arr in results:
                out = outputs.array("<f8", arr.shape, offset)
                out[...] = arr
                offset += _aligned(out.nbytes)
            reply.send_bytes(json.dumps({"ok": True, "names": names, "shape": [int(n) for n in
                                                                              results[0].shape]}).encode())
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as data
            reply.send_bytes(_error_reply(exc, filename))


def _error_reply(exc: BaseException, filename: str) -> bytes:
    if isinstance(exc, RewardProgramError):
        kind = "memory" if caused_by(exc, MemoryError) else exc.kind
        body = {"message": str(exc), "line": exc.line, "term": exc.term, "kind": kind}
    else:
        kind = "memory" if caused_by(exc, MemoryError) else "error"
        body = {"message": f"{filename}: {type(exc).__name__}: {exc}", "line": None, "term": None, "kind": kind}
    body["message"] = body["message"][:_MAX_MESSAGE]
    return json.dumps({"ok": False, "error": body}).encode()


def caused_by(exc: BaseException, kind: type) -> bool:
    """Whether ``exc`` or an exception it was raised from (``__cause__``/``__context__``) is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


# -- the caller's side ----------------------------------------------------------------------
class ProgramWorker:
    """The worker process of one untrusted program (see the module docstring).

    Args:
        make_runner: builds the in-process executor; called in the worker after ``fork``.
        filename: the program's file, for messages.
        limits: time and memory limits.
        batch_bytes: input bytes one call needs (the region is sized with room to spare).
        output_values: float64 values one call may return (reward and terms, all rows).
    """

    def __init__(self, make_runner: Callable[[], Runner], filename: str, limits: ProgramLimits,
                 batch_bytes: int, output_values: int):
        self.filename = filename
        self.limits = limits
        self.inputs = _Region(max(1 << 20, 4 * batch_bytes))
        self.outputs = _Region(max(1 << 16, _aligned(8 * output_values) * 2))
        self._layout: Layout | None = None
        self._views: dict[tuple[str, str], np.ndarray] = {}
        ctrl_r, ctrl_w = os.pipe()
        reply_r, reply_w = os.pipe()
        fault_r, fault_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns from here
            code = 1
            try:
                code = _worker_main(make_runner, filename, ctrl_r, reply_w, fault_w, self.inputs,
                                    self.outputs, limits.memory_mb)
            finally:
                os._exit(code)
        for fd in (ctrl_r, reply_w, fault_w):
            os.close(fd)
        self.pid = pid
        self._ctrl = Connection(ctrl_w, readable=False)
        self._reply = Connection(reply_r, writable=False)
        self._fault_fd = fault_r
        os.set_blocking(fault_r, False)
        self._process = {"pid": pid, "reaped": False}
        self._finalizer = weakref.finalize(self, _reap, self._process, self._ctrl, self._reply, fault_r)
        ready = self._receive("loading")
        self.seccomp = bool(ready.get("seccomp"))

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def fits(self, batch_bytes: int, output_values: int) -> bool:
        return batch_bytes <= self.inputs.size and _aligned(8 * output_values) * 2 <= self.outputs.size

    def call(self, fn_name: str, backend: str, cur: dict[str, np.ndarray], prev: dict[str, np.ndarray] | None,
             action: np.ndarray | None) -> tuple[list[str], list[np.ndarray]]:
        """Run ``fn_name`` in the worker on numpy copies of the batch; returns ``(names, arrays)``.

        Raises:
            RewardProgramError: the program failed, ran past a limit or crashed the worker.
        """
        parts: list[tuple[str, dict[str, Any]]] = [("cur", cur)] + ([("prev", prev)] if prev is not None else [])
        if action is not None:
            parts.append(("action", {"action": action}))
        layout: list[tuple[str, str, str, tuple[int, ...], int]] = []
        objects: dict[tuple[str, str], list[Any]] = {}
        offset = 0
        for part, arrays in parts:
            for key, value in arrays.items():
                if _numeric(value):
                    layout.append((part, key, value.dtype.str, tuple(value.shape), offset))
                    offset += _aligned(value.nbytes)
                else:
                    objects[(part, key)] = np.asarray(value, dtype=object).tolist()
        new_layout = tuple(layout)
        if new_layout != self._layout:
            self._views = {(p, k): self.inputs.array(d, s, o) for p, k, d, s, o in new_layout}
        for part, arrays in parts:
            for key, value in arrays.items():
                view = self._views.get((part, key))
                if view is not None:
                    view[...] = value
        send_layout = new_layout if new_layout != self._layout else None
        self._layout = new_layout
        completed = False
        try:
            self._ctrl.send_bytes(pickle.dumps((fn_name, backend, send_layout, objects), protocol=5))
            reply = self._receive(fn_name)
            completed = True
        finally:
            if not completed:  # out of step with the worker (an exception, Ctrl-C): start afresh next time
                self.close()
        shape = tuple(int(n) for n in reply["shape"])
        names = reply["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 200 for n in names) \
                or len(names) > _MAX_TERMS or len(shape) > 4 or math.prod(shape) * (len(names) + 1) * 8 * 2 > \
                self.outputs.size:
            self.close()
            raise RewardProgramError(f"{self.filename}: the reward worker sent a malformed reply", self.filename)
        out, offset = [], 0
        for _ in range(len(names) + 1 if fn_name == "compute_reward" else 1):
            arr = self.outputs.array("<f8", shape, offset).copy()
            offset += _aligned(arr.nbytes)
            out.append(arr)
        return names, out

    def _receive(self, what: str) -> dict[str, Any]:
        """The worker's JSON reply to the last request, within the time limit."""
        timeout = self.limits.timeout_s
        if not self._reply.poll(timeout):
            line = self._interrupt_and_dump()
            self.close()
            where = f"{self.filename}:{line}" if line else self.filename
            raise RewardProgramError(
                f"{where}: {what} did not finish within the per-call time limit of {timeout:g} s (reward worker "
                f"stopped)", self.filename, line, kind="timeout")
        try:
            data = self._reply.recv_bytes(_MAX_REPLY_BYTES)
        except (EOFError, OSError):
            status = self._wait_dead()
            line = self._fault_report()
            self.close()
            where = f"{self.filename}:{line}" if line else self.filename
            raise RewardProgramError(
                f"{where}: the reward program crashed its worker process during {what} ({status}; e.g. a C stack "
                f"overflow from deeply nested calls or iterators)", self.filename, line, kind="crash") from None
        try:
            reply = json.loads(data)
        except ValueError:
            self.close()
            raise RewardProgramError(f"{self.filename}: the reward worker sent a malformed reply",
                                     self.filename) from None
        if not isinstance(reply, dict):
            self.close()
            raise RewardProgramError(f"{self.filename}: the reward worker sent a malformed reply", self.filename)
        if reply.get("ok") is False:
            err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
            line = err.get("line") if isinstance(err.get("line"), int) else None
            term = err.get("term") if isinstance(err.get("term"), str) else None
            kind = err.get("kind") if err.get("kind") in ("error", "memory") else "error"
            message = str(err.get("message", "unknown error"))[:_MAX_MESSAGE]
            if kind == "memory":
                message += f" (the reward worker's memory limit is {self.limits.memory_mb} MiB)"
            if what == "loading":
                self.close()
            raise RewardProgramError(message, self.filename, line, term, kind=kind)
        return reply

    def _interrupt_and_dump(self) -> int | None:
        """Ask the worker for its stack (faulthandler on SIGUSR1); the program line it was on."""
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
        return self._fault_report(wait_s=2.0)

    def _fault_report(self, wait_s: float = 0.5) -> int | None:
        """The innermost program line in what faulthandler wrote (waiting up to ``wait_s`` for it)."""
        pattern = re.compile(r'File "(?P<file>[^"]*)", line (?P<line>\d+)')
        deadline = time.monotonic() + wait_s
        text, quiet = "", None
        while len(text) < _MAX_REPLY_BYTES:
            timeout = deadline - time.monotonic() if quiet is None else min(quiet, deadline - time.monotonic())
            if timeout <= 0 or not select.select([self._fault_fd], [], [], timeout)[0]:
                break
            try:
                chunk = os.read(self._fault_fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:  # the worker is gone and everything it wrote has been read
                break
            text += chunk.decode("utf-8", "replace")
            quiet = 0.2  # once the dump starts, it ends within moments
        lines = [int(m.group("line")) for m in pattern.finditer(text) if m.group("file") == self.filename]
        return lines[0] if lines else None  # faulthandler lists the most recent call first

    def _wait_dead(self) -> str:
        """Reap the worker that closed its pipe; how it ended."""
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return "exited"
        self._process["reaped"] = True
        if os.WIFSIGNALED(status):
            try:
                name = signal.Signals(os.WTERMSIG(status)).name
            except ValueError:
                name = f"signal {os.WTERMSIG(status)}"
            return f"killed by {name}"
        return f"exit code {os.WEXITSTATUS(status)}"

    def close(self) -> None:
        """Stop the worker (SIGKILL), reap it and release its pipes. Idempotent."""
        self._finalizer()


def _reap(process: dict[str, Any], ctrl: Connection, reply: Connection, fault_fd: int) -> None:
    """SIGKILL and reap the worker (never a pid that was already reaped), close its pipes."""
    if not process["reaped"]:
        try:
            os.kill(process["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(process["pid"], 0)
        except ChildProcessError:
            pass
        process["reaped"] = True
    for conn in (ctrl, reply):
        try:
            conn.close()
        except OSError:
            pass
    try:
        os.close(fault_fd)
    except OSError:
        pass
