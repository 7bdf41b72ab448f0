"""Reward programs: Python files that compute a reward from a batch of states.

A program defines::

    def compute_reward(state, action):       # required
        ...
        return reward                         # (B,) float
        # or: return reward, {"term": (B,), ...}
    def compute_potential(state): ...         # optional, (B,) float, for shaping
    def compute_success(state): ...           # optional, (B,) bool

``state`` is a :class:`~rewardgym.envs.view.StateView` (``state.hand_pos`` is ``(B, 3)``,
``state.prev.hand_pos`` one step earlier), read-only; ``action`` is ``(B, act_dim)``
float64 for continuous actions, ``(B,)`` int64 for discrete ones. The prelude (``np`` and
the helpers of :mod:`rewardgym.rewards.prelude`) is in scope without imports.

Programs are untrusted unless the caller says otherwise. The source is validated by
:func:`rewardgym.rewards.sandbox.validate_source` (allow-lists of syntax, names, numpy
functions and attributes) and then runs **in a worker process** under time and memory
limits with the sandbox's builtins only (:mod:`rewardgym.rewards.worker`): its code never
executes in the caller's process. Trusted programs (``trusted=True``, your own code only)
skip validation, run in-process and get Python's builtins; the runtime checks below apply
to every program.

Runtime checks, every call: the reward and every term must be numeric, of shape ``(B,)``
(a Python/0-d scalar is broadcast to ``(B,)``) and finite. A failure raises
:class:`RewardProgramError` naming the program file, the line and the term; an exception
inside the program is re-raised the same way, and so are a call past the time limit, a
program past the memory limit and a crash of the worker. A reward is never silently
replaced by zero.

Multi-agent tasks (``agents=`` the task's agent names): the reward, every term and the
potential may be a team value ``(B,)`` (every agent receives it), per-agent values
``(B, N)`` (column ``i`` is agent ``i``) or a dict ``{agent name: (B,)}`` naming every
agent; they come back as ``(B, N)`` float64. A value of another shape, a column count
that is another agent count, or a dict naming an unknown agent is a
:class:`RewardProgramError` naming the file, the line and the term (or the agent).
``compute_success`` stays the team's ``(B,)``.

Size: above 600 lines because RewardProgram, the executor that runs its code (in the worker
or, trusted, here) and the attribute guard share the runtime checks: the run-time half of
the trust boundary, kept in one file to be audited in one read.
"""

from __future__ import annotations

import ast
import builtins
import sys
import traceback
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from rewardgym.envs.task import EXTRA_RAW_KEYS
from rewardgym.envs.view import StateView, UnknownFieldError, ViewSpec, raw_batch, view_spec
from rewardgym.rewards import prelude as prelude_module
from rewardgym.rewards.prelude import HELPERS, math_namespace, prelude_namespace, warm_up
from rewardgym.rewards.sandbox import (ATTRIBUTE_ALLOWLIST, PROGRAM_FUNCTIONS, SAFE_BUILTINS, validate_source,
                                       value_attributes)
from rewardgym.rewards.source import RewardSource, Terms
from rewardgym.rewards.worker import ProgramLimits, ProgramWorker, RewardProgramError, WorkerTooSmall

MAX_TERM_NAMES = 64
"""Distinct term names one program may return over its lifetime (every call: at most as many)."""

