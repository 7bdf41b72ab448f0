"""State views: the typed, documented, batch-first structure a reward reads.

A family (MuJoCo locomotion, Meta-World, Fetch, NetHack) declares one :class:`ViewSpec`:
a list of :class:`Field` s, each with a shape, a unit, a one-line meaning and a function
that computes the field from the *raw batch*.

The raw batch is a ``dict[str, np.ndarray]`` whose arrays have a leading batch dimension
``B`` (one row per environment). Each environment produces one raw row per step
(:meth:`rewardgym.envs.task.TaskEnv.raw_state`, read from the simulator: MjData,
NetHack's structures), the injection wrapper stacks the rows, and the view derives the
documented fields lazily: a reward that reads only ``torso_lin_vel`` never pays for
``torso_euler``.

Previous values
---------------
``state.prev`` is a view of the same task one step earlier (the state the action was
taken in), with every field of ``state``: ``state.score - state.prev.score`` is the
score gained by this step. On the first step of an episode ``state.prev`` is the reset
state, so differences are well defined on every step and never cross an episode
boundary. ``state.prev.prev`` does not exist.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

RawBatch = Mapping[str, Any]
"""Stacked raw simulator readings: name -> array with leading batch dim ``B``."""


class UnknownFieldError(AttributeError):
    """A reward asked for a state field the task's view does not have."""

    def __init__(self, name: str, view: "ViewSpec"):
        close = difflib.get_close_matches(name, list(view.fields), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"state has no field {name!r} (view {view.name!r}).{hint} "
            f"Fields: {', '.join(view.fields)}."
        )
        self.field = name
        self.view_name = view.name


RESERVED_FIELD_NAMES = frozenset({"prev", "batch_size"})
"""Names a view field may not take: they are the view's own attributes."""

_RUNTIME_TYPES: tuple[type, ...] = (
    np.ndarray, np.generic, np.float64, np.int64, np.bool_, np.str_, np.ufunc, str, bytes, dict,
    list, tuple, set, frozenset, int, float, complex, bool, range, slice, type, map, filter, zip,
    enumerate, reversed, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.GeneratorType,
)
RUNTIME_ATTRIBUTE_NAMES: frozenset[str] = frozenset(
    name for t in _RUNTIME_TYPES for name in dir(t) if not name.startswith("_"))
"""Public attribute names of the values a reward program can hold (arrays, numbers, strings,
containers, functions). A view field may not take one of these names: the sandbox accepts
a field name as an attribute on any object (a helper's ``s.hand_pos``), which is safe only
because no other object has an attribute of that name."""


@dataclass(frozen=True)
class Field:
    """One documented field of a state view.

    Attributes:
        name: attribute name (``state.<name>``).
        shape: shape with ``B`` for the batch, e.g. ``"(B, 3)"`` or ``"(B,)"``.
        unit: physical unit or ``"-"`` when dimensionless; ``"bool"``/``"str"`` for flags, text.
        doc: one sentence saying what the value means and how it is read.
        compute: ``raw_batch -> array`` with the documented shape; vectorised over ``B``.
        previous: whether ``state.prev.<name>`` is meaningful (False for constants).
        brief: a short meaning for compact views (default: ``doc`` shortened by :func:`short_meaning`).
    """

    name: str
    shape: str
    unit: str
    doc: str
    compute: Callable[[RawBatch], Any]
    previous: bool = True
    brief: str | None = None

    @property
    def per_agent(self) -> bool:
        """Whether the field has one row per agent, ``(B, N, ...)`` (multi-agent views)."""
        return self.shape.replace(" ", "").startswith("(B,N")


def raw(key: str, dtype: Any = np.float64) -> Callable[[RawBatch], Any]:
    """Field compute function that returns the raw array ``key`` unchanged (cast to dtype)."""

    def compute(batch: RawBatch) -> Any:
        value = batch[key]
        if isinstance(value, np.ndarray) and dtype is not None and value.dtype != dtype:
            return value.astype(dtype)
        return value

    compute.__name__ = f"raw_{key}"
    return compute


