"""Static validation of untrusted (e.g. LLM-written) reward programs, and their builtins.

:func:`validate_source` parses a program and checks it against an **allow-list** of Python
syntax before any of it runs; every violation is reported at once as
``file:line:col: construct: reason`` (:class:`ProgramRejected`), so an LLM synthesis loop
can feed all of them back in one round. Programs that pass run with :data:`SAFE_BUILTINS`
only (see :mod:`rewardgym.rewards.program`) and, for ``rewardgym check`` and synthesis,
in a worker process under time and memory limits (:mod:`rewardgym.rewards.worker`): the
static check keeps a program from reaching the interpreter, the file system or numpy's
I/O; the limits stop it from looping or allocating forever. Validation itself evaluates
nothing the program wrote, and any exception inside it is a rejection.

The rules (the decisions are recorded here, next to the code that enforces them):

Module level
    Only docstrings, ``def`` statements, constant assignments (``NAME = <constant>``,
    ``A, B = 1, 2``, ``NAME: type = <constant>``) and the allowed imports. Nothing else runs
    at import time: constants may use numbers, strings, tuples/lists/dicts/sets of them,
    arithmetic, earlier constants, ``np.pi``-style module constants and a few pure numpy
    /math calls (``np.array([...])``, ``np.zeros(3)``, ``np.deg2rad(30)``, ``math.sqrt(2)``).
    The validator never *evaluates* these expressions: it checks their shape only (text
    reaches numpy calls only as a numeric dtype name), so validation costs one walk over the
    syntax whatever the constants are. Their values are computed by the module body in the
    reward worker (:mod:`rewardgym.rewards.worker`), under its time and memory limits:
    ``[0] * 10**10``, ``9**9**9`` or a fancy index of a huge shape ends there as a
    ``MemoryError`` or a time-out naming the line, never in the caller.
    Default values of module-level functions are evaluated at ``def`` time and follow the
    same rule; annotations must be plain type expressions (``np.ndarray``, ``tuple[float, dict]``).
Imports
    ``import numpy``/``import numpy as np``, ``import math`` (any alias) and
    ``from rewardgym.rewards.prelude import helper[, ...]`` (only helpers that are in
    ``allowed_globals``), at module level only. Everything else is rejected, including
    submodules (``import numpy.ctypeslib``), ``from numpy import x`` (write ``np.x``: the
    same program must also run on the torch backend's ``np``), relative, star and
    ``__future__`` imports. ``np`` is in scope without an import anyway, and ``import
    numpy``/``import math`` bind the same read-only allow-listed namespaces.
Syntax
    Allowed: function definitions (nested ones too) without decorators or ``async``,
    assignments (plain, augmented, annotated, walrus), ``if``/``for``/``while``,
    comprehensions and generator expressions, ``lambda``, ``return``, ``raise``,
    ``assert``, ``pass``/``break``/``continue``, ``del``, and expressions (arithmetic,
    comparisons, boolean logic, conditional expressions, subscripts/slices, calls,
    constants, displays, f-strings). Rejected: ``class``; ``try`` (an error must surface
    with its file and line instead of being swallowed into a silent zero reward);
    ``with``; ``global``/``nonlocal``; ``yield``/``await``/``async``; ``match``.
Names
    Any name starting with ``__`` (``__import__``, ``__builtins__``, ``__name__``) and the
    escape/I-O builtins in :data:`FORBIDDEN_NAMES` (``eval``, ``exec``, ``compile``,
    ``open``, ``getattr``, ``globals``, ``type``, ``object``, ``super``, ``print`` ...) are
    rejected in every context, even as a local variable. ``print`` is rejected because a
    reward program has no I/O: report diagnostics as terms of the returned dict (they reach
    ``info["reward_terms"]`` and the episode statistics). A name that is loaded must be in
    ``allowed_globals``, :data:`SAFE_BUILTINS` or bound by the program; the scope analysis is
    deliberately simple: a module-level statement may use names bound by *earlier*
    module-level statements; a name bound anywhere inside a module-level function
    (parameters, assignments, loop/comprehension/lambda variables, nested defs, in any
    nested scope) counts as bound everywhere in that function, plus every module-level
    name. It catches typos and missing helpers, not use-before-assignment (which still
    fails at run time with the line). Module names (``np``, ``math``, aliases) may not be
    rebound and may only be used as ``np.<attr>``: a module cannot be passed around.
Attributes
    Any attribute starting with ``_`` (dunders *and* single-underscore privates such as
    ``state._raw``) is rejected. Attribute assignment or deletion (``np.pi = 3``,
    ``x.y = 1``) is rejected: programs may not mutate what they are given. Every other
    attribute must be on an **allow-list**: on ``np``/``math`` the names of
    :data:`~rewardgym.rewards.prelude.NUMPY_SUBSET` / :data:`~rewardgym.rewards.prelude.MATH_SUBSET`;
    on the state view its fields plus ``prev`` and ``batch_size``; on any other value
    (arrays, tensors, numbers, strings, containers) :data:`ATTRIBUTE_ALLOWLIST`, the pure
    properties and methods a reward needs (``shape``, ``ndim``, ``T``, ``sum``, ``mean``,
    ``clip``, ``astype``, ``reshape`` ...). Because a value's type is not known statically,
    a name that is a view field is accepted on any object only if it is not an attribute
    of any array, tensor, number, string or container type (``ViewSpec.build`` refuses
    such field names), and the torch backend refuses programs that name a tensor attribute
    outside the allow-list. So ``x.ctypes``, ``x.tofile``, ``x.setflags``,
    ``t.untyped_storage()`` or ``"{0.__class__}".format`` are rejected because they are not
    listed, not because they were found.
numpy and math
    ``np.a.b`` chains must name an entry of ``NUMPY_SUBSET`` (``np.linalg.norm``); a typo
    such as ``np.clamp`` is reported with a suggestion, anything else (``np.load``,
    ``np.test``, ``np.lib``, ``np.random``) as outside the allow-list. The same names exist
    under both backends, so validation holds for numpy arrays and torch tensors alike; at
    run time ``np`` and ``math`` are read-only namespaces holding exactly these names.
Calls
    The keyword ``out=`` is rejected: results are new arrays (``y = np.f(x)``), never
    written into an argument. (State arrays are read-only at run time as well.)
Size
    Programs are capped before parsing (:data:`MAX_SOURCE_BYTES`) and after it
    (:data:`MAX_AST_NODES` nodes, :data:`MAX_AST_DEPTH` levels of nesting), so validation
    itself takes bounded time and memory; each cap is a one-line rejection.
State fields (``view_fields``)
    When given, ``s.X`` and ``s.prev.X`` where ``s`` is the first parameter of
    ``compute_reward``/``compute_potential``/``compute_success`` must name a field of the
    view (besides ``s.prev`` and ``s.batch_size``), with a closest-match suggestion.
    Accesses through another name (``p = s.prev; p.X``, helpers) are checked at run time by
    the view itself. Item assignment into a state field (``s.x[0] = 1``) is rejected: views
    are shared by every reward source of a step.
Required functions
    ``compute_reward`` must be defined at module level and accept ``(state, action)``;
    ``compute_potential`` and ``compute_success``, when defined, accept ``(state)``.

Size: above 600 lines because the validator's whole rule set in one place, so that the
static half of the trust boundary can be audited in one read.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import math
import types
from typing import Any, Collection

import numpy as np

from rewardgym.envs.view import RUNTIME_ATTRIBUTE_NAMES
from rewardgym.rewards.prelude import MATH_SUBSET, NUMPY_SUBSET

Violation = tuple[int, int, str, str]
"""``(line, col, construct, reason)``; line and col are 1-based."""


class ProgramRejected(ValueError):
    """The program failed validation; ``violations`` lists (line, col, construct, reason)."""

    def __init__(self, filename: str, violations: list[tuple[int, int, str, str]]):
        self.filename = filename
        self.violations = violations
        lines = [f"{filename}:{ln}:{col}: {what}: {why}" for ln, col, what, why in violations]
        super().__init__("reward program rejected:\n  " + "\n  ".join(lines))


SAFE_BUILTINS: dict[str, Any] = {n: getattr(builtins, n) for n in (
    "abs", "min", "max", "len", "range", "float", "int", "bool", "sum", "zip", "enumerate",
    "dict", "list", "tuple", "round", "any", "all", "sorted", "isinstance", "ValueError",
    "True", "False", "None", "reversed", "map", "filter", "set", "str",
)}
"""The builtins a sandboxed program gets (plus a restricted ``__import__`` added by the loader).