__all__ = ["PROGRAM_FUNCTIONS", "ProgramLimits", "RewardProgram", "RewardProgramError"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class RewardProgram(RewardSource):
    """A validated reward program usable as a reward source.

    Args:
        source: the program's Python source text.
        filename: where it came from (used in every error message).
        view: the task's view spec; when given, ``state.<field>`` names are checked
            statically before the program runs.
        trusted: skip validation and run in this process with Python's builtins (your own
            code only: no worker, no limits).
        name: source name used to prefix terms in compositions (default: file stem).
        limits: time and memory limits of the worker (untrusted programs;
            :class:`ProgramLimits` or a dict of its fields; default ``ProgramLimits()``).
        agents: a multi-agent task's agent names (see the module docstring): outputs are
            then ``(B, N)``; None for single-agent tasks.

    Raises:
        rewardgym.rewards.sandbox.ProgramRejected: the source broke a sandbox rule.
        RewardProgramError: a trusted program fails to load, or defines no compute_reward.
    """

    def __init__(self, source: str, filename: str = "<program>", view: ViewSpec | None = None,
                 trusted: bool = False, name: str | None = None,
                 limits: ProgramLimits | dict[str, Any] | None = None, agents: Sequence[str] | None = None):
        self.source = source
        self.filename = filename
        self.view = view
        self.trusted = trusted
        self.name = name or Path(filename).stem
        self.limits = ProgramLimits.of(limits)
        self.agents = tuple(agents) if agents else None
        if not trusted:
            validate_source(source, filename,
                            allowed_globals=set(prelude_namespace("numpy")),
                            view_fields=list(view.fields) if view is not None else None)
        tree = ast.parse(source, filename)
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        self.attribute_names = value_attributes(tree)
        self._executor = _Executor(source, filename, self.name, trusted, tree, self.agents)
        self._worker: ProgramWorker | None = None
        self._worker_spec: ViewSpec | None = None
        self._term_names: set[str] = set()  # every term name returned so far (bounded: MAX_TERM_NAMES)
        self._last_names: Any = None
        self._prune = True  # send the worker only the raw keys the program's fields read
        self._keys_cache: tuple[Any, frozenset[str] | None] | None = None
        if trusted:  # runs here: load it now, as Python would
            ns = self._executor.namespace("numpy")
            defined = {n for n in PROGRAM_FUNCTIONS if callable(ns.get(n))}
        if "compute_reward" not in defined:
            raise RewardProgramError(f"{filename}: defines no function compute_reward(state, action)", filename)
        self.has_potential = "compute_potential" in defined
        self.has_success = "compute_success" in defined

    @classmethod
    def from_file(cls, path: str | Path, view: ViewSpec | None = None, trusted: bool = False,
                  name: str | None = None, limits: ProgramLimits | dict[str, Any] | None = None,
                  agents: Sequence[str] | None = None) -> "RewardProgram":
        """Load and validate the program at ``path``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reward program not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: reward program is not UTF-8 text ({exc})") from None
        return cls(text, str(path), view=view, trusted=trusted, name=name, limits=limits, agents=agents)

    # -- the reward source API ------------------------------------------------------
    def compute_reward(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        """Run ``compute_reward``; returns ``(reward (B,), terms {name: (B,)})``, checked
        (``(B, N)`` each on a multi-agent task)."""
        if self.trusted:
            reward, terms = self._executor.reward(state, action)
            self._count_names(terms)
            return reward, terms
        names, arrays = self._remote("compute_reward", state, action)
        self._count_names(names)
        return arrays[0], dict(zip(names, arrays[1:]))

    def _count_names(self, names: Collection[str]) -> None:
        """Bound the term names a program uses over its lifetime (:data:`MAX_TERM_NAMES`): the
        per-call cap alone would let new names every call swell metrics, checkpoints and prompts."""
        if names is self._last_names or not names:
            return
        self._last_names = names
        self._term_names.update(names)
        if len(self._term_names) > MAX_TERM_NAMES:
            raise RewardProgramError(
                f"{self.filename}: compute_reward has returned {len(self._term_names)} different term names over its "
                f"lifetime; at most {MAX_TERM_NAMES} are allowed (use fixed names: terms are statistics, reported "
                f"per name)", self.filename, self._executor.return_line("compute_reward"))

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        return self.compute_reward(state, action)

    def compute_potential(self, state: StateView) -> Any:
        """Run ``compute_potential``: Φ(s) as ``(B,)`` float (``(B, N)`` on a multi-agent task), checked."""
        if not self.has_potential:
            raise RewardProgramError(f"{self.filename}: defines no compute_potential(state)", self.filename)
        if self.trusted:
            return self._executor.potential(state)
        return self._remote("compute_potential", state, None)[1][0]

    def compute_success(self, state: StateView) -> Any:
        """Run ``compute_success``: ``(B,)`` bool."""
        if not self.has_success:
            raise RewardProgramError(f"{self.filename}: defines no compute_success(state)", self.filename)
        if self.trusted:
            return self._executor.success(state)
        out = self._remote("compute_success", state, None)[1][0]
        return out.bool() if _is_torch(out) else out.astype(bool)

    def close(self) -> None:
        """Stop the worker process, if one runs (a later call starts a new one)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    # -- the worker -----------------------------------------------------------------
    def _remote(self, fn_name: str, state: StateView, action: Any) -> tuple[list[str], list[Any]]:
        """``fn_name`` run by the worker on copies of ``state``; outputs re-checked here."""
        cur, prev = raw_batch(state), state._prev_raw
        backend = "torch" if _is_torch(cur.get("env_reward")) else "numpy"
        action_np = None if action is None else _to_numpy(action)
        batch = state.batch_size
        per_row = len(self.agents) if self.agents and fn_name != "compute_success" else 1
        spec = view_spec(state)
        keys = self._needed_keys(spec, cur) if backend == "numpy" and self._prune else None
        cur_np, prev_np = _to_numpy_batch(cur, keys), (_to_numpy_batch(prev, keys) if prev is not None else None)
        worker = self._worker
        if (worker is None or not worker.alive or not worker.fits(0, batch * per_row * 65)
                or self._worker_spec is not spec):
            worker = self._start_worker(spec, cur_np, prev_np, action_np, batch * per_row)
        try:
            names, arrays = worker.call(fn_name, backend, cur_np, prev_np, action_np, pruned=keys is not None)
        except WorkerTooSmall:  # a larger batch than this worker was sized for: a bigger one
            worker = self._start_worker(spec, cur_np, prev_np, action_np, batch * per_row)
            names, arrays = worker.call(fn_name, backend, cur_np, prev_np, action_np, pruned=keys is not None)
        except RewardProgramError as exc:
            if exc.kind != "missing" or not self._prune:
                raise
            # A field read a raw key its first evaluation did not (a data-dependent branch):
            # from now on every key travels, and this call runs again with all of them.
            self._prune = False
            return self._remote(fn_name, state, action)
        values = batch * per_row
        if len(arrays[0]) != values or not np.isfinite(arrays).all():  # the worker checked; a lie is an error
            bad = 0 if len(arrays[0]) != values else int(np.flatnonzero(~np.isfinite(arrays).all(axis=1))[0])
            name = (["reward" if fn_name == "compute_reward" else "potential", *names])[bad]
            line = self._executor.return_line(fn_name)
            raise RewardProgramError(f"{self.filename}:{line}: the reward worker returned a bad value for "
                                     f"{name!r}", self.filename, line, name)
        if self.agents and fn_name != "compute_success":  # (B * N,) rows back to (B, N): agent i in column i
            arrays = [arr.reshape(batch, per_row) for arr in arrays]
        if backend == "torch":
            ref = cur["env_reward"]
            dtype = ref.dtype if ref.is_floating_point() else None
            arrays = [_torch_from(arr, ref.device, dtype) for arr in arrays]
        return names, arrays

    def _needed_keys(self, spec: ViewSpec, cur: Mapping[str, Any]) -> frozenset[str] | None:
        """The raw keys the fields this program names read, found by computing those fields
        here once on a batch of this layout (trusted code, recorded reads); None: all keys.

        Only these travel to the worker each call: a Meta-World expert reads 4 of 16 raw
        arrays. Should a field read another key later (a branch on the data), the worker
        says so and every key travels from then on (:meth:`_remote`)."""
        signature = (spec, tuple(cur))
        cached = self._keys_cache
        if cached is not None and cached[0] == signature:
            return cached[1]
        fields = [spec.fields[name] for name in self.attribute_names if name in spec.fields]
        recorder = _RecordingBatch(cur)
        try:
            for field in fields:
                field.compute(recorder)
        except Exception:  # noqa: BLE001 - a field that fails here fails in the worker too, with its message
            keys = None
        else:
            keys = frozenset(recorder.read) | {"env_reward"}  # env_reward: the batch size
        self._keys_cache = (signature, keys)
        return keys

    def _start_worker(self, spec: ViewSpec, cur: dict[str, Any], prev: dict[str, Any] | None, action: Any,
                      values: int) -> ProgramWorker:
        """A fresh worker for ``spec`` whose shared regions hold batches like this one and
        ``values`` output values per array (B, or B * N on a multi-agent task)."""
        self.close()
        nbytes = sum(v.nbytes + 64 for part in (cur, prev or {}) for v in part.values()
                     if isinstance(v, np.ndarray) and v.dtype.kind in "biuf")
        nbytes += 0 if action is None else action.nbytes + 64
        warm_up()  # the prelude's kernels compile here, once: the worker cannot write numba's cache
        executor = self._executor
        worker = ProgramWorker(lambda: _runner(executor, spec), self.filename, self.limits, nbytes, values * 65)
        self._worker, self._worker_spec = worker, spec
        return worker

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_worker"] = None  # processes do not travel; the copy starts its own worker
        state["_worker_spec"] = None
        return state

    def __repr__(self) -> str:
        return f"RewardProgram({self.filename!r}, trusted={self.trusted})"


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)


