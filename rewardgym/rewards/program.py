"""Reward programs: Python files that compute a reward from a batch of states.

A program defines::

    def compute_reward(state, action):       # required
        ...
        return reward                         # (B,) float
        # or: return reward, {"term": (B,), ...}
    def compute_potential(state): ...         # optional, (B,) float, for shaping
    def compute_success(state): ...           # optional, (B,) bool

``state`` is a :class:`~rewardgym.envs.view.StateView` (``state.hand_pos`` is ``(B, 3)``,
``state.prev.hand_pos`` one step earlier); ``action`` is ``(B, act_dim)`` float64 for
continuous actions, ``(B,)`` int64 for discrete ones. The prelude (``np`` and the helpers
of :mod:`rewardgym.rewards.prelude`) is in scope without imports.

Programs are untrusted unless the caller says otherwise: the source is validated by
:func:`rewardgym.rewards.sandbox.validate_source` before anything runs, and executes with
the sandbox's builtins only. Trusted programs (``trusted=True``) skip validation and get
Python's builtins; the runtime checks below apply to every program.

Runtime checks, every call: the reward and every term must be numeric, of shape ``(B,)``
(a Python/0-d scalar is broadcast to ``(B,)``) and finite. A failure raises
:class:`RewardProgramError` naming the program file, the line and the term; an exception
inside the program is re-raised the same way. A reward is never silently replaced by zero.
"""

from __future__ import annotations

import ast
import builtins
import math
import traceback
import types
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rewardgym.envs.view import StateView, UnknownFieldError, ViewSpec
from rewardgym.rewards import prelude as prelude_module
from rewardgym.rewards.prelude import HELPERS, prelude_namespace
from rewardgym.rewards.sandbox import SAFE_BUILTINS, validate_source
from rewardgym.rewards.source import RewardSource, Terms

PROGRAM_FUNCTIONS = ("compute_reward", "compute_potential", "compute_success")