Pure functions and containers only; ``ValueError`` so a program can ``raise`` on bad
input. Deliberately absent: ``print``/``input``/``open`` (no I/O), ``getattr``/``type``/
``object``/``vars``/``dir`` (introspection), ``eval``/``exec``/``compile``, ``pow``
(``**`` does the same), ``format`` (not needed next to f-strings).
"""

PROGRAM_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "compute_reward": ("state", "action"),
    "compute_potential": ("state",),
    "compute_success": ("state",),
}
"""The functions a program may define, with the positional arguments they are called with."""

_IO = "no I/O: a reward program reads its state and returns arrays"
FORBIDDEN_NAMES: dict[str, str] = {
    **{n: "runs arbitrary code" for n in ("eval", "exec", "compile", "breakpoint")},
    **{n: "introspection reaches interpreter internals" for n in (
        "getattr", "setattr", "delattr", "hasattr", "globals", "locals", "vars", "dir",
        "type", "object", "super", "memoryview", "classmethod", "staticmethod", "property")},
    "open": _IO, "input": _IO, "help": _IO, "exit": _IO, "quit": _IO,
    "print": "no I/O: report diagnostics as terms of the returned dict instead",
}
"""Builtins rejected wherever they appear (even as a program's own variable), with the reason."""

ATTRIBUTE_ALLOWLIST: frozenset[str] = frozenset((
    # array / tensor properties
    "shape", "ndim", "size", "T", "real", "imag",
    # pure array methods (each returns a new value or a read-only view; none writes its input)
    "sum", "mean", "min", "max", "prod", "std", "var", "any", "all", "argmax", "argmin", "clip",
    "astype", "reshape", "copy", "flatten", "ravel", "squeeze", "transpose", "round", "item",
    "tolist", "cumsum", "nonzero",
    # containers and strings (the program's own values; view fields are tuples and strings)
    "items", "keys", "values", "get", "append", "extend", "index", "count", "startswith",
    "endswith", "lower", "upper", "strip", "lstrip", "rstrip", "split", "find", "replace", "join",
    "isdigit", "isalpha",
))
"""Attributes a program may use on values other than ``np``, ``math`` and the state view.

The pure properties and methods a reward needs. Anything else, on any object, is a
validation error: ``ctypes``, ``tofile``, ``setflags``, ``flags``, ``base``, ``data``,
``view``, ``fill``, ``resize``, in-place ``sort``, tensor storages, ``str.format`` ...
are excluded by not being listed. See docs/SECURITY.md before adding a name.
"""

VIEW_ATTRIBUTES = frozenset(("prev", "batch_size"))
"""The state view's own attributes besides its fields."""

_NAMESPACE_PATHS = frozenset(p.rsplit(".", 1)[0] for p in NUMPY_SUBSET if "." in p)  # {"linalg"}
_NUMPY_PATHS = frozenset(NUMPY_SUBSET) | _NAMESPACE_PATHS
_MATH_PATHS = frozenset(MATH_SUBSET)

MAX_SOURCE_BYTES = 100_000
"""Largest program source accepted (reward programs are a few KB; checked before parsing)."""
MAX_AST_NODES = 20_000
"""Largest program, in syntax-tree nodes."""
MAX_AST_DEPTH = 100
"""Deepest nesting of expressions and statements (a long chained ``a + a + ...`` counts one
level per operator)."""


def _has_path(module: types.ModuleType, dotted: str) -> bool:
    value: Any = module
    for part in dotted.split("."):
        if part.startswith("_") or not hasattr(value, part):
            return False
        value = getattr(value, part)
    return True


def _tree_size(tree: ast.AST) -> tuple[int, int]:
    """``(nodes, depth)`` of a syntax tree, iteratively (no recursion on hostile input)."""
    nodes, depth, stack = 0, 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if nodes > MAX_AST_NODES or depth > MAX_AST_DEPTH:
            break
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return nodes, depth


_REJECTED_NODES: dict[type, tuple[str, str]] = {
    ast.ClassDef: ("class definition", "classes are not allowed: a reward program is functions "
                   "over arrays (class bodies run at import and expose the type machinery)"),
    ast.Try: ("try statement", "try/except is not allowed: an error must surface with its file "
              "and line instead of being swallowed into a silent zero reward"),
    ast.With: ("with statement", "context managers are not allowed (files, numpy's global state)"),
    ast.Global: ("global statement", "programs may not rebind module names; return values instead"),
    ast.Nonlocal: ("nonlocal statement", "programs may not rebind enclosing names; return values instead"),
    ast.Yield: ("yield", "generators are not allowed: reward functions return arrays"),
    ast.YieldFrom: ("yield from", "generators are not allowed: reward functions return arrays"),
    ast.Await: ("await", "async code is not allowed"),
    ast.AsyncFunctionDef: ("async def", "async code is not allowed"),
    ast.AsyncFor: ("async for", "async code is not allowed"),
    ast.AsyncWith: ("async with", "async code is not allowed"),
    ast.Match: ("match statement", "use if/elif"),
}
if hasattr(ast, "TryStar"):  # Python >= 3.11
    _REJECTED_NODES[ast.TryStar] = _REJECTED_NODES[ast.Try]

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While,
    ast.Return, ast.Pass, ast.Break, ast.Continue, ast.Delete, ast.Assert, ast.Raise,
    ast.FunctionDef, ast.Lambda, ast.Import, ast.ImportFrom, ast.alias, ast.arguments, ast.arg,
    ast.keyword, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.Starred, ast.Constant,
    ast.Tuple, ast.List, ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
    ast.IfExp, ast.Call, ast.NamedExpr, ast.JoinedStr, ast.FormattedValue, ast.expr_context,
    ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
    # only found under rejected statements (already reported): not reported again
    ast.withitem, ast.excepthandler, ast.match_case, ast.pattern,
)