class _RecordingBatch(dict):
    """A raw batch that records which keys are read (:meth:`RewardProgram._needed_keys`)."""

    def __init__(self, batch: Mapping[str, Any]):
        super().__init__(batch)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def _to_numpy_batch(batch: Mapping[str, Any], keys: Collection[str] | None = None) -> dict[str, Any]:
    """A raw batch as numpy, without the readings only trusted sources use (frames, observations);
    only ``keys`` (those present) when given."""
    wanted = [k for k in batch if (keys is None or k in keys) and k not in EXTRA_RAW_KEYS]  # read only these:
    return {k: v if type(v := batch[k]) is np.ndarray else _to_numpy(v) for k in wanted}  # a batch may be lazy


def _torch_from(arr: np.ndarray, device: Any, dtype: Any) -> Any:
    import torch

    return torch.from_numpy(arr).to(device=device, dtype=dtype or torch.float32)


def _runner(executor: "_Executor", spec: ViewSpec):
    """The worker's executor of ``executor``'s program over ``spec`` (built after fork)."""
    probe = np.ones(3)  # numpy imports the helpers of array methods on first use: here, with real builtins
    for method in ("sum", "mean", "std", "var", "any", "all", "prod", "min", "max", "argmax", "argmin", "cumsum",
                   "round"):
        getattr(probe, method)()
    probe.clip(0, 1)
    executor.namespace("numpy")  # the module body runs now, under the worker's limits
    if "torch" in sys.modules:  # a torch caller may send tensors: import what that backend needs while files open
        executor.namespace("torch")

    def run(fn_name: str, backend: str, cur: dict, prev: dict | None, action: Any):
        if backend == "torch":
            cur, prev, action = _inference_tensors(cur), _inference_tensors(prev), _inference_tensors(action)
        state = StateView(spec, cur, prev)
        if fn_name == "compute_reward":
            reward, terms = executor.reward(state, action)
            names, values = list(terms), [reward, *terms.values()]
        elif fn_name == "compute_potential":
            names, values = [], [executor.potential(state)]
        else:
            names, values = [], [executor.success(state)]
        return names, [np.asarray(_to_numpy(v), dtype=np.float64) for v in values]

    return run