class RewardProgramError(RuntimeError):
    """A reward program failed at run time; the message names file, line and term.

    Attributes:
        filename: the program's file (or pseudo-file name).
        line: 1-based line in the program, when known.
        term: the term that was bad (``"reward"`` for the total), when relevant.
    """

    def __init__(self, message: str, filename: str, line: int | None = None, term: str | None = None):
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.term = term


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class RewardProgram(RewardSource):
    """A validated reward program usable as a reward source.

    Args:
        source: the program's Python source text.
        filename: where it came from (used in every error message).
        view: the task's view spec; when given, ``state.<field>`` names are checked
            statically before the program runs.
        trusted: skip validation and run with Python's builtins (your own code only).
        name: source name used to prefix terms in compositions (default: file stem).

    Raises:
        rewardgym.rewards.sandbox.ProgramRejected: the source broke a sandbox rule.
    """

    def __init__(self, source: str, filename: str = "<program>", view: ViewSpec | None = None,
                 trusted: bool = False, name: str | None = None):
        self.source = source
        self.filename = filename
        self.view = view
        self.trusted = trusted
        self.name = name or Path(filename).stem
        if not trusted:
            validate_source(source, filename,
                            allowed_globals=set(prelude_namespace("numpy")),
                            view_fields=list(view.fields) if view is not None else None)
        self._code = compile(source, filename, "exec")
        self._tree = ast.parse(source, filename)
        self._namespaces: dict[str, dict[str, Any]] = {}
        self._lines = source.splitlines()
        ns = self._namespace("numpy")
        if "compute_reward" not in ns or not callable(ns["compute_reward"]):
            raise RewardProgramError(f"{filename}: defines no function compute_reward(state, action)",
                                     filename)
        self.has_potential = callable(ns.get("compute_potential"))
        self.has_success = callable(ns.get("compute_success"))

    @classmethod
    def from_file(cls, path: str | Path, view: ViewSpec | None = None, trusted: bool = False,
                  name: str | None = None) -> "RewardProgram":
        """Load and validate the program at ``path``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reward program not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: reward program is not UTF-8 text ({exc})") from None
        return cls(text, str(path), view=view, trusted=trusted, name=name)

    # -- execution -----------------------------------------------------------------
    def _namespace(self, backend: str) -> dict[str, Any]:
        """Module globals for ``backend`` ("numpy" or "torch"), executed once per backend."""
        ns = self._namespaces.get(backend)
        if ns is None:
            env = prelude_namespace(backend)
            if self.trusted:
                safe_builtins: Mapping[str, Any] = builtins.__dict__
            else:
                safe_builtins = dict(SAFE_BUILTINS)
                safe_builtins["__import__"] = _restricted_import(env)
            ns = {"__builtins__": safe_builtins, "__name__": f"rewardgym_program_{self.name}",
                  "__file__": self.filename, **env}
            try:
                exec(self._code, ns)  # noqa: S102 - validated above (or trusted by the caller)
            except Exception as exc:
                raise self._runtime_error(exc, "loading") from exc
            self._namespaces[backend] = ns
        return ns

    def _backend_for(self, state: StateView) -> str:
        return "torch" if _is_torch(state.raw.get("env_reward")) else "numpy"

    def _call(self, fn_name: str, *args: Any) -> Any:
        ns = self._namespace(self._backend_for(args[0]))
        fn = ns.get(fn_name)
        if fn is None:
            raise RewardProgramError(f"{self.filename}: defines no function {fn_name}", self.filename)
        try:
            return fn(*args)
        except RewardProgramError:
            raise
        except Exception as exc:
            raise self._runtime_error(exc, fn_name) from exc

    def compute_reward(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        """Run ``compute_reward``; returns ``(reward (B,), terms {name: (B,)})``, checked."""
        out = self._call("compute_reward", state, action)
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], dict):
                raise RewardProgramError(
                    f"{self.filename}:{self._return_line('compute_reward')}: compute_reward must return "
                    f"reward or (reward, terms_dict); got a tuple of {len(out)} items",
                    self.filename, self._return_line("compute_reward"))
            reward, terms = out
        else:
            reward, terms = out, {}
        batch = state.batch_size
        checked: Terms = {}
        # Terms first: a NaN in a term then names that term, not the total it spoiled.
        for key, value in terms.items():
            if not isinstance(key, str):
                raise RewardProgramError(
                    f"{self.filename}:{self._return_line('compute_reward')}: term names must be strings, "
                    f"got {key!r}", self.filename, self._return_line("compute_reward"))
            checked[key] = self._check_array(value, key, batch, "compute_reward")
        reward = self._check_array(reward, "reward", batch, "compute_reward")
        return reward, checked

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        return self.compute_reward(state, action)

    def compute_potential(self, state: StateView) -> Any:
        """Run ``compute_potential``: Φ(s) as ``(B,)`` float, checked."""
        if not self.has_potential:
            raise RewardProgramError(f"{self.filename}: defines no compute_potential(state)", self.filename)
        return self._check_array(self._call("compute_potential", state), "potential",
                                 state.batch_size, "compute_potential")

    def compute_success(self, state: StateView) -> Any:
        """Run ``compute_success``: ``(B,)`` bool."""
        if not self.has_success:
            raise RewardProgramError(f"{self.filename}: defines no compute_success(state)", self.filename)
        out = self._call("compute_success", state)
        if _is_torch(out):
            return out.bool().reshape(-1) if out.ndim == 0 else out.bool()
        arr = np.asarray(out)
        if arr.ndim == 0:
            arr = np.full(state.batch_size, bool(arr))
        if arr.shape != (state.batch_size,):
            line = self._return_line("compute_success")
            raise RewardProgramError(
                f"{self.filename}:{line}: compute_success returned shape {arr.shape}, expected "
                f"({state.batch_size},)", self.filename, line, "success")
        return arr.astype(bool)

    # -- checks and error reporting -------------------------------------------------
    def _check_array(self, value: Any, term: str, batch: int, fn_name: str) -> Any:
        if _is_torch(value):
            return self._check_tensor(value, term, batch, fn_name)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            line = self._term_line(term, fn_name)
            raise RewardProgramError(
                f"{self.filename}:{line}: {self._what(term)} is not numeric "
                f"({type(value).__name__}: {exc})", self.filename, line, term) from None
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
        for node in self._tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == fn_name:
                return node
        return None

    def _return_line(self, fn_name: str) -> int | None:
        node = self._function_node(fn_name)
        if node is None:
            return None
        returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
        return returns[-1].lineno if returns else node.lineno

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
        return self._return_line(fn_name)

    def _runtime_error(self, exc: Exception, where: str) -> RewardProgramError:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.filename]
        line = frames[-1].lineno if frames else None
        code = self._lines[line - 1].strip() if line and 0 < line <= len(self._lines) else ""
        if isinstance(exc, UnknownFieldError):
            detail = str(exc)
            term = exc.field
        else:
            detail = f"{type(exc).__name__}: {exc}"
            term = None
        location = f"{self.filename}:{line}" if line else self.filename
        message = f"{location}: error in {where}: {detail}"
        if code:
            message += f"\n    {code}"
        return RewardProgramError(message, self.filename, line, term)

    def __repr__(self) -> str:
        return f"RewardProgram({self.filename!r}, trusted={self.trusted})"


def _restricted_import(env: Mapping[str, Any]):
    """``__import__`` for sandboxed programs: numpy (the backend's ``np``), math, the prelude."""
    prelude = types.SimpleNamespace(**HELPERS)

    def restricted_import(name: str, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level == 0 and name == "numpy":
            return env["np"]
        if level == 0 and name == "math":
            return math
        if level == 0 and name in ("rewardgym.rewards.prelude", prelude_module.__name__):
            if fromlist:
                return prelude
            raise ImportError("import the prelude with `from rewardgym.rewards.prelude import ...`")
        raise ImportError(f"reward programs may not import {name!r}")

    return restricted_import