_PRELUDE_MODULE = "rewardgym.rewards.prelude"
_IMPORT_RULE = ("only `import numpy as np`, `import math` and `from rewardgym.rewards.prelude "
                "import <helper>` are allowed (np and the helpers are in scope without imports)")
_CONST_RULE = ("only constants run at import time: numbers, strings, tuples/lists/dicts of them, "
               "arithmetic, earlier constants, np.pi-style constants and np.array/np.zeros/"
               "np.deg2rad-style calls; compute everything else inside compute_reward")
_NUMERIC_DTYPE_NAMES = frozenset(("float32", "float64", "int32", "int64", "bool", "float", "int"))
_CONST_NUMPY_CALLS = frozenset((
    "array", "asarray", "zeros", "ones", "full", "arange", "linspace", "deg2rad",
    "rad2deg", "radians", "degrees", "sqrt", "cos", "sin", "tan", "arctan2", "exp", "log",
    "float64", "float32", "int64", "int32", "abs"))
_CONST_MATH_CALLS = frozenset((
    "sqrt", "cos", "sin", "tan", "atan2", "exp", "log", "log10", "radians", "degrees", "hypot"))


class _NotConstant(Exception):
    def __init__(self, node: ast.AST, construct: str, reason: str = _CONST_RULE):
        super().__init__(reason)
        self.node, self.construct, self.reason = node, construct, reason