def _inference_tensors(value: Any) -> Any:
    """numpy arrays as CPU inference-mode tensors: in-place writes into them raise errors."""
    if value is None:
        return None
    import torch

    if isinstance(value, dict):
        return {k: _inference_tensors(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        with torch.inference_mode():
            return torch.from_numpy(np.array(value))
    return value


_GUARD_NAME = "__rg_attribute__"  # a dunder name: programs cannot name, rebind or shadow it (validation)
_PLAIN_VALUE_TYPES = (np.ndarray, np.generic, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def guarded_attribute(value: Any, name: str) -> Any:
    """``value.name`` for an untrusted program, decided by the **type** of ``value``.

    A state view (:class:`StateView`) gives its fields, ``prev`` and ``batch_size`` (its own
    ``__getattr__`` refuses anything else). Arrays, tensors, numbers, strings and containers
    give the names of :data:`~rewardgym.rewards.sandbox.ATTRIBUTE_ALLOWLIST`. Every other
    value (whatever an allowed call returned: a date, a function, an iterator) gives none.
    The validator's static checks stay as the first, friendlier line; this one does not rest
    on which names happen to be view fields. Module chains (``np.linalg.norm``) are not
    guarded: ``np`` and ``math`` are read-only namespaces holding the allow-list only.
    """
    if isinstance(value, StateView):
        return getattr(value, name)
    if name in ATTRIBUTE_ALLOWLIST and (isinstance(value, _PLAIN_VALUE_TYPES) or _is_tensor(value)):
        return getattr(value, name)
    kind = type(value).__name__
    raise AttributeError(f"a reward program may not read .{name} of a {kind} value (state views give their fields; "
                         f"arrays, tensors, numbers, strings and containers give the sandbox's attribute allow-list)")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


class _GuardAttributes(ast.NodeTransformer):
    """Rewrite ``x.name`` (a read) as ``__rg_attribute__(x, "name")`` except on module chains."""

    def __init__(self, tree: ast.Module):
        self.modules = {"np", "math"} | {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                                         for a in node.names if a.name in ("numpy", "math")}

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        root: ast.AST = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in self.modules or not isinstance(node.ctx, ast.Load):
            return node
        value = self.visit(node.value)
        call = ast.Call(func=ast.Name(_GUARD_NAME, ast.Load()), args=[value, ast.Constant(node.attr)], keywords=[])
        return ast.copy_location(call, node)


class _Executor:
    """A program's code executed in the current process: in its worker (untrusted) or in the
    caller (trusted). Namespaces, calls, output checks and error messages with lines."""

    def __init__(self, source: str, filename: str, name: str, trusted: bool, tree: ast.Module,
                 agents: tuple[str, ...] | None = None):
        self.filename = filename
        self.agents = agents
        self.name = name
        self.trusted = trusted
        self.tree = tree
        self.lines = source.splitlines()
        self.code = self._compile(source)
        self.namespaces: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["namespaces"] = {}
        state["code"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.code = self._compile("\n".join(self.lines) + "\n")

    def _compile(self, source: str) -> Any:
        """The program's code; an untrusted program's attribute reads go through :func:`guarded_attribute`."""
        if self.trusted:
            return compile(source, self.filename, "exec")
        tree = ast.parse(source, self.filename)
        tree = _GuardAttributes(tree).visit(tree)
        return compile(ast.fix_missing_locations(tree), self.filename, "exec")

    def namespace(self, backend: str) -> dict[str, Any]:
        """Module globals for ``backend`` ("numpy" or "torch"), executed once per backend."""
        ns = self.namespaces.get(backend)
        if ns is None:
            env = prelude_namespace(backend)
            if self.trusted:
                safe_builtins: Mapping[str, Any] = builtins.__dict__
            else:
                safe_builtins = dict(SAFE_BUILTINS)
                safe_builtins["__import__"] = _restricted_import(env)
            ns = {"__builtins__": safe_builtins, "__name__": f"rewardgym_program_{self.name}",
                  "__file__": self.filename, **env}
            if not self.trusted:
                ns[_GUARD_NAME] = guarded_attribute
            try:
                exec(self.code, ns)  # noqa: S102 - validated (or trusted by the caller)
            except Exception as exc:
                raise self._runtime_error(exc, "loading") from exc
            self.namespaces[backend] = ns
        return ns

    def call(self, fn_name: str, *args: Any) -> Any:
        backend = "torch" if _is_torch(raw_batch(args[0]).get("env_reward")) else "numpy"
        fn = self.namespace(backend).get(fn_name)
        if fn is None:
            raise RewardProgramError(f"{self.filename}: defines no function {fn_name}", self.filename)
        try:
            return fn(*args)
        except RewardProgramError:
            raise
        except Exception as exc:
            raise self._runtime_error(exc, fn_name) from exc

    def reward(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        out = self.call("compute_reward", state, action)
        line = self.return_line("compute_reward")
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], dict):
                raise RewardProgramError(
                    f"{self.filename}:{line}: compute_reward must return reward or (reward, terms_dict); got a "
                    f"tuple of {len(out)} items", self.filename, line)
            reward, terms = out
        else:
            reward, terms = out, {}
        batch = state.batch_size
        checked: Terms = {}
        # Terms first: a NaN in a term then names that term, not the total it spoiled.
        for key, value in terms.items():
            if not isinstance(key, str) or not key or key.startswith("_") or len(key) > 100:
                raise RewardProgramError(f"{self.filename}:{line}: term names must be strings of 1-100 characters not "
                                         f"starting with '_' (Gymnasium's info masks use those), got {key!r}",
                                         self.filename, line)
            checked[key] = self.check_output(value, key, batch, "compute_reward")
        return self.check_output(reward, "reward", batch, "compute_reward"), checked

    def potential(self, state: StateView) -> Any:
        return self.check_output(self.call("compute_potential", state), "potential", state.batch_size,
                                 "compute_potential")

    def success(self, state: StateView) -> Any:
        out = self.call("compute_success", state)
        if _is_torch(out):
            return out.bool().reshape(-1).expand(state.batch_size) if out.ndim == 0 else out.bool()
        arr = np.asarray(out)
        if arr.ndim == 0:
            arr = np.full(state.batch_size, bool(arr))
        if arr.shape != (state.batch_size,):
            line = self.return_line("compute_success")
            raise RewardProgramError(
                f"{self.filename}:{line}: compute_success returned shape {arr.shape}, expected "
                f"({state.batch_size},)", self.filename, line, "success")
        return arr.astype(bool)

    # -- checks and error reporting -------------------------------------------------
    def check_output(self, value: Any, term: str, batch: int, fn_name: str) -> Any:
        """A reward, term or potential checked: ``(B,)`` (single-agent) or ``(B, N)`` (multi-agent)."""
        return self.check_array(value, term, batch, fn_name) if self.agents is None else \
            self.check_agent_array(value, term, batch, fn_name)

    def check_agent_array(self, value: Any, term: str, batch: int, fn_name: str) -> np.ndarray:
        """A multi-agent value as ``(B, N)`` float64: a team value ``(B,)`` (or a scalar) is given to
        every agent; ``(B, N)`` and ``{agent: (B,)}`` are per agent. Anything else is an error
        naming the line, the term and what was expected."""
        agents, n = self.agents, len(self.agents)
        names = ", ".join(agents)
        if isinstance(value, dict):
            value = self._from_agent_dict(value, term, batch, fn_name)
        arr = self._float64(value, self._what(term), term, fn_name)
        if arr.ndim == 0 or arr.shape == (batch,):
            arr = np.repeat(arr.reshape(-1, 1), n, axis=1) if arr.ndim else np.full((batch, n), float(arr))
        elif arr.shape != (batch, n):
            line = self._term_line(term, fn_name)
            if arr.ndim == 2 and arr.shape[0] == batch:
                detail = (f"has {arr.shape[1]} per-agent columns, but this task has {n} agents ({names}): a program "
                          f"written for another agent count? Return ({batch},) for the team or ({batch}, {n}) "
                          f"for one value per agent")
            else:
                detail = (f"has shape {arr.shape}, expected ({batch},) (a team value, one per environment) or "
                          f"({batch}, {n}) (one per agent: {names})")
            raise RewardProgramError(f"{self.filename}:{line}: {self._what(term)} {detail}", self.filename, line, term)
        if not np.isfinite(arr).all():
            row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(arr)))
            line = self._term_line(term, fn_name)
            raise RewardProgramError(
                f"{self.filename}:{line}: {self._what(term)} is not finite ({arr[row, col]} for agent "
                f"{agents[col]!r} at batch index {row})", self.filename, line, term)
        return arr

    def _from_agent_dict(self, value: dict, term: str, batch: int, fn_name: str) -> np.ndarray:
        """``{agent: (B,)}`` -> ``(B, N)``; every agent named, no other name."""
        agents = self.agents
        for key in value:
            if key not in agents:
                line = self._term_line(key, fn_name) if isinstance(key, str) else self.return_line(fn_name)
                raise RewardProgramError(
                    f"{self.filename}:{line}: {self._what(term)} names agent {key!r}, which this task does not "
                    f"have (agents: {', '.join(agents)})", self.filename, line, term)
        missing = [a for a in agents if a not in value]
        if missing:
            line = self._term_line(term, fn_name)
            raise RewardProgramError(
                f"{self.filename}:{line}: {self._what(term)} has no value for agent {missing[0]!r}: a dict of "
                f"per-agent values names every agent ({', '.join(agents)})", self.filename, line, term)
        columns = []
        for agent in agents:
            column = self._float64(value[agent], f"{self._what(term)} of agent {agent!r}", term, fn_name, agent)
            if column.ndim == 0:
                column = np.full(batch, float(column))
            if column.shape != (batch,):
                line = self._term_line(agent, fn_name)
                raise RewardProgramError(
                    f"{self.filename}:{line}: {self._what(term)} of agent {agent!r} has shape {column.shape}, "
                    f"expected ({batch},)", self.filename, line, term)
            columns.append(column)
        return np.stack(columns, axis=1)

    def _float64(self, value: Any, what: str, term: str, fn_name: str, line_key: str | None = None) -> np.ndarray:
        """``value`` as a float64 numpy array (tensors copied), or an error naming the line of
        ``line_key`` (default ``term``) and saying that ``what`` is not numeric."""
        try:
            return np.asarray(_to_numpy(value) if _is_torch(value) else value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            line = self._term_line(line_key or term, fn_name)
            raise RewardProgramError(f"{self.filename}:{line}: {what} is not numeric ({type(value).__name__}: {exc})",
                                     self.filename, line, term) from None

    def check_array(self, value: Any, term: str, batch: int, fn_name: str) -> Any:
        if _is_torch(value):
            return self._check_tensor(value, term, batch, fn_name)
        arr = self._float64(value, self._what(term), term, fn_name)
        if arr.shape != (batch,):
            if arr.ndim == 0:
                arr = np.full(batch, float(arr))
            else:
                line = self._term_line(term, fn_name)
                raise RewardProgramError(
                    f"{self.filename}:{line}: {self._what(term)} has shape {arr.shape}, expected "
                    f"({batch},) — one value per environment in the batch", self.filename, line, term)
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr))
            line = self._term_line(term, fn_name)
            raise RewardProgramError(
                f"{self.filename}:{line}: {self._what(term)} is not finite "
                f"({arr[bad[0]]} at batch index {int(bad[0])}; {len(bad)} of {batch} values)",
                self.filename, line, term)
        return arr

    def _check_tensor(self, value: Any, term: str, batch: int, fn_name: str) -> Any:
        import torch

        if value.is_complex():
            line = self._term_line(term, fn_name)
            raise RewardProgramError(f"{self.filename}:{line}: {self._what(term)} has dtype {value.dtype}",
                                     self.filename, line, term)
        value = value.to(torch.float32) if not value.is_floating_point() else value
        if value.ndim == 0:
            value = value.expand(batch)
        if tuple(value.shape) != (batch,):
            line = self._term_line(term, fn_name)
            raise RewardProgramError(
                f"{self.filename}:{line}: {self._what(term)} has shape {tuple(value.shape)}, expected ({batch},)",
                self.filename, line, term)
        if not bool(torch.isfinite(value).all()):
            line = self._term_line(term, fn_name)
            raise RewardProgramError(f"{self.filename}:{line}: {self._what(term)} is not finite",
                                     self.filename, line, term)
        return value

    @staticmethod
    def _what(term: str) -> str:
        return {"reward": "the reward", "potential": "the potential"}.get(term, f"term {term!r}")

    def _function_node(self, fn_name: str) -> ast.FunctionDef | None:
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == fn_name:
                return node
        return None

    def return_line(self, fn_name: str) -> int | None:
        """The line of ``fn_name``'s last ``return`` (where errors about its outputs point); cached."""
        lines = self.__dict__.setdefault("_return_lines", {})
        if fn_name not in lines:
            node = self._function_node(fn_name)
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)] if node is not None else []
            lines[fn_name] = None if node is None else (returns[-1].lineno if returns else node.lineno)
        return lines[fn_name]

    def _term_line(self, term: str, fn_name: str) -> int | None:
        """Line where ``term`` is named (dict key or assignment) in ``fn_name``; else its return."""
        node = self._function_node(fn_name)
        if node is not None and term not in ("reward", "potential"):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Dict):
                    for key in sub.keys:
                        if isinstance(key, ast.Constant) and key.value == term:
                            return key.lineno
                if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) \
                        and sub.slice.value == term and isinstance(sub.ctx, ast.Store):
                    return sub.lineno
        return self.return_line(fn_name)

    def _runtime_error(self, exc: Exception, where: str) -> RewardProgramError:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.filename]
        line = frames[-1].lineno if frames else None
        code = self.lines[line - 1].strip() if line and 0 < line <= len(self.lines) else ""
        if isinstance(exc, UnknownFieldError):
            detail = str(exc)
            term = exc.field
        elif isinstance(exc, ValueError) and "read-only" in str(exc):
            detail = (f"{type(exc).__name__}: {exc} (state fields are read-only: they are shared with the other "
                      f"reward sources and what the environment reports; copy first, e.g. np.array(x))")
            term = None
        else:
            detail = f"{type(exc).__name__}: {exc}"
            term = None
        if isinstance(exc, RuntimeError) and "inference tensor" in str(exc):
            detail += " (state fields are read-only: copy first, e.g. np.array(x))"
        location = f"{self.filename}:{line}" if line else self.filename
        message = f"{location}: error in {where}: {detail}"
        if code:
            message += f"\n    {code}"
        return RewardProgramError(message, self.filename, line, term)


def _restricted_import(env: Mapping[str, Any]):
    """``__import__`` for sandboxed programs: numpy (the backend's ``np``), math, the prelude."""
    prelude = prelude_module.Namespace("rewardgym.rewards.prelude", HELPERS)

    def restricted_import(name: str, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level == 0 and name == "numpy":
            return env["np"]
        if level == 0 and name == "math":
            return math_namespace()
        if level == 0 and name in ("rewardgym.rewards.prelude", prelude_module.__name__):
            if fromlist:
                return prelude
            raise ImportError("import the prelude with `from rewardgym.rewards.prelude import ...`")
        raise ImportError(f"reward programs may not import {name!r}")

    return restricted_import
