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
  inference-mode tensors (torch, which refuse in-place writes). Only the raw keys the
  program's fields read are sent (the caller records them once); any other key read in
  the worker raises :class:`MissingRawKey` and the caller resends everything. While the
  batch keeps its keys, dtypes and shapes the request is 3 bytes (function, backend,
  flags); a new layout, strings and other objects travel pickled from the caller to the
  worker (trusted to untrusted only).
* **Data out**: the reward and terms come back as one ``(n, B)`` float64 block in shared
  memory and a 7-byte reply (``n``, ``B``); term names travel as a small JSON message when
  they change. Nothing from the worker is ever unpickled; the caller re-checks names,
  count, shape and finiteness (:mod:`rewardgym.rewards.program`).
* **Limits**: a wall-clock limit per call (:attr:`ProgramLimits.timeout_s`; the first call
  also runs the module body) and a memory limit (:attr:`ProgramLimits.memory_mb`). A call
  past its time is ended: the worker's stack is dumped (``faulthandler`` on ``SIGUSR1``)
  to name the program line it was executing, then it is killed. A crash (a C stack
  overflow from deeply nested calls, a fatal signal) is reported the same way, with the
  line where ``faulthandler`` caught it. Each ends as a :class:`RewardProgramError` naming
  the file and line; the next call starts a fresh worker.

Cost: one round trip through two pipes per call (a write and a wake-up each way) and one
``memcpy`` per array sent. The CPU cost is tens of microseconds; on a machine with more
runnable processes than cores the caller also waits for a CPU after each wake-up, which
can cost a scheduler time slice (``benchmarks/reward_overhead.py`` reports wall and CPU
time side by side, isolated vs ``trusted=True``, which runs in-process with none of this).

Size: above 600 lines because one mechanism: the worker process (fork, limits, seccomp), its
binary protocol and its crash reports.
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
import struct
import sys
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from rewardgym.rewards.sandbox import PROGRAM_FUNCTIONS
from rewardgym.threads import limit_process

_ALIGN = 64
_MAX_REPLY_BYTES = 1 << 20
_FUNCTIONS = tuple(PROGRAM_FUNCTIONS)  # a request names its function by index into this tuple
_BACKENDS = ("numpy", "torch")
_HEADER = 3  # request: function index, backend index, flags; then an optional pickled (layout, objects)
_HAS_PREV, _HAS_ACTION, _PRUNED = 1, 2, 4
_OK = 0x4B  # b"K": first byte of the steady-state reply (JSON replies start with b"{")
_FAST_OK = struct.Struct("<BHI")
_LENGTH = struct.Struct("<I")  # message framing on the pipes  # reply: _OK, number of (B,) float64 arrays, B
_MAX_TERMS = 64
_MAX_MESSAGE = 4000


class WorkerTooSmall(Exception):
    """A batch larger than the worker's shared input region (the caller starts a bigger worker)."""

    def __init__(self, nbytes: int):
        super().__init__(f"a batch of {nbytes} bytes does not fit the reward worker's input region")
        self.nbytes = nbytes


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