def raw_distance(a: str, b: str) -> Callable[[RawBatch], np.ndarray]:
    """Field compute function: the Euclidean distance ``(B,)`` between raw points ``a`` and ``b`` ``(B, 3)``."""

    def compute(batch: RawBatch) -> np.ndarray:
        diff = np.asarray(batch[a], dtype=np.float64) - np.asarray(batch[b], dtype=np.float64)
        return np.sqrt(np.sum(np.square(diff), axis=-1))

    compute.__name__ = f"dist_{a}_{b}"
    return compute


def common_fields() -> list[Field]:
    """Fields every task view has, whatever the family."""
    return [
        Field("env_reward", "(B,)", "-", "The base environment's own reward for this step.",
              raw("env_reward")),
        Field("success", "(B,)", "bool",
              "The task's success test evaluated on this state (see the task's success test).",
              raw("success", np.bool_)),
        Field("elapsed_steps", "(B,)", "steps",
              "Steps taken so far in this episode (1 on the first step after reset).",
              raw("elapsed_steps", np.int64)),
        Field("terminated", "(B,)", "bool",
              "Whether this step ended the episode in a terminal state (not a time-limit truncation).",
              raw("terminated", np.bool_)),
    ]


@dataclass(frozen=True)
class ViewSpec:
    """The declared fields of one family's state view (immutable once built).

    Args:
        name: family name, e.g. ``"locomotion"``.
        doc: a paragraph that introduces the view (frames, conventions) for a reward writer.
        fields: the family's fields; :func:`common_fields` are appended automatically.
            Stored as a read-only mapping: a view is shared by every env of the process.
    """

    name: str
    doc: str
    fields: Mapping[str, Field] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @classmethod
    def build(cls, name: str, doc: str, fields: list[Field]) -> "ViewSpec":
        all_fields = list(fields) + [f for f in common_fields()
                                     if f.name not in {g.name for g in fields}]
        names = [f.name for f in all_fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"view {name!r} declares fields twice: {sorted(dupes)}")
        for f in all_fields:
            if not f.name.isidentifier() or f.name.startswith("_") or f.name in RESERVED_FIELD_NAMES:
                raise ValueError(f"view {name!r}: field name {f.name!r} is not allowed (it must be a public "
                                 f"identifier other than {', '.join(sorted(RESERVED_FIELD_NAMES))})")
            if f.name in RUNTIME_ATTRIBUTE_NAMES:
                raise ValueError(f"view {name!r}: field name {f.name!r} shadows an attribute of arrays, "
                                 f"numbers or containers (x.{f.name}); choose another name")
        return cls(name=name, doc=doc, fields={f.name: f for f in all_fields})

    def describe(self, meaning: int | None = None, intro: int | None = None, group: bool = False) -> str:
        """Plain-text field table: the exact text an LLM is shown (``rewardgym describe``).

        A multi-agent view (one with per-agent ``(B, N, ...)`` fields) lists its global and
        its per-agent fields in two groups.

        Args:
            meaning: None: the full table. A number: the compact form that prompts for small
                context windows use (``rewardgym describe --compact``): every field, one
                unpadded line each (name, shape, unit), its meaning shortened to at most this
                many characters by :func:`short_meaning` (0: no meaning).
            intro: in the compact form, the view's introduction cut to at most this many
                characters (:func:`short_meaning`; None: whole, 0: left out).
            group: in the compact form, fields of one shape and unit on one line, names only
                (the most compact form that still lists every field with its shape and unit).
        """
        if meaning is not None:
            return self._describe_compact(meaning, intro, group)
        lines = [f"State view `{self.name}`: every field is batch-first (B = number of environments).",
                 self.doc.strip(), ""]
        width = max(len(f.name) for f in self.fields.values())
        shape_w = max(len(f.shape) for f in self.fields.values())
        unit_w = max(len(f.unit) for f in self.fields.values())
        per_agent = [f for f in self.fields.values() if f.per_agent]
        groups = [("Fields (`state.<name>`; `state.prev.<name>` is the value one step earlier):",
                   list(self.fields.values()))]
        if per_agent:
            groups = [("Global fields, (B, ...) (`state.<name>`; `state.prev.<name>` is the value one step earlier):",
                       [f for f in self.fields.values() if not f.per_agent]),
                      ("Per-agent fields, (B, N, ...): row [:, i] is agent i (N = number of agents, in the task's "
                       "agent order):", per_agent)]
        for title, fields in groups:
            if lines[-1]:
                lines.append("")
            lines.append(title)
            for f in fields:
                prev = "" if f.previous else " (no prev)"
                lines.append(f"  {f.name:<{width}}  {f.shape:<{shape_w}}  {f.unit:<{unit_w}}  {f.doc}{prev}")
        return "\n".join(lines)

    def _describe_compact(self, meaning: int, intro: int | None, group: bool) -> str:
        doc = " ".join(self.doc.split())
        doc = doc if intro is None else short_meaning(doc, intro, sentences=True)
        lines = [f"State view `{self.name}` (batch-first, B = number of environments)." + (f" {doc}" if doc else "")]
        fields = list(self.fields.values())
        per_agent = any(f.per_agent for f in fields)
        if per_agent:
            fields.sort(key=lambda f: f.per_agent)  # stable: global fields first, as in the full table
        if group:
            lines.append("Fields by shape and unit (`state.<name>`; `state.prev.<name>`: one step earlier; "
                         "* no prev):")
            groups: dict[tuple[str, str], list[str]] = {}
            for f in fields:
                groups.setdefault((f.shape.replace(" ", ""), f.unit), []).append(f.name + ("" if f.previous else "*"))
            lines += [f"{shape} {unit}: {', '.join(names)}" for (shape, unit), names in groups.items()]
        else:
            lines.append("Fields (`state.<name>` shape unit: meaning; `state.prev.<name>`: one step earlier):")
            for f in fields:
                text = short_meaning(f.brief or f.doc, meaning)
                prev = "" if f.previous else " (no prev)"
                lines.append(f"{f.name} {f.shape.replace(' ', '')} {f.unit}" + (f": {text}" if text else "") + prev)
        if per_agent:
            lines.append("(B,N,...) fields: row [:, i] is agent i, in the task's agent order.")
        return "\n".join(lines)