def _suggest(name: str, options: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _expr_text(node: ast.AST, limit: int = 40) -> str:
    """Short source text of ``node`` for messages; never raises (a huge literal's text is elided)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) > 4 * limit:
        node = ast.Constant(node.value[:limit])  # no need to render a long text to show its start
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 - e.g. an integer literal too long for repr()
        return "<expression>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bound_in(node: ast.AST) -> set[str]:
    """Every name bound anywhere inside ``node`` (params, stores, dels, nested def names)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            names.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, ast.alias):
            names.add(sub.asname or sub.name.split(".")[0])
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            names.add(sub.name)
    return names


def _module_binds(stmt: ast.stmt) -> set[str]:
    """Names a module-level statement binds in the module namespace."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)):
        return _bound_in(stmt)
    return set()


class _Validator:
    """One validation pass over a parsed program; :meth:`run` returns the sorted violations."""

    def __init__(self, tree: ast.Module, allowed_globals: Collection[str],
                 view_fields: Collection[str] | None):
        self.tree = tree
        self.allowed = set(allowed_globals) | set(SAFE_BUILTINS)
        self.allowed_globals = set(allowed_globals)
        self.view_fields = list(view_fields) if view_fields is not None else None
        self.violations: list[Violation] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        # module aliases: name -> real module (np is numpy unless the program rebinds it)
        self.modules: dict[str, types.ModuleType] = {"np": np} if "np" in allowed_globals else {}
        self.constants: set[str] = set()  # module-level constant names bound so far (never their values)
        self._field_candidates: list[ast.Attribute] = []  # unknown names when no view is given
        self._state_reads: set[int] = set()  # ids of state.X / state.prev.X nodes

    # -- reporting ---------------------------------------------------------------------
    def add(self, node: ast.AST, construct: str, reason: str) -> None:
        line = getattr(node, "lineno", 1) or 1
        col = (getattr(node, "col_offset", 0) or 0) + 1
        self.violations.append((line, col, construct, reason))

    # -- driver -------------------------------------------------------------------------
    def run(self) -> list[Violation]:
        body = self.tree.body
        for stmt in body:  # module aliases are known before any function body is checked
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    if a.name in ("numpy", "math"):
                        self.modules[a.asname or a.name] = np if a.name == "numpy" else math
        all_bound = set().union(*(_module_binds(s) for s in body)) if body else set()
        bound_before: set[str] = set()
        functions: dict[str, ast.FunctionDef] = {}
        for i, stmt in enumerate(body):
            self._top_level(stmt, i, bound_before, all_bound, functions)
            bound_before |= _module_binds(stmt)
        self._required_functions(functions)
        self._check_field_candidates()
        return sorted(set(self.violations))

    def _top_level(self, stmt: ast.stmt, index: int, bound_before: set[str], all_bound: set[str],
                   functions: dict[str, ast.FunctionDef]) -> None:
        scope = bound_before | self.allowed
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            return  # docstring
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self._walk(stmt, scope)
            return
        if isinstance(stmt, ast.FunctionDef):
            functions.setdefault(stmt.name, stmt)
            n0 = len(self.violations)
            self._check_def_header(stmt, scope)
            defaults = [d for d in stmt.args.defaults + stmt.args.kw_defaults if d is not None]
            if len(self.violations) == n0:
                for d in defaults:
                    self._constant_or_report(d)
            self._walk_body(stmt, all_bound | _bound_in(stmt) | self.allowed)
            return
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            n0 = len(self.violations)
            self._walk(stmt, scope)
            if len(self.violations) == n0:
                self._constant_assignment(stmt)
            return
        if type(stmt) in _REJECTED_NODES:
            self._walk(stmt, scope)
            return
        self.add(stmt, f"module-level {type(stmt).__name__.lower()}",
                 "only docstrings, function definitions, constant assignments and allowed "
                 "imports may appear at module level: no code runs at import time")
        self._walk(stmt, scope | _bound_in(stmt))

    # -- the syntax walk -----------------------------------------------------------------
    def _walk(self, node: ast.AST, scope: set[str]) -> None:
        """Check ``node`` and its children; ``scope`` is the set of names a load may use."""
        if type(node) in _REJECTED_NODES:
            self.add(node, *_REJECTED_NODES[type(node)])
        elif not isinstance(node, _ALLOWED_NODES):
            self.add(node, type(node).__name__, "not in the sandbox's allowed syntax")
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self._check_import(node)
            return
        if isinstance(node, ast.FunctionDef):  # nested def (module-level ones go through _top_level)
            self._check_def_header(node, scope)
            self._walk_body(node, scope)
            return
        if isinstance(node, ast.ClassDef):
            return  # reported; its body is not a program's code
        if isinstance(node, ast.AnnAssign):
            self._check_annotation(node.annotation, scope)
            for child in (node.target, node.value):
                if child is not None:
                    self._walk(child, scope)
            return
        if isinstance(node, ast.comprehension) and node.is_async:
            self.add(node.iter, "async for", "async code is not allowed")
        if isinstance(node, ast.keyword) and node.arg == "out":
            self.add(node.value, "keyword out=", "out= writes into an existing array; return a new one "
                     "instead (y = np.f(x))")
        if isinstance(node, ast.Name):
            self._check_name(node, scope)
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node)
        elif isinstance(node, ast.arg):
            self._check_identifier(node, node.arg, "parameter")
            if node.annotation is not None:
                self._check_annotation(node.annotation, scope)
            return
        for child in ast.iter_child_nodes(node):
            self._walk(child, scope)

    def _walk_body(self, fn: ast.FunctionDef, scope: set[str]) -> None:
        for stmt in fn.body:
            self._walk(stmt, scope)

    def _check_def_header(self, fn: ast.FunctionDef, scope: set[str]) -> None:
        """Decorators, name, parameters, annotations and defaults (evaluated at def time)."""
        for dec in fn.decorator_list:
            self.add(dec, f"@{_expr_text(dec)}", "decorators are not allowed (they run code at import time)")
        self._check_identifier(fn, fn.name, "function name")
        if fn.returns is not None:
            self._check_annotation(fn.returns, scope)
        args = fn.args
        for a in args.posonlyargs + args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
            self._walk(a, scope)
        for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self._walk(d, scope)

    def _check_annotation(self, node: ast.expr, scope: set[str]) -> None:
        for sub in ast.walk(node):
            ok = isinstance(sub, (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List,
                                  ast.Constant, ast.expr_context, ast.BitOr)) \
                or (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr))
            if not ok:
                self.add(node, f"annotation {_expr_text(node)}",
                         "annotations must be type expressions such as np.ndarray or tuple[float, dict]")
                return
        self._walk(node, scope)

    def _check_identifier(self, node: ast.AST, name: str, what: str) -> None:
        if name.startswith("__"):
            self.add(node, f"{what} {name!r}", "dunder names reach interpreter internals")
        elif name in FORBIDDEN_NAMES:
            self.add(node, f"{what} {name!r}", f"{name} is reserved: {FORBIDDEN_NAMES[name]}")
        elif name in self.modules and what != "import alias":
            self.add(node, f"{what} {name!r}", f"{name!r} is a module; do not rebind it")

    def _check_name(self, node: ast.Name, scope: set[str]) -> None:
        name = node.id
        if name.startswith("__") or name in FORBIDDEN_NAMES:
            self._check_identifier(node, name, "name")
            return
        if name in self.modules:
            if not isinstance(node.ctx, ast.Load):
                self._check_identifier(node, name, "name")
                return
            parent = self.parents.get(node)
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                self.add(node, f"name {name!r}", f"use the module only as {name}.<name>: modules "
                         "may not be passed around or aliased")
            return
        if isinstance(node.ctx, ast.Load) and name not in scope:
            self.add(node, f"name {name!r}",
                     f"undefined name {name!r}{_suggest(name, scope)} (programs may use np, the "
                     "prelude helpers, safe builtins and the names they define)")

    def _check_attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__"):
            self.add(node, f"attribute .{attr}", "dunder attributes reach interpreter internals")
            return
        if attr.startswith("_"):
            self.add(node, f"attribute .{attr}", "private attributes are not part of any API a "
                     "reward needs")
            return
        if not isinstance(node.ctx, ast.Load):
            self.add(node, f"attribute .{attr}", "attribute assignment is not allowed: programs "
                     "may not mutate the objects they are given (np, state, helpers)")
            return
        path = self._module_path(node)
        if path is not None:
            self._check_module_attribute(node, *path)
            return
        if attr in ATTRIBUTE_ALLOWLIST or attr in VIEW_ATTRIBUTES:
            return
        fields = self.view_fields
        if fields is None:
            if attr not in RUNTIME_ATTRIBUTE_NAMES:
                self._field_candidates.append(node)  # decided once the state parameters are known
                return
        elif attr in fields:
            return  # a field: no array, number or container has an attribute of that name
        elif attr not in RUNTIME_ATTRIBUTE_NAMES:
            close = difflib.get_close_matches(attr, fields, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            base = node.value
            on_state = isinstance(base, ast.Name) or (isinstance(base, ast.Attribute) and base.attr == "prev")
            construct = _expr_text(node) if on_state else f"attribute .{attr}"
            self.add(node, construct, f"unknown state field {attr!r}{hint} (and not in the attribute "
                     f"allow-list); the view's fields are: {', '.join(fields)}")
            return
        self.add(node, f"attribute .{attr}", _attribute_reason(attr))

    def _module_path(self, node: ast.expr) -> tuple[types.ModuleType, str] | None:
        """``(numpy, "linalg.norm")`` for ``np.linalg.norm`` (any alias of numpy/math), else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.modules:
            return self.modules[node.id], ".".join(reversed(parts))
        return None

    @staticmethod
    def _allowed_paths(module: types.ModuleType) -> frozenset[str]:
        return _NUMPY_PATHS if module is np else _MATH_PATHS

    def _resolve(self, node: ast.expr) -> Any:
        """The real object an allow-listed ``np.a.b`` / ``math.a`` chain names, else None."""
        path = self._module_path(node)
        if path is None:
            return None
        module, dotted = path
        if not dotted:
            return module
        if dotted not in self._allowed_paths(module):
            return None
        value: Any = module
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    def _check_module_attribute(self, node: ast.Attribute, module: types.ModuleType, dotted: str) -> None:
        text = _expr_text(node)
        allowed = self._allowed_paths(module)
        name = "np" if module is np else "math"
        if dotted not in allowed:
            options = [p for p in allowed if p.count(".") == dotted.count(".")]
            exists = _has_path(module, dotted)
            why = (f"{name}.{dotted} is not in the sandbox's {name} allow-list (see `rewardgym describe` for "
                   f"the names programs may use)" if exists else
                   f"{module.__name__} has no attribute {dotted!r}{_suggest(dotted, options)}")
            self.add(node, text, why)
            return
        if dotted in _NAMESPACE_PATHS:
            parent = self.parents.get(node)
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                self.add(node, text, f"use the namespace only as {text}.<name>: namespaces may not be "
                         "passed around or aliased")

    def _check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        top = self.parents.get(node) is self.tree
        if isinstance(node, ast.Import):
            for a in node.names:
                construct = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
                if a.name not in ("numpy", "math"):
                    self.add(node, construct, _IMPORT_RULE)
                elif not top:
                    self.add(node, construct, "imports are allowed only at module level")
                elif a.asname:
                    self._check_identifier(node, a.asname, "import alias")
            return
        module = "." * node.level + (node.module or "")
        names = ", ".join(a.name for a in node.names)
        construct = f"from {module} import {names}"
        if module != _PRELUDE_MODULE:
            reason = _IMPORT_RULE
            if module in ("numpy", "math"):
                reason = f"write {'np' if module == 'numpy' else 'math'}.<name> instead of importing names"
            self.add(node, construct, reason)
            return
        if not top:
            self.add(node, construct, "imports are allowed only at module level")
        for a in node.names:
            if a.name == "*":
                self.add(node, construct, "star imports are not allowed; name the helpers")
            elif a.name not in self.allowed_globals:
                self.add(node, construct, f"the prelude has no helper {a.name!r}"
                         f"{_suggest(a.name, self.allowed_globals)}")
            elif a.asname:
                self._check_identifier(node, a.asname, "import alias")

    # -- constants (the only code that runs at import time) ---------------------------------
    # The validator never evaluates a constant: it checks the *shape* of each module-level
    # expression (literals, earlier constants, arithmetic, displays, subscripts and a few
    # pure numpy/math calls), which costs one walk over at most MAX_AST_NODES nodes. The
    # values are computed only by the module body in the reward worker, under its time and
    # memory limits; ``9**9**9`` or ``np.zeros(10**12)`` end there as a time-out or a
    # MemoryError naming the line, never in the caller.
    def _constant_assignment(self, stmt: ast.Assign | ast.AnnAssign) -> None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript, ast.Starred)):
                    self.add(sub, f"assignment to {_expr_text(sub)}",
                             "module level allows only NAME = <constant> (or A, B = <constants>)")
                    return
        if stmt.value is None:
            return
        if not self._constant_or_report(stmt.value):
            return
        for t in targets:
            try:
                self._bind(t, stmt.value)
            except ValueError as exc:
                self.add(t, f"assignment to {_expr_text(t)}", f"cannot unpack the constant: {exc}")

    def _bind(self, target: ast.expr, value: ast.expr | None) -> None:
        """Record the names ``target`` binds; a literal tuple/list value is unpacked by count."""
        if isinstance(target, ast.Name):
            self.constants.add(target.id)
            return
        assert isinstance(target, (ast.Tuple, ast.List))
        items: list[ast.expr | None] = [None] * len(target.elts)
        if isinstance(value, (ast.Tuple, ast.List)) and not any(isinstance(e, ast.Starred) for e in value.elts):
            if len(value.elts) != len(target.elts):
                raise ValueError(f"{len(target.elts)} names, {len(value.elts)} values")
            items = list(value.elts)
        for t, v in zip(target.elts, items):
            self._bind(t, v)

    def _constant_or_report(self, node: ast.expr) -> bool:
        try:
            self._const(node)
        except _NotConstant as exc:
            self.add(exc.node, exc.construct, exc.reason)
            return False
        return True

    def _const(self, node: ast.expr) -> None:
        """Check that ``node`` is a module-level constant expression (module docstring); no evaluation."""
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, complex, str, bytes, bool, type(None))):
                raise _NotConstant(node, _expr_text(node))
            return
        if isinstance(node, ast.Name):
            if node.id not in self.constants:
                raise _NotConstant(node, f"name {node.id!r}", f"{node.id!r} is not a module-level constant: "
                                   "functions, helpers and modules cannot be used at import time")
            return
        if isinstance(node, ast.Attribute):
            value = self._resolve(node)  # an allow-listed np/math member: rewardgym's own modules, not the program's
            if value is None:
                raise _NotConstant(node, _expr_text(node))
            if not (isinstance(value, (int, float, complex, np.generic))
                    or (isinstance(value, type) and issubclass(value, np.generic))):
                raise _NotConstant(node, _expr_text(node), f"{_expr_text(node)} is not a constant; {_CONST_RULE}")
            return
        if isinstance(node, ast.UnaryOp):
            return self._const(node.operand)
        if isinstance(node, ast.BinOp):
            self._const(node.left)
            return self._const(node.right)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for elt in node.elts:
                self._const(elt.value if isinstance(elt, ast.Starred) else elt)
            return
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _NotConstant(node, _expr_text(node), "dict unpacking (**) is not allowed at module level")
            for part in (*node.keys, *node.values):
                self._const(part)
            return
        if isinstance(node, ast.Subscript):
            self._const(node.value)
            return self._const_index(node.slice)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise _NotConstant(node, _expr_text(node))

    def _const_index(self, node: ast.expr) -> None:
        if isinstance(node, ast.Slice):
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self._const(part)
            return
        if isinstance(node, ast.Tuple):
            for e in node.elts:
                self._const_index(e)
            return
        self._const(node)

    def _call(self, node: ast.Call) -> None:
        fn = self._resolve(node.func)
        owner = node.func.value if isinstance(node.func, ast.Attribute) else None
        module = self._resolve(owner) if owner is not None else None
        name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        allowed = fn is not None and ((module is np and name in _CONST_NUMPY_CALLS)
                                      or (module is math and name in _CONST_MATH_CALLS))
        if fn is None or not allowed:
            raise _NotConstant(node, f"call {_expr_text(node.func)}()",
                               f"calls at import time are limited to np.array/np.zeros-style numpy and "
                               f"pure math functions; {_CONST_RULE}")
        if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
            raise _NotConstant(node, f"call {_expr_text(node.func)}()", "*args/**kwargs are not allowed at import time")
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for sub in ast.walk(arg):  # text reaches numpy only as a numeric dtype name
                if isinstance(sub, ast.Constant) and isinstance(sub.value, (str, bytes)) \
                        and sub.value not in _NUMERIC_DTYPE_NAMES:
                    raise _NotConstant(node, f"call {_expr_text(node.func)}()", "import-time numpy calls take "
                                       "numbers, sequences of numbers and numeric dtypes (np.float64 ...) only")
            self._const(arg)

    # -- program functions and state fields -------------------------------------------------
    def _required_functions(self, functions: dict[str, ast.FunctionDef]) -> None:
        if "compute_reward" not in functions:
            self.add(self.tree, "compute_reward", "missing: a program must define "
                     "compute_reward(state, action) at module level")
        for name, params in PROGRAM_FUNCTIONS.items():
            fn = functions.get(name)
            if fn is None:
                continue
            args = fn.args
            positional = args.posonlyargs + args.args
            required = len(positional) - len(args.defaults)
            k = len(params)
            if (len(positional) < k and args.vararg is None) or required > k:
                self.add(fn, f"def {name}", f"{name} must accept ({', '.join(params)}): "
                         f"{k} positional parameter{'s' * (k > 1)}, it has {len(positional)} "
                         f"({required} without default)")
            missing_kw = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
            if missing_kw:
                self.add(fn, f"def {name}", f"keyword-only parameters without defaults are never "
                         f"passed: {', '.join(missing_kw)}")
            if positional:
                self._check_state_use(fn, positional[0].arg)

    def _check_state_use(self, fn: ast.FunctionDef, state: str) -> None:
        """Mark ``state.X`` / ``state.prev.X`` reads; reject writes into state fields."""
        rebound = any(isinstance(n, ast.Name) and n.id == state and not isinstance(n.ctx, ast.Load)
                      for n in ast.walk(fn)) or \
            sum(isinstance(n, ast.arg) and n.arg == state for n in ast.walk(fn)) > 1
        if rebound:
            return  # ``state`` does not always name the view; its attributes get no field leniency
        for node in ast.walk(fn):
            if isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
                root = node.value
                while isinstance(root, (ast.Attribute, ast.Subscript)):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == state:
                    self.add(node, f"assignment to {_expr_text(node)}", "state views are read-only "
                             "(shared by every reward source of the step); copy the field first")
            if not isinstance(node, ast.Attribute):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id == state:
                self._state_reads.add(id(node))
            elif isinstance(value, ast.Attribute) and value.attr == "prev" \
                    and isinstance(value.value, ast.Name) and value.value.id == state:
                self._state_reads.add(id(node))
                if node.attr == "prev":
                    self.add(node, f"{state}.prev.prev", "state.prev.prev does not exist: only one "
                             "previous step is kept")

    def _check_field_candidates(self) -> None:
        """Without a view, unknown attribute names are fields only where they are read from
        the state parameter itself (``state.X``, ``state.prev.X``); anywhere else they are
        outside the allow-list."""
        for node in self._field_candidates:
            if id(node) not in self._state_reads:
                self.add(node, f"attribute .{node.attr}", _attribute_reason(node.attr))