class _Pipe:
    """Length-prefixed messages over a pipe with one ``write`` per message and (small ones) one
    ``read``: what ``multiprocessing.connection.Connection`` does, in fewer Python steps
    (this is the per-step path of every isolated reward call)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def send_bytes(self, data: bytes) -> None:
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]

    def recv_bytes(self, limit: int) -> bytes:
        """The next message; EOFError when the other end is gone, OSError past ``limit`` bytes."""
        data = os.read(self.fd, 65536)
        while len(data) < _LENGTH.size:
            more = os.read(self.fd, 65536)
            if not more:
                raise EOFError
            data += more
        (size,) = _LENGTH.unpack_from(data)
        if size > limit:
            raise OSError(f"message of {size} bytes, more than {limit}")
        end = _LENGTH.size + size
        if len(data) > end:
            raise OSError("more data than one message")
        if len(data) < end:
            parts = [data]
            have = len(data)
            while have < end:
                more = os.read(self.fd, min(end - have, 1 << 20))
                if not more:
                    raise EOFError
                parts.append(more)
                have += len(more)
            data = b"".join(parts)
        return data[_LENGTH.size:]


class MissingRawKey(BaseException):
    """A field read a raw key the caller left out of a pruned batch (not the program's error).

    A BaseException: nothing between the field and the worker's loop (``except Exception``,
    ``except KeyError`` in a field's code) may take it for an absent key."""


class _PartialBatch(dict):
    """The raw batch in the worker when the caller sent only the keys the program's fields
    read: any other key is reported as missing, never as absent."""

    def __missing__(self, key: str) -> Any:
        raise MissingRawKey(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        raise MissingRawKey(key)


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
    # The worker writes nothing to the terminal: a program's warnings (numpy's divide-by-zero ...)
    # would quote its own source line, untrusted text, raw. Non-finite outputs are errors anyway.
    import warnings

    warnings.simplefilter("ignore")
    fault = os.fdopen(fault_fd, "w", buffering=1)
    faulthandler.enable(file=fault, all_threads=False)
    faulthandler.register(signal.SIGUSR1, file=fault, all_threads=False, chain=False)
    # Serial: GNU OpenMP's inherited pool is unusable after fork, and OpenBLAS would try to start
    # its pool on the first large matrix product, which the system-call filter forbids (a hang).
    limit_process(1)
    ctrl = _Pipe(ctrl_fd)
    reply = _Pipe(reply_fd)
    try:
        runner = make_runner()  # runs the module body: under the limits, before seccomp is off the table
    except BaseException as exc:  # noqa: BLE001 - reported to the caller
        reply.send_bytes(_error_reply(exc, filename))
        return 1
    seccomp = _install_seccomp()
    reply.send_bytes(json.dumps({"ready": True, "seccomp": seccomp}).encode())
    parts: dict[str, dict[str, np.ndarray]] = {"cur": {}, "prev": {}, "action": {}}
    results_flat = np.frombuffer(outputs.buffer, dtype="<f8")
    sent_names: list[str] | None = None
    while True:
        try:
            message = ctrl.recv_bytes(1 << 30)
        except (EOFError, OSError):
            return 0
        fn_index, backend_code, flags = message[0], message[1], message[2]
        fn_name, backend = _FUNCTIONS[fn_index], _BACKENDS[backend_code]
        objects: dict[tuple[str, str], list[Any]] = {}
        if len(message) > _HEADER:  # a new layout and/or object values, from the trusted caller
            new_layout, objects = pickle.loads(message[_HEADER:])
            if new_layout is not None:
                parts = {"cur": {}, "prev": {}, "action": {}}
                for part, key, dtype, shape, offset in new_layout:
                    arr = inputs.array(dtype, shape, offset)
                    if backend == "numpy":
                        arr.flags.writeable = False
                    parts[part][key] = arr
        try:
            cur, prev = parts["cur"], (parts["prev"] if flags & _HAS_PREV else None)
            action = parts["action"].get("action") if flags & _HAS_ACTION else None
            if flags & _PRUNED:
                cur, prev = _PartialBatch(cur), (_PartialBatch(prev) if prev is not None else None)
            elif objects:
                cur, prev = dict(cur), (dict(prev) if prev is not None else None)
            if objects:
                for (part, key), values in objects.items():
                    obj = np.empty(len(values), dtype=object)
                    for i, v in enumerate(values):  # one by one: tuples must stay items, not become axes
                        obj[i] = v
                    obj.flags.writeable = False
                    target = cur if part == "cur" else prev
                    if target is not None:
                        target[key] = obj
            names, results = runner(fn_name, backend, cur, prev, action)
            if len(names) > _MAX_TERMS:
                raise RewardProgramError(f"{filename}: compute_reward returned {len(names)} terms; "
                                         f"at most {_MAX_TERMS} are allowed", filename)
            shape = results[0].shape
            size = results[0].size
            if len(shape) not in (1, 2) or any(arr.shape != shape for arr in results) \
                    or size * len(results) > results_flat.size:
                raise RewardProgramError(f"{filename}: {fn_name} returned values of shapes "
                                         f"{[arr.shape for arr in results]}: one (B,) array each (multi-agent: "
                                         "(B, N)) is expected", filename)
            for i, arr in enumerate(results):  # float64, back to back: (n_values, B) or (n_values, B * N)
                results_flat[i * size:(i + 1) * size] = arr.reshape(-1)
            if names == sent_names or (not names and fn_index != 0):
                reply.send_bytes(_FAST_OK.pack(_OK, len(results), size))
            else:  # the term names changed (or the first call): they travel once, as JSON
                reply.send_bytes(json.dumps({"ok": True, "names": names, "shape": [int(size)]}).encode())
                if fn_index == 0:
                    sent_names = list(names)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as data
            reply.send_bytes(_error_reply(exc, filename))


def _error_reply(exc: BaseException, filename: str) -> bytes:
    missing = _missing_key(exc)
    if missing is not None:  # not the program's error: the caller did not send that raw key
        return json.dumps({"ok": False, "error": {"message": f"{filename}: raw key {missing[:100]!r} was not sent",
                                                  "line": None, "term": None, "kind": "missing"}}).encode()
    if isinstance(exc, RewardProgramError):
        kind = "memory" if caused_by(exc, MemoryError) else exc.kind
        body = {"message": str(exc), "line": exc.line, "term": exc.term, "kind": kind}
    else:
        kind = "memory" if caused_by(exc, MemoryError) else "error"
        body = {"message": f"{filename}: {type(exc).__name__}: {exc}", "line": None, "term": None, "kind": kind}
    body["message"] = body["message"][:_MAX_MESSAGE]
    return json.dumps({"ok": False, "error": body}).encode()


def _missing_key(exc: BaseException) -> str | None:
    """The raw key of a :class:`MissingRawKey` in ``exc``'s chain, if one is there."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MissingRawKey) and current.args and isinstance(current.args[0], str):
            return current.args[0]
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


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
        self._part_counts: dict[str, int] = {}  # numeric arrays per part in the layout
        self._names: list[str] = []  # the term names of the last reply that sent them
        self._out_flat = np.frombuffer(self.outputs.buffer, dtype="<f8")
        self._timeout_ms = max(1, math.ceil(limits.timeout_s * 1000))
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
        self._ctrl_pipe, self._reply_pipe = _Pipe(ctrl_w), _Pipe(reply_r)
        self._fault_fd = fault_r
        os.set_blocking(fault_r, False)
        self._poller = select.poll()  # registered once: a wait per call costs one poll(2)
        self._poller.register(reply_r, select.POLLIN | select.POLLERR | select.POLLHUP)
        self._process = {"pid": pid, "reaped": False}
        self._finalizer = weakref.finalize(self, _reap, self._process, self._ctrl, self._reply, fault_r)
        ready = self._receive("loading")
        self.seccomp = bool(ready.get("seccomp"))

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def fits(self, batch_bytes: int, output_values: int) -> bool:
        return batch_bytes <= self.inputs.size and 8 * output_values <= self.outputs.size

    def call(self, fn_name: str, backend: str, cur: dict[str, np.ndarray], prev: dict[str, np.ndarray] | None,
             action: np.ndarray | None, pruned: bool = False) -> tuple[list[str], list[np.ndarray]]:
        """Run ``fn_name`` in the worker on numpy copies of the batch; returns ``(names, arrays)``.

        ``pruned``: the batch holds only some of the raw keys; reading another one fails
        with a RewardProgramError of kind ``"missing"`` (the caller then sends them all).

        Steady state (the batch's keys, dtypes and shapes as in the last call) costs one
        ``memcpy`` per array into the shared region, a 3-byte request, an 7-byte reply and
        one copy of the ``(n_values, B)`` float64 block out: no pickling, no JSON.

        Raises:
            RewardProgramError: the program failed, ran past a limit or crashed the worker.
            WorkerTooSmall: the batch does not fit this worker's shared regions (nothing was sent).
        """
        flags = (_HAS_PREV if prev is not None else 0) | (_HAS_ACTION if action is not None else 0)
        views = self._views
        objects: dict[tuple[str, str], list[Any]] = {}
        matched = expected = 0
        same = self._layout is not None
        if same:  # copy straight into the worker's views while the layout holds
            for part, arrays in (("cur", cur), ("prev", prev), ("action", {"action": action})):
                if arrays is None or (part == "action" and action is None):
                    continue  # a part this call lacks (a potential without prev) keeps its views
                expected += self._part_counts.get(part, 0)
                for key, value in arrays.items():
                    view = views.get((part, key))
                    if view is not None and type(value) is np.ndarray and value.shape == view.shape \
                            and value.dtype == view.dtype:
                        np.copyto(view, value)
                        matched += 1
                    elif _numeric(value) or (part, key) in views:
                        same = False
                        break
                    else:
                        objects[(part, key)] = np.asarray(value, dtype=object).tolist()
                if not same:
                    break
        send_layout = None
        if not same or matched != expected:
            send_layout, objects = self._new_layout(cur, prev, action)
        payload = b"" if send_layout is None and not objects else pickle.dumps((send_layout, objects), protocol=5)
        completed = False
        try:
            self._ctrl_pipe.send_bytes(bytes((_FUNCTIONS.index(fn_name), _BACKENDS.index(backend),
                                              flags | (_PRUNED if pruned else 0))) + payload)
            reply = self._receive(fn_name)
            completed = True
        finally:
            if not completed:  # out of step with the worker (an exception, Ctrl-C): start afresh next time
                self.close()
        count, size = reply
        if fn_name != "compute_reward":
            names: list[str] = []
        elif count == len(self._names) + 1:
            names = list(self._names)
        else:
            names = None  # type: ignore[assignment]
        if names is None or count != len(names) + 1 or count * size > self._out_flat.size:
            self.close()
            raise RewardProgramError(f"{self.filename}: the reward worker sent a malformed reply", self.filename)
        block = self._out_flat[:count * size].reshape(count, size).copy()
        return names, list(block)

    def _new_layout(self, cur: dict[str, Any], prev: dict[str, Any] | None, action: Any
                    ) -> tuple[Layout, dict[tuple[str, str], list[Any]]]:
        """Place the batch's numeric arrays in the input region, copy them there; the layout and the objects."""
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
        if offset > self.inputs.size:
            raise WorkerTooSmall(offset)
        new_layout = tuple(layout)
        self._views = {(p, k): self.inputs.array(d, s, o) for p, k, d, s, o in new_layout}
        for part, arrays in parts:
            for key, value in arrays.items():
                view = self._views.get((part, key))
                if view is not None:
                    view[...] = value
        self._layout = new_layout
        self._part_counts = {}
        for part, *_ in new_layout:
            self._part_counts[part] = self._part_counts.get(part, 0) + 1
        return new_layout, objects

    def _receive(self, what: str) -> dict[str, Any]:
        """The worker's JSON reply to the last request, within the time limit."""
        if not self._poller.poll(self._timeout_ms):
            line = self._interrupt_and_dump()
            self.close()
            where = f"{self.filename}:{line}" if line else self.filename
            raise RewardProgramError(
                f"{where}: {what} did not finish within the per-call time limit of {self.limits.timeout_s:g} s (reward worker "
                f"stopped)", self.filename, line, kind="timeout")
        try:
            data = self._reply_pipe.recv_bytes(_MAX_REPLY_BYTES)
        except (EOFError, OSError):
            status = self._wait_dead()
            line = self._fault_report()
            self.close()
            where = f"{self.filename}:{line}" if line else self.filename
            raise RewardProgramError(
                f"{where}: the reward program crashed its worker process during {what} ({status}; e.g. a C stack "
                f"overflow from deeply nested calls or iterators)", self.filename, line, kind="crash") from None
        if len(data) == _FAST_OK.size and data[0] == _OK:
            _, count, size = _FAST_OK.unpack(data)
            return count, size
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
            kind = err.get("kind") if err.get("kind") in ("error", "memory", "missing") else "error"
            message = str(err.get("message", "unknown error"))[:_MAX_MESSAGE]
            if kind == "memory":
                message += f" (the reward worker's memory limit is {self.limits.memory_mb} MiB)"
            if what == "loading":
                self.close()
            raise RewardProgramError(message, self.filename, line, term, kind=kind)
        if what != "loading":
            names, shape = reply.get("names"), reply.get("shape")
            if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 200 for n in names) \
                    or len(names) > _MAX_TERMS or not isinstance(shape, list) or len(shape) != 1 \
                    or not isinstance(shape[0], int) or shape[0] < 0:
                self.close()
                raise RewardProgramError(f"{self.filename}: the reward worker sent a malformed reply", self.filename)
            if what == "compute_reward":
                self._names = names
            return len(names) + 1, shape[0]
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