def short_meaning(text: str, limit: int, sentences: bool = False) -> str:
    """``text`` in at most ``limit`` characters, for a compact view (0: empty).

    Parenthetical remarks go first; then whole clauses (``;``, ``,``) are kept while they fit
    (``sentences``: whole sentences, for a view's introduction), else words with a final
    ``...``. Text that fits is returned unchanged (whitespace collapsed)."""
    text = " ".join(text.split())
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    plain = text
    while True:  # innermost parentheses first
        shorter = re.sub(r" ?\([^()]*\)", "", plain)
        if shorter == plain:
            break
        plain = shorter
    plain = plain.strip()
    if len(plain) <= limit:
        return plain
    marks = r"(?<=[.!?]) " if sentences else r"(?<=[.;,]) "
    kept = ""
    for part in re.split(marks, plain):
        joined = f"{kept} {part}".strip()
        if len(joined) > limit:
            break
        kept = joined
    if kept:
        return kept.rstrip(",;")
    words = plain[: max(0, limit - 3)].rsplit(" ", 1)[0]
    return (words.rstrip(",;:") + "...") if words else ""


class StateView:
    """A batch of states, read through documented fields: ``state.hand_pos`` is ``(B, 3)``.

    Fields are computed on first access and cached; numpy values are handed out
    read-only, so a reward that writes into a field (``x = state.success; x |= True``,
    ``np.add(a, b, out=state.score)``) fails at that line instead of changing what other
    sources and the wrapper read. ``state.prev`` is the view one step earlier (see the
    module docstring). Asking for a field the view lacks raises :class:`UnknownFieldError`,
    naming the field and listing the view's fields.

    The public attributes are exactly the fields, ``prev`` and ``batch_size``: the spec and
    the raw batch are not reachable from a reward program (trusted code in rewardgym uses
    :func:`view_spec` and :func:`raw_batch`).
    """

    __slots__ = ("_spec", "_raw", "_cache", "_prev_raw", "_prev")

    def __init__(self, spec: ViewSpec, raw_batch: RawBatch, prev_raw: RawBatch | None = None):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_raw", raw_batch)
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_prev_raw", prev_raw)
        object.__setattr__(self, "_prev", None)

    @property
    def prev(self) -> "StateView":
        """The same view one step earlier (the state in which the action was taken)."""
        if self._prev_raw is None:
            raise AttributeError("state.prev has no previous step (state.prev.prev is not kept)")
        if self._prev is None:
            object.__setattr__(self, "_prev", StateView(self._spec, self._prev_raw, None))
        return self._prev

    @property
    def batch_size(self) -> int:
        """``B``, the number of environments in the batch."""
        return len(self._raw["env_reward"])

    def __getattr__(self, name: str) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        spec_field = self._spec.fields.get(name)
        if spec_field is None:
            raise UnknownFieldError(name, self._spec)
        value = read_only(spec_field.compute(self._raw))
        cache[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("state views are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("state views are read-only")

    def __dir__(self) -> list[str]:
        return list(self._spec.fields) + ["prev", "batch_size"]

    def __repr__(self) -> str:
        return f"StateView({self._spec.name}, B={self.batch_size}, fields={list(self._spec.fields)})"




def view_spec(state: StateView) -> ViewSpec:
    """The :class:`ViewSpec` of ``state`` (for rewardgym's trusted code; not reachable from programs)."""
    return state._spec


def raw_batch(state: StateView) -> RawBatch:
    """The stacked raw readings ``state`` reads its fields from (trusted code only)."""
    return state._raw


def active_rows(state: StateView) -> Any:
    """``(B,)`` bool: which rows of ``state`` are real transitions.

    False on the autoreset step of Gymnasium's next-step mode: there the row's state and
    previous state are both the reset state and whatever a source returns is discarded;
    a stateful source must not count it. Every row is active outside vector envs."""
    raw = state._raw
    active = raw.get("active") if hasattr(raw, "get") else None
    return np.ones(len(raw["env_reward"]), dtype=bool) if active is None else active


def view_fields(state: StateView) -> dict[str, Any]:
    """Every field of ``state``, computed (for inspection and debugging; rewards read attributes)."""
    return {name: getattr(state, name) for name in state._spec.fields}


def read_only(value: Any) -> Any:
    """``value`` with numpy arrays made non-writeable (in place: fields are shared, not copied)."""
    if isinstance(value, np.ndarray) and value.flags.writeable:
        value.flags.writeable = False
    return value


def freeze_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Make every numpy array of a raw batch non-writeable (in place) and return the batch."""
    for value in batch.values():
        read_only(value)
    return batch


def stack_raw(rows: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack per-environment raw rows (dicts of arrays/scalars) into a raw batch.

    ``rows[i][key]`` has the same shape for every ``i``; the result's ``[key]`` is
    ``(B, *shape)``. Anything that is not a number or an ndarray (strings, tuples of
    strings) becomes an object array of shape ``(B,)``.
    """
    first = rows[0]
    out: dict[str, np.ndarray] = {}
    single = len(rows) == 1
    for key, value in first.items():
        if isinstance(value, np.ndarray):
            # [None] is a view: copy so the batch never aliases a simulator buffer
            out[key] = value[None].copy() if single else np.stack([row[key] for row in rows])
        elif isinstance(value, (int, float, bool, np.number)):
            out[key] = np.array([row[key] for row in rows])
        else:  # strings, tuples of strings, other objects: one object per env
            arr = np.empty(len(rows), dtype=object)
            for i, row in enumerate(rows):
                arr[i] = row[key]
            out[key] = arr
    return out


def select_rows(batch: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``rows`` (bool mask or index array) of every array in a raw batch."""
    return {k: v[rows] for k, v in batch.items()}