def _attribute_reason(attr: str) -> str:
    return (f"not in the sandbox's attribute allow-list{_suggest(attr, ATTRIBUTE_ALLOWLIST)}; values allow "
            f"{', '.join(sorted(ATTRIBUTE_ALLOWLIST)[:12])}, ... (see docs/SECURITY.md); prefer np.<function>(x)")


def value_attributes(tree: ast.Module) -> frozenset[str]:
    """Attribute names a program reads on values (not on ``np``/``math`` or their aliases)."""
    modules = {"np", "math"} | {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                                for a in node.names if a.name in ("numpy", "math")}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if not (isinstance(root, ast.Name) and root.id in modules):
                names.add(node.attr)
    return frozenset(names)


def validate_source(source: str, filename: str, allowed_globals: Collection[str],
                    view_fields: Collection[str] | None = None) -> None:
    """Raise :class:`ProgramRejected` listing every rule the program breaks (module docstring).

    Args:
        source: the program's Python source text.
        filename: used in every message (``file:line:col: construct: reason``).
        allowed_globals: names the program gets from its environment (``np`` and the
            prelude helpers); ``np`` is assumed to be numpy (or the torch-backed subset).
        view_fields: when given, the task view's field names; ``state.X`` is checked
            against them in ``compute_reward``/``compute_potential``/``compute_success``.

    Raises:
        ProgramRejected: with ``violations`` sorted by ``(line, col)``; a syntax error is
            reported as the single violation ``(line, col, "syntax error", message)``.
    """
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise ProgramRejected(filename, [(1, 1, "source", f"the program is {size:,} bytes; the limit is "
                                          f"{MAX_SOURCE_BYTES:,} (reward programs are a few KB)")])
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise ProgramRejected(filename, [(exc.lineno or 1, exc.offset or 1, "syntax error",
                                          exc.msg)]) from None
    except Exception as exc:  # noqa: BLE001 - null bytes, absurd nesting, literals too long to convert
        raise ProgramRejected(filename, [(1, 1, "source", f"cannot be parsed: {type(exc).__name__}: "
                                          f"{exc or 'too deeply nested'}")]) from None
    nodes, depth = _tree_size(tree)
    if nodes > MAX_AST_NODES or depth > MAX_AST_DEPTH:
        what = (f"more than {MAX_AST_NODES:,} syntax nodes" if nodes > MAX_AST_NODES
                else f"expressions nested more than {MAX_AST_DEPTH} levels deep (split long chains into "
                     "named parts)")
        raise ProgramRejected(filename, [(1, 1, "source", f"the program is too large to validate: {what}")])
    try:
        violations = _Validator(tree, allowed_globals, view_fields).run()
    except Exception as exc:  # noqa: BLE001 - any failure of validation rejects the program, never crashes the caller
        raise ProgramRejected(filename, [(1, 1, "source", f"validation gave up: {type(exc).__name__}")]) from None
    if violations:
        raise ProgramRejected(filename, violations)
