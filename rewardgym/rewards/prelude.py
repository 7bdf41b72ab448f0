"""The reward prelude: helpers every reward program gets without imports.

A reward program runs with ``np`` and the helpers in :data:`HELPERS` in scope. The same
program text runs on numpy arrays (environment stepping, ``rewardgym check``) and on torch
tensors (CPU or CUDA, e.g. rewards recomputed on a replay batch):

* **one definition** -- each helper is an array-API expression over ``xp``
  (``array_api_compat``'s numpy or torch namespace): the same code computes it on numpy
  arrays and, when any argument is a ``torch.Tensor``, on the tensor's device. Floating
  tensors keep their dtype; integer/bool tensors are promoted to ``float64`` (as numpy
  does). torch is never imported by this module unless a tensor is passed or
  ``prelude_namespace("torch")`` is called.
* **numba kernels** -- on numpy arrays, a numba ``@njit(cache=True)`` kernel (one fused
  loop, float64, no temporaries) replaces the expression wherever it is faster: at any
  batch size for the reductions, wrapping, ramps and Huber, up to a measured batch size for
  the transcendental ones (numpy's SIMD ``exp``/``tanh`` win large batches);
  ``benchmarks/prelude_kernels.py`` measures both against plain numpy and per-item Python.

Conventions (all helpers)
-------------------------
* Batch-first: state fields are ``(B,)`` or ``(B, k)``; Python scalars and 0-d arrays also
  work and give a Python ``float`` (numpy path) or a 0-d tensor (torch path).
* Elementwise helpers (``tolerance``, ``squash``, ...) return the broadcast shape of their
  array arguments (numpy broadcasting rules); parameters such as ``lower`` or ``scale``
  may be scalars or arrays, e.g. a per-env target of shape ``(B,)``.
* Reductions (``distance``, ``norm``, ``sum_sq``) reduce the *last* axis of a ``(B, ..., k)``
  input to ``(B, ...)``. A 1-D input ``(B,)`` is a batch of scalars (``k == 1``), so
  ``norm(x)`` of a ``(B,)`` field is ``abs(x)``, never a single number.
* Shape mismatches (e.g. different batch sizes) raise ``TypeError`` naming the helper and
  the argument; invalid parameter values (``lower > upper``, ``scale <= 0``, NaN) raise
  ``ValueError``.

The ``np`` namespace
--------------------
Both backends give a program the same allow-list of names, :data:`NUMPY_SUBSET`, in a
read-only :class:`Namespace`: ``prelude_namespace("numpy")`` binds each to numpy's own
function, ``prelude_namespace("torch")`` to a function with numpy's semantics over torch,
built on ``array_api_compat.torch`` (array-API semantics: ``axis=``/``keepdims=``
keywords, Python scalars in ``where``/``clip``) plus the numpy spellings reward code uses
(``arctan2``, ``power``, ``linalg.norm(x, axis=-1)``, ``concatenate``, ``float64`` ...).
Nothing outside the list exists in either (``np.load`` is an ``AttributeError``). Use the
function forms (``np.sum(x, axis=-1)``), not array methods (``x.sum(axis=-1)``), and
``np.astype(x, np.float64)`` rather than ``x.astype``: they are the ones both backends
share. Creation functions (``np.array``, ``np.zeros`` ...) default to ``float64`` for
float data, as numpy does, and to the namespace's ``device``.

Size: above 600 lines because each helper exists as an array-API expression, a numba kernel
and a fast lane (measured in benchmarks/prelude_kernels.py); the reward-graph issue folds
them into one definition.
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
import types
from typing import Any, Callable

import array_api_compat.numpy as _XP
import numpy as np
from numba import njit
from numba import types as nb_types
from numba.extending import overload

__all__ = [
    "distance", "norm", "sum_sq", "tolerance", "squash", "linear_ramp", "smooth_step",
    "angle_wrap", "angle_diff", "huber", "exp_decay", "quat_to_euler",
    "HELPERS",
    "MATH_SUBSET",
    "NUMPY_SUBSET",
    "Namespace",
    "SIGMOIDS",
    "describe_prelude",
    "math_namespace",
    "prelude_namespace",
    "warm_up",
]

ArrayLike = Any
"""A Python number, numpy array or torch tensor."""

_TWO_PI = 2.0 * math.pi

SIGMOIDS: tuple[str, ...] = (
    "gaussian",
    "hyperbolic",
    "long_tail",
    "reciprocal",
    "cosine",
    "linear",
    "quadratic",
    "tanh_squared",
)
"""Sigmoid families of :func:`tolerance` (dm_control ``rewards._sigmoids``)."""

_SIGMOID_CODE = {name: i for i, name in enumerate(SIGMOIDS)}


# --------------------------------------------------------------------------------------
# how a helper runs
# --------------------------------------------------------------------------------------
# Every helper is defined once, as an array-API expression ``_<name>(xp, ...)`` over a
# namespace ``xp`` (array_api_compat's numpy or torch): that is the torch path, and the
# numpy path wherever numpy is the fastest way. A numba kernel ``_k_<name>`` (one fused
# loop, no temporaries, no per-call set-up) replaces it on numpy arrays where it is faster:
# up to _KERNEL_UP_TO[name] elements, measured (benchmarks/prelude_kernels.py, 2-core AMD
# EPYC): numba calls cost ~0.5 us, a numpy ufunc ~0.4 us per operation, so a fused kernel
# wins small batches by the number of operations it saves; on large batches numpy's SIMD
# exp/tanh/atan2 beat numba's scalar libm calls, while reductions over a short last axis,
# modulo and branches stay several times faster in numba at any size.
#
# Arguments take one of two lanes. The fast lane (numpy float64 C-contiguous array first,
# Python-number parameters: what reward programs pass) checks nothing it does not have to
# and calls the kernel or the numpy expression directly. Everything else (lists, integer or
# float32 arrays, strided views, array parameters, shape mismatches) takes the general
# lane, which converts, broadcasts and names the argument at fault in errors.

_F64 = np.dtype(np.float64)
_NUMBER = (float, int)  # Python numbers (bool is an int) and numpy float64 scalars (isinstance)

_KERNEL_UP_TO: dict[str, float] = {
    "distance": math.inf, "norm": math.inf, "sum_sq": math.inf, "angle_wrap": math.inf,
    "angle_diff": math.inf, "huber": math.inf, "linear_ramp": math.inf, "smooth_step": math.inf,
    "tolerance": 1024, "quat_to_euler": 512, "squash": 16, "exp_decay": 32,
}
"""Largest batch (elements) for which a helper's numba kernel beats its numpy expression
(``squash`` and ``exp_decay`` are one multiplication and one numpy ufunc: their kernels
write into an array made by the caller and win only small (B,) batches, where two ufunc
calls cost more than one numba call; numpy's SIMD tanh/exp win above)."""

_IN_PLACE_FROM = 1024
"""From this many elements ``squash``/``exp_decay`` apply their ufunc in place on the scaled
input (one temporary, not two); below, a fresh output is faster."""


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _any_torch(*args: Any) -> bool:
    return any(_is_torch(a) for a in args)


def _plain(x: Any) -> bool:
    """A float64 C-contiguous numpy array: the fast lane's first argument."""
    return type(x) is np.ndarray and x.dtype is _F64 and x.flags.c_contiguous


def _xp_torch() -> Any:
    import array_api_compat.torch as xp

    return xp


def _f64(helper: str, name: str, x: Any) -> np.ndarray:
    """``x`` as a C-contiguous float64 array, or a TypeError naming helper and argument."""
    if isinstance(x, np.ndarray) and x.dtype == np.float64 and x.flags.c_contiguous:
        return x
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{helper}(): argument {name!r} must be a number or a numeric array, "
                        f"got {type(x).__name__}")
    try:
        a = np.asarray(x, dtype=np.float64)
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{helper}(): argument {name!r} must be a number or a numeric array, "
                        f"got {type(x).__name__}") from err


def _broadcast(helper: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast shape of the named arguments, or a TypeError naming the culprit."""
    distinct = {tuple(s) for s in shapes.values() if len(s)}
    if len(distinct) <= 1:  # one array shape plus scalars
        return distinct.pop() if distinct else ()
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        pass
    names = list(shapes)
    for i, first in enumerate(names):
        for other in names[i + 1:]:
            try:
                np.broadcast_shapes(shapes[first], shapes[other])
            except ValueError:
                raise TypeError(
                    f"{helper}(): argument {other!r} has shape {tuple(shapes[other])}, which "
                    f"does not broadcast against {first!r} with shape {tuple(shapes[first])} "
                    "(mismatched batch sizes?)") from None
    raise TypeError(f"{helper}(): argument shapes "
                    f"{ {k: tuple(v) for k, v in shapes.items()} } do not broadcast together")


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view (no copy): kernels see one array type whether or not the caller's
    array was writeable (reward state fields are read-only), so the general lane compiles
    each kernel once."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _flat(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only 1-D kernel input: length 1 (broadcast in the kernel) or prod(shape)."""
    if a.size == 1:
        return _ro(a.reshape(1))
    if a.shape != shape:
        a = np.ascontiguousarray(np.broadcast_to(a, shape))
    return _ro(a.reshape(-1))


def _rows(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only 2-D ``(rows, cols)`` kernel input for a reduction over the last axis of
    ``shape``: rows is 1 or prod(shape[:-1]), cols 1 or shape[-1] (size-1 axes broadcast)."""
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    lead, cols = shape[:-1], a.shape[-1]
    if a.shape[:-1] == lead:
        return _ro(a.reshape(math.prod(lead), cols))
    if math.prod(a.shape[:-1]) == 1:
        return _ro(a.reshape(1, cols))
    return _ro(np.ascontiguousarray(np.broadcast_to(a, lead + (cols,))).reshape(math.prod(lead), cols))


def _general(helper: str, **args: Any) -> tuple[str, list[Any], tuple[int, ...]]:
    """The general lane: ``(backend, arrays, broadcast shape)`` with backend ``"torch"``
    (tensors on the first tensor's device, one floating dtype) or ``"numpy"`` (float64)."""
    if _any_torch(*args.values()):
        tensors, shape = _t_args(helper, **args)
        return "torch", tensors, shape
    arrays = {k: _f64(helper, k, v) for k, v in args.items()}
    return "numpy", list(arrays.values()), _broadcast(helper, {k: a.shape for k, a in arrays.items()})


def _t_args(helper: str, **args: Any) -> tuple[list[Any], tuple[int, ...]]:
    """All arguments as tensors on the first tensor's device with one floating dtype
    (floating tensors keep theirs; integer and bool tensors become float64, as in numpy)."""
    import torch

    tensors = [v for v in args.values() if _is_torch(v)]
    device = tensors[0].device
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    if not dtype.is_floating_point:
        dtype = torch.float64
    out = {}
    for k, v in args.items():
        if v is None or isinstance(v, (str, bytes)):
            raise TypeError(f"{helper}(): argument {k!r} must be a number or a numeric array, "
                            f"got {type(v).__name__}")
        try:
            out[k] = torch.as_tensor(v, dtype=dtype, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{helper}(): argument {k!r} must be a number or a numeric "
                            f"array, got {type(v).__name__}") from err
    shape = _broadcast(helper, {k: tuple(t.shape) for k, t in out.items()})
    return list(out.values()), shape


def _out(out: Any, shape: tuple[int, ...]) -> Any:
    """A Python float for a 0-d numpy result, else the array in ``shape``."""
    if isinstance(out, np.ndarray) and shape == ():
        return float(out.reshape(-1)[0])
    return out.reshape(shape) if isinstance(out, np.ndarray) and out.shape != shape else out


def _check_positive(helper: str, name: str, value: Any) -> None:
    """ValueError unless the parameter (number, array or tensor) is > 0 everywhere (NaN is not)."""
    bad = not value > 0 if isinstance(value, _NUMBER) else not bool((value > 0).all())
    if bad:
        raise ValueError(f"{helper}(): {name!r} must be > 0")


def _check_bounds(lower: Any, upper: Any) -> None:
    """ValueError unless lower <= upper everywhere (a NaN bound is not)."""
    bad = not lower <= upper if isinstance(lower, _NUMBER) and isinstance(upper, _NUMBER) \
        else not bool((lower <= upper).all())
    if bad:
        raise ValueError("tolerance(): lower bound must be <= upper bound")


def _elementwise(helper: str, kernel: Any, expr: Callable[..., Any], checks: Callable[..., None], *args: Any,
                 **named: Any) -> Any:
    """The general lane of an elementwise helper: its kernel (``None``: none) up to
    ``_KERNEL_UP_TO[helper]`` elements, else its expression; ``args`` follow the arrays."""
    backend, arrays, shape = _general(helper, **named)
    checks(*arrays)
    if backend == "torch":
        return expr(_xp_torch(), *arrays, *args)
    n = math.prod(shape)
    if kernel is not None and n <= _KERNEL_UP_TO[helper]:
        return _out(kernel(n, *[_flat(a, shape) for a in arrays], *args), shape)
    return _out(_xp_result(expr(_XP, *arrays, *args), shape), shape)


def _no_checks(*arrays: Any) -> None:
    """Helpers whose array arguments need no value check."""


def _xp_result(out: Any, shape: tuple[int, ...]) -> Any:
    """An expression's result in the broadcast ``shape`` (a size-1 argument may have left it smaller)."""
    return out if out.shape == shape else np.broadcast_to(out, shape).copy()


# --------------------------------------------------------------------------------------
# numba kernels: float64, explicit loops, output allocated in the kernel. Parameters are
# numbers or 1-D arrays of length 1 or n (length 1 broadcast through a zero stride):
# _stride and _get below compile to the right access for each.
# --------------------------------------------------------------------------------------


def _stride(p):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


def _get(p, i):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_stride)
def _ol_stride(p):
    if isinstance(p, nb_types.Number):
        return lambda p: 0
    return lambda p: 1 if p.shape[0] > 1 else 0


@overload(_get)
def _ol_get(p, i):
    if isinstance(p, nb_types.Number):
        return lambda p, i: p
    return lambda p, i: p[i]


@njit(cache=True)
def _k_distance(a, b):  # pragma: no cover - compiled
    n = a.shape[0] if a.shape[0] != 1 else b.shape[0]
    k = a.shape[1] if a.shape[1] != 1 else b.shape[1]
    ra, ca = _stride(a), (1 if a.shape[1] > 1 else 0)
    rb, cb = _stride(b), (1 if b.shape[1] > 1 else 0)
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for j in range(k):
            d = a[i * ra, j * ca] - b[i * rb, j * cb]
            s += d * d
        out[i] = math.sqrt(s)
    return out


@njit(cache=True)
def _k_sum_sq(x):  # pragma: no cover - compiled
    n, k = x.shape
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for j in range(k):
            v = x[i, j]
            s += v * v
        out[i] = s
    return out


@njit(cache=True)
def _k_norm(x):  # pragma: no cover - compiled
    out = _k_sum_sq(x)
    for i in range(out.shape[0]):
        out[i] = math.sqrt(out[i])
    return out


@njit(cache=True)
def _sigmoid(s, code):  # pragma: no cover - compiled
    """dm_control's sigmoid ``code`` at the *scaled* distance ``s = d * scale / margin``."""
    if code == 0:  # gaussian
        return math.exp(-0.5 * s * s)
    if code == 1:  # hyperbolic
        return 1.0 / math.cosh(s)
    if code == 2:  # long_tail
        return 1.0 / (s * s + 1.0)
    if code == 3:  # reciprocal
        return 1.0 / (abs(s) + 1.0)
    if code == 4:  # cosine
        return (1.0 + math.cos(math.pi * s)) / 2.0 if abs(s) < 1.0 else 0.0
    if code == 5:  # linear
        return 1.0 - s if abs(s) < 1.0 else 0.0
    if code == 6:  # quadratic
        return 1.0 - s * s if abs(s) < 1.0 else 0.0
    t = math.tanh(s)  # tanh_squared
    return 1.0 - t * t


@njit(cache=True)
def _k_tolerance(n, x, lower, upper, margin, code, scale):  # pragma: no cover - compiled
    sx, sl, su, sm = _stride(x), _stride(lower), _stride(upper), _stride(margin)
    out = np.empty(n)
    for i in range(n):
        v, lo, hi, m = x[i * sx], _get(lower, i * sl), _get(upper, i * su), _get(margin, i * sm)
        if lo <= v and v <= hi:
            out[i] = 1.0
        elif m == 0.0:
            out[i] = 0.0
        else:
            d = (lo - v) if v < lo else (v - hi)
            out[i] = _sigmoid(d / m * scale, code)
    return out


@njit(cache=True)
def _ramp(v, lo, hi):  # pragma: no cover - compiled
    if hi == lo:
        return 1.0 if v >= hi else 0.0
    return min(max((v - lo) / (hi - lo), 0.0), 1.0)


@njit(cache=True)
def _k_linear_ramp(n, x, lo, hi):  # pragma: no cover - compiled
    sx, sl, sh = _stride(x), _stride(lo), _stride(hi)
    out = np.empty(n)
    for i in range(n):
        out[i] = _ramp(x[i * sx], _get(lo, i * sl), _get(hi, i * sh))
    return out


@njit(cache=True)
def _k_smooth_step(n, x, lo, hi):  # pragma: no cover - compiled
    sx, sl, sh = _stride(x), _stride(lo), _stride(hi)
    out = np.empty(n)
    for i in range(n):
        t = _ramp(x[i * sx], _get(lo, i * sl), _get(hi, i * sh))
        out[i] = t * t * (3.0 - 2.0 * t)
    return out


@njit(cache=True)
def _wrap(theta):  # pragma: no cover - compiled
    m = math.pi - theta
    m -= _TWO_PI * math.floor(m / _TWO_PI)  # floored modulo in [0, 2pi) up to rounding
    if m < 0.0:
        m += _TWO_PI
    elif m >= _TWO_PI:
        m -= _TWO_PI
    r = math.pi - m
    return math.pi if r <= -math.pi else r


@njit(cache=True)
def _k_angle_diff(n, a, b):  # pragma: no cover - compiled
    sa, sb = _stride(a), _stride(b)
    out = np.empty(n)
    for i in range(n):
        out[i] = _wrap(a[i * sa] - _get(b, i * sb))
    return out


@njit(cache=True)
def _k_huber(n, x, delta):  # pragma: no cover - compiled
    sx, sd = _stride(x), _stride(delta)
    out = np.empty(n)
    for i in range(n):
        a, d = abs(x[i * sx]), _get(delta, i * sd)
        out[i] = 0.5 * a * a if a <= d else d * (a - 0.5 * d)
    return out


# squash and exp_decay: a (B,) batch and a number into a caller-made ``out`` (returning an
# array from numba costs ~0.45 us, more than the two ufunc calls these kernels replace)


@njit(cache=True)
def _k_squash(x, scale, out):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        out[i] = math.tanh(x[i] / scale)


@njit(cache=True)
def _k_exp_decay(d, scale, out):  # pragma: no cover - compiled
    for i in range(d.shape[0]):
        out[i] = math.exp(-d[i] / scale)


@njit(cache=True)
def _k_quat_to_euler(q):  # pragma: no cover - compiled
    out = np.empty((q.shape[0], 3))
    for i in range(q.shape[0]):
        w, x, y, z = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
        ww, xx, yy, zz = w * w, x * x, y * y, z * z
        n2 = ww + xx + yy + zz
        out[i, 0] = math.atan2(2.0 * (w * x + y * z), ww - xx - yy + zz)
        s = 2.0 * (w * y - x * z) / n2 if n2 > 0.0 else 0.0
        out[i, 1] = math.asin(min(max(s, -1.0), 1.0))
        out[i, 2] = math.atan2(2.0 * (w * z + x * y), ww + xx - yy - zz)
    return out


# --------------------------------------------------------------------------------------
# the helpers: array-API expressions, then the public functions
# --------------------------------------------------------------------------------------


def _distance(xp: Any, a: Any, b: Any, reduce: bool) -> Any:
    d = a - b
    return xp.sqrt(xp.sum(d * d, axis=-1)) if reduce else xp.abs(d)


def _sum_sq(xp: Any, x: Any, reduce: bool) -> Any:
    return xp.sum(x * x, axis=-1) if reduce else x * x


def _reduction(helper: str, kernel: Any, expr: Callable[..., Any], **args: Any) -> Any:
    """General lane of ``distance`` / ``norm`` / ``sum_sq``: reduce the last axis; a
    ``(B,)`` input is a batch of scalars (``k == 1``)."""
    backend, arrays, shape = _general(helper, **args)
    if backend == "torch":
        return expr(_xp_torch(), *arrays, len(shape) > 1)
    if len(shape) <= 1:  # scalars / a batch of scalars: k == 1
        arrays = [a.reshape(a.shape + (1,)) for a in arrays]
        shape = shape + (1,)
    return _out(kernel(*[_rows(a, shape) for a in arrays]), shape[:-1])


def distance(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Euclidean distance over the last axis: ``a (B, k)``, ``b (B, k) | (k,)`` -> ``(B,)``, in
    the inputs' unit.

    ``b`` may be a fixed target ``(k,)``; 1-D inputs ``(B,)`` give ``abs(a - b)``.
    """
    if _plain(a) and _plain(b) and a.ndim == 2 and b.shape == a.shape:  # fast lane
        return _k_distance(_ro(a), _ro(b))
    return _reduction("distance", _k_distance, _distance, a=a, b=b)


def norm(x: ArrayLike) -> ArrayLike:
    """Euclidean norm over the last axis: ``(B, k)`` -> ``(B,)``, in the input's unit (``(B,)``
    -> ``abs(x)``).
    """
    if _plain(x) and x.ndim == 2:
        return _k_norm(_ro(x))
    return _reduction("norm", _k_norm, lambda xp, x, reduce: xp.sqrt(_sum_sq(xp, x, reduce)), x=x)


def sum_sq(x: ArrayLike) -> ArrayLike:
    """Sum of squares over the last axis: ``(B, k)`` -> ``(B,)``, e.g. control cost
    ``sum_sq(action)`` (``(B,)`` -> ``x**2``).
    """
    if _plain(x) and x.ndim == 2:
        return _k_sum_sq(_ro(x))
    return _reduction("sum_sq", _k_sum_sq, _sum_sq, x=x)


@functools.lru_cache(maxsize=256)
def _sigmoid_scale(sigmoid: str, value_at_margin: float) -> float:
    """dm_control's ``scale`` that makes ``sigmoid(1) == value_at_margin``."""
    v = value_at_margin
    if sigmoid in ("cosine", "linear", "quadratic"):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"tolerance(): value_at_margin must be in [0, 1) for sigmoid "
                             f"{sigmoid!r}, got {v}")
    elif not 0.0 < v < 1.0:
        raise ValueError(f"tolerance(): value_at_margin must be in (0, 1) for sigmoid "
                         f"{sigmoid!r}, got {v}")
    return {
        "gaussian": lambda: math.sqrt(-2.0 * math.log(v)),
        "hyperbolic": lambda: math.acosh(1.0 / v),
        "long_tail": lambda: math.sqrt(1.0 / v - 1.0),
        "reciprocal": lambda: 1.0 / v - 1.0,
        "cosine": lambda: math.acos(2.0 * v - 1.0) / math.pi,
        "linear": lambda: 1.0 - v,
        "quadratic": lambda: math.sqrt(1.0 - v),
        "tanh_squared": lambda: math.atanh(math.sqrt(1.0 - v)),
    }[sigmoid]()


def _sigmoid_expr(xp: Any, s: Any, code: int) -> Any:
    """dm_control's sigmoids at the scaled distance ``s`` (1 at ``s == 0``)."""
    if code == 0:
        return xp.exp(-0.5 * (s * s))
    if code == 1:
        return 1.0 / xp.cosh(s)
    if code == 2:
        return 1.0 / (s * s + 1.0)
    if code == 3:
        return 1.0 / (xp.abs(s) + 1.0)
    if code == 7:
        t = xp.tanh(s)
        return 1.0 - t * t
    inside = xp.abs(s) < 1.0
    if code == 4:
        return xp.where(inside, (1.0 + xp.cos(math.pi * s)) / 2.0, 0.0)
    if code == 5:
        return xp.where(inside, 1.0 - s, 0.0)
    return xp.where(inside, 1.0 - s * s, 0.0)


def _tolerance(xp: Any, x: Any, lower: Any, upper: Any, margin: Any, code: int, scale: float) -> Any:
    if xp is _XP:  # numpy: inf at a zero margin and cosh overflow are expected values, not warnings
        with np.errstate(over="ignore", invalid="ignore"):
            return _tolerance_expr(xp, x, lower, upper, margin, code, scale)
    return _tolerance_expr(xp, x, lower, upper, margin, code, scale)


def _tolerance_expr(xp: Any, x: Any, lower: Any, upper: Any, margin: Any, code: int, scale: float) -> Any:
    # distance outside the bounds, 0 inside; fmax skips the NaN of inf - inf when x sits on an
    # infinite bound, while a NaN x stays NaN (and so outside, as in dm_control)
    d = xp.maximum(xp.fmax(lower - x, x - upper), 0.0)
    if isinstance(margin, _NUMBER):
        if margin == 0.0:
            return xp.astype(d == 0.0, d.dtype)
        return _sigmoid_expr(xp, d * (scale / margin), code)  # every sigmoid is 1 at 0
    positive = margin > 0.0
    per_unit = xp.where(positive, scale / xp.where(positive, margin, 1.0), xp.inf)  # margin 0: a step
    return xp.where(d == 0.0, 1.0, _sigmoid_expr(xp, d * per_unit, code))


def tolerance(x: ArrayLike, lower: ArrayLike, upper: ArrayLike, margin: ArrayLike = 0.0,
              sigmoid: str = "gaussian", value_at_margin: float = 0.1) -> ArrayLike:
    """dm_control's ``rewards.tolerance``: 1 where ``lower <= x <= upper``, decaying to
    ``value_at_margin`` at distance ``margin`` outside; elementwise, ``(B,)`` -> ``(B,)`` in [0,
    1].

    Same semantics as ``dm_control.utils.rewards.tolerance(x, bounds=(lower, upper), margin,
    sigmoid, value_at_margin)`` (Tassa et al., 2018, "DeepMind Control Suite"), with
    ``lower``, ``upper`` and ``margin`` allowed to be arrays broadcasting against ``x`` (e.g. a
    per-env margin: the initial distance to a goal). Bounds may be ``±np.inf`` or equal.
    ``margin >= 0`` is in ``x``'s unit; where it is 0 the result is a hard 0/1 indicator and
    ``value_at_margin`` is ignored. ``sigmoid`` is one of :data:`SIGMOIDS`; ``value_at_margin``
    must be in (0, 1), or [0, 1) for cosine/linear/quadratic (which have compact support:
    exactly 0 beyond a finite distance).
    """
    code = _SIGMOID_CODE.get(sigmoid)
    if code is None:
        raise ValueError(f"tolerance(): unknown sigmoid {sigmoid!r}; one of {', '.join(SIGMOIDS)}")
    if isinstance(margin, _NUMBER):
        if not margin >= 0:  # NaN too
            raise ValueError(f"tolerance(): margin must be >= 0, got {margin}")
        scale = _sigmoid_scale(sigmoid, float(value_at_margin)) if margin > 0 else 0.0
        if _plain(x) and isinstance(lower, _NUMBER) and isinstance(upper, _NUMBER):  # fast lane
            _check_bounds(lower, upper)
            if x.size <= _KERNEL_UP_TO["tolerance"]:
                return _out(_k_tolerance(x.size, x.reshape(-1), float(lower), float(upper), float(margin), code,
                                         scale), x.shape)
            return _tolerance(_XP, x, lower, upper, margin, code, scale)
        margin = float(margin)
    else:
        scale = _sigmoid_scale(sigmoid, float(value_at_margin))

    def checks(x: Any, lower: Any, upper: Any, *margins: Any) -> None:
        _check_bounds(lower, upper)
        if margins and not bool((margins[0] >= 0).all()):
            raise ValueError("tolerance(): margin must be >= 0 everywhere")

    if isinstance(margin, float):
        return _elementwise("tolerance", lambda n, x, lo, hi, *a: _k_tolerance(n, x, lo, hi, margin, *a),
                            lambda xp, x, lo, hi, *a: _tolerance(xp, x, lo, hi, margin, *a), checks,
                            code, scale, x=x, lower=lower, upper=upper)
    return _elementwise("tolerance", _k_tolerance, _tolerance, checks, code, scale, x=x, lower=lower,
                        upper=upper, margin=margin)


def _squash(xp: Any, x: Any, scale: Any) -> Any:
    return xp.tanh(x * (1.0 / scale) if isinstance(scale, _NUMBER) else x / scale)


def squash(x: ArrayLike, scale: ArrayLike = 1.0) -> ArrayLike:
    """``tanh(x / scale)``: smooth saturation of an unbounded term into (-1, 1); elementwise,
    ``scale > 0`` in ``x``'s unit.
    """
    # the fast lane is written out here and in exp_decay, not shared: against a reference of
    # two ufunc calls (~0.9 us at B = 16) one more Python call is a tenth of the budget
    if type(x) is np.ndarray and type(scale) in _NUMBER and x.dtype is _F64 and x.ndim == 1 and scale > 0:
        n = x.shape[0]
        if n <= _KERNEL_UP_TO["squash"]:
            out = np.empty(n)
            _k_squash(x, scale, out)
            return out
        out = x * (1.0 / scale)
        return np.tanh(out, out) if n >= _IN_PLACE_FROM else np.tanh(out)
    return _elementwise("squash", None, _squash, lambda x, s: _check_positive("squash", "scale", s),
                        x=x, scale=scale)


def _linear_ramp(xp: Any, x: Any, lo: Any, hi: Any) -> Any:
    if isinstance(lo, _NUMBER) and isinstance(hi, _NUMBER):
        if lo == hi:
            return xp.astype(x >= hi, x.dtype)
        t = (x - lo) * (1.0 / (hi - lo))
        return xp.minimum(xp.maximum(t, 0.0), 1.0)
    span = hi - lo
    same = span == 0.0
    t = xp.minimum(xp.maximum((x - lo) / xp.where(same, 1.0, span), 0.0), 1.0)
    return xp.where(same, xp.astype(x >= hi, t.dtype), t)


def linear_ramp(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
    """Linear ramp clipped to [0, 1]: 0 at ``x = lo``, 1 at ``x = hi``; elementwise.

    ``lo > hi`` gives a decreasing ramp; ``lo == hi`` is the step ``x >= hi``.
    """
    if _plain(x) and isinstance(lo, _NUMBER) and isinstance(hi, _NUMBER):
        return _out(_k_linear_ramp(x.size, x.reshape(-1), float(lo), float(hi)), x.shape)
    return _elementwise("linear_ramp", _k_linear_ramp, _linear_ramp, _no_checks, x=x, lo=lo, hi=hi)


def _smooth_step(xp: Any, x: Any, lo: Any, hi: Any) -> Any:
    t = _linear_ramp(xp, x, lo, hi)
    return t * t * (3.0 - 2.0 * t)


def smooth_step(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
    """Cubic smoothstep ``t*t*(3 - 2t)`` of ``t = linear_ramp(x, lo, hi)``: 0 at ``lo``, 1 at
    ``hi``, zero slope at both ends; elementwise.
    """
    if _plain(x) and isinstance(lo, _NUMBER) and isinstance(hi, _NUMBER):
        return _out(_k_smooth_step(x.size, x.reshape(-1), float(lo), float(hi)), x.shape)
    return _elementwise("smooth_step", _k_smooth_step, _smooth_step, _no_checks, x=x, lo=lo, hi=hi)


def _angle_diff(xp: Any, a: Any, b: Any) -> Any:
    r = math.pi - xp.remainder(math.pi - (a - b), _TWO_PI)
    return xp.where(r <= -math.pi, math.pi, r)


def angle_wrap(theta: ArrayLike) -> ArrayLike:
    """Angle wrapped to (-pi, pi] radians; elementwise (``pi`` and ``-pi`` both map to ``pi``)."""
    if _plain(theta):
        if theta.ndim == 1:  # a batch: no reshapes (a few hundred ns of a ~1 us call)
            return _k_angle_diff(theta.shape[0], theta, 0.0)
        return _out(_k_angle_diff(theta.size, theta.reshape(-1), 0.0), theta.shape)
    return _elementwise("angle_wrap", lambda n, t: _k_angle_diff(n, t, 0.0),
                        lambda xp, t: _angle_diff(xp, t, 0.0), _no_checks, theta=theta)


def angle_diff(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Signed smallest angle from ``b`` to ``a``, ``angle_wrap(a - b)`` in (-pi, pi] radians;
    elementwise.
    """
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype is _F64 and b.dtype is _F64 and a.ndim == 1
            and b.shape == a.shape and not a.flags.writeable and not b.flags.writeable
            and a.flags.c_contiguous and b.flags.c_contiguous):
        return _k_angle_diff(a.shape[0], a, b)  # two read-only (B,) state fields: no views to make
    if _plain(a):
        if isinstance(b, _NUMBER):
            return _out(_k_angle_diff(a.size, a.reshape(-1), float(b)), a.shape)
        if _plain(b) and b.shape == a.shape:
            return _out(_k_angle_diff(a.size, _ro(a.reshape(-1)), _ro(b.reshape(-1))), a.shape)
    return _elementwise("angle_diff", _k_angle_diff, _angle_diff, _no_checks, a=a, b=b)


def _huber(xp: Any, x: Any, delta: Any) -> Any:
    a = xp.abs(x)
    return xp.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta))


def huber(x: ArrayLike, delta: ArrayLike = 1.0) -> ArrayLike:
    """Huber penalty, elementwise: ``0.5*x**2`` for ``|x| <= delta``, else ``delta*(|x| -
    0.5*delta)`` (Huber, 1964); ``delta > 0``.
    """
    if _plain(x) and isinstance(delta, _NUMBER):
        _check_positive("huber", "delta", delta)
        return _out(_k_huber(x.size, x.reshape(-1), float(delta)), x.shape)
    return _elementwise("huber", _k_huber, _huber, lambda x, d: _check_positive("huber", "delta", d),
                        x=x, delta=delta)


def _exp_decay(xp: Any, d: Any, scale: Any) -> Any:
    return xp.exp(d * (-1.0 / scale) if isinstance(scale, _NUMBER) else -d / scale)


def exp_decay(d: ArrayLike, scale: ArrayLike = 1.0) -> ArrayLike:
    """``exp(-d / scale)``: 1 at ``d = 0``, 1/e at ``d = scale``; elementwise, ``scale > 0`` in
    ``d``'s unit (e.g. reward ``exp_decay(distance(a, b), 0.1)``).
    """
    if type(d) is np.ndarray and type(scale) in _NUMBER and d.dtype is _F64 and d.ndim == 1 and scale > 0:
        n = d.shape[0]
        if n <= _KERNEL_UP_TO["exp_decay"]:
            out = np.empty(n)
            _k_exp_decay(d, scale, out)
            return out
        out = d * (-1.0 / scale)
        return np.exp(out, out) if n >= _IN_PLACE_FROM else np.exp(out)
    return _elementwise("exp_decay", None, _exp_decay, lambda d, s: _check_positive("exp_decay", "scale", s),
                        d=d, scale=scale)


def _quat_to_euler(xp: Any, q: Any) -> Any:
    # the rotation matrix of q / |q| times |q|^2: atan2 needs no normalisation, asin does
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wz, xy = ww + zz, xx + yy
    sin_p = w * y
    sin_p -= x * z
    sin_p *= 2.0
    sin_p /= xp.maximum(wz + xy, 1e-300)  # |q|^2; a zero quaternion gives zeros
    roll = w * x
    roll += y * z
    yaw = w * z
    yaw += x * y
    return xp.stack([xp.atan2(2.0 * roll, wz - xy), xp.asin(xp.minimum(xp.maximum(sin_p, -1.0), 1.0)),
                     xp.atan2(2.0 * yaw, (ww + xx) - (yy + zz))], axis=-1)


def quat_to_euler(q: ArrayLike) -> ArrayLike:
    """Quaternion ``(B, 4)`` (w, x, y, z; MuJoCo order) -> Euler angles ``(B, 3)`` (roll, pitch,
    yaw) in radians.

    Convention ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (extrinsic x-y-z, MuJoCo ``"XYZ"``;
    inverse of ``mujoco.mju_euler2Quat(q, euler, "XYZ")``); roll, yaw in (-pi, pi], pitch in
    [-pi/2, pi/2]. ``q`` need not be normalised (a zero quaternion gives zeros).
    """
    if _any_torch(q):
        (tq,), shape = _t_args("quat_to_euler", q=q)
        _check_quat_shape(shape)
        return _quat_to_euler(_xp_torch(), tq)
    a = _f64("quat_to_euler", "q", q)
    _check_quat_shape(a.shape)
    if a.size // 4 <= _KERNEL_UP_TO["quat_to_euler"]:
        return _k_quat_to_euler(_ro(a.reshape(-1, 4))).reshape(a.shape[:-1] + (3,))
    return _quat_to_euler(_XP, a)


def _check_quat_shape(shape: tuple[int, ...]) -> None:
    if len(shape) == 0 or shape[-1] != 4:
        raise TypeError(f"quat_to_euler(): argument 'q' must have shape (..., 4) (w, x, y, z), "
                        f"got {tuple(shape)}")


HELPERS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (distance, norm, sum_sq, tolerance, squash, linear_ramp, smooth_step,
              angle_wrap, angle_diff, huber, exp_decay, quat_to_euler)
}
"""The prelude helpers, by name, in the order they are documented."""


# --------------------------------------------------------------------------------------
# the `np` namespace
# --------------------------------------------------------------------------------------

class Namespace:
    """A read-only namespace of allow-listed names: the ``np`` / ``math`` a program sees.

    Only the names it was built with exist (``np.load`` is an ``AttributeError``, not
    numpy's loader); attributes cannot be set or deleted, so one program cannot change
    what another reads. Its members are reachable only by attribute, never as a mapping.
    """

    __slots__ = ("_rg_name", "_rg_members")

    def __init__(self, name: str, members: dict[str, Any]):
        object.__setattr__(self, "_rg_name", name)
        object.__setattr__(self, "_rg_members", types.MappingProxyType(dict(members)))

    def __getattr__(self, attr: str) -> Any:
        members = object.__getattribute__(self, "_rg_members")
        if attr in members:
            return members[attr]
        name = object.__getattribute__(self, "_rg_name")
        raise AttributeError(f"{name}.{attr} is not available to reward programs (see `rewardgym describe`)")

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"{self._rg_name} is read-only")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{self._rg_name} is read-only")

    def __dir__(self) -> list[str]:
        return sorted(self._rg_members)

    def __repr__(self) -> str:
        return f"<{self._rg_name}: {len(self._rg_members)} allow-listed names>"


# The allow-list of `np.<name>` a reward program may use. It is one list for both
# backends: the numpy backend binds each name to numpy's own function, the torch backend to
# a function with numpy's semantics over tensors. Adding a name means adding it here and
# (if its torch spelling differs) to _TORCH_ALIASES or _torch_numpy below; docs/SECURITY.md
# says what a name must satisfy (pure: no I/O, no global state, no callbacks, no in-place
# writes into its arguments).
_ELEMENTWISE = (
    "abs", "absolute", "sqrt", "square", "exp", "expm1", "log", "log1p", "log2", "log10", "sin", "cos",
    "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "floor", "ceil", "round", "trunc", "sign", "copysign", "maximum", "minimum", "clip",
    "where", "hypot", "power", "mod", "remainder", "fmod", "isfinite", "isnan", "isinf", "isclose",
    "nan_to_num", "logical_and", "logical_or", "logical_not", "logical_xor", "deg2rad", "rad2deg",
    "radians", "degrees",
)
_REDUCTIONS = (
    "sum", "mean", "prod", "max", "min", "amax", "amin", "any", "all", "argmax", "argmin", "std",
    "var", "count_nonzero", "cumsum",
)
_SHAPES = (
    "zeros_like", "ones_like", "full_like", "stack", "concatenate", "reshape", "expand_dims", "squeeze",
    "broadcast_to", "astype", "einsum", "matmul", "sort", "flip", "cross",
)
_CREATION = ("array", "asarray", "zeros", "ones", "full", "arange", "linspace")
_CONSTANTS = ("pi", "e", "inf", "nan", "newaxis", "float32", "float64", "int32", "int64", "bool_")
_LINALG = ("norm", "vector_norm")

NUMPY_SUBSET: tuple[str, ...] = tuple(sorted(
    set(_ELEMENTWISE) | set(_REDUCTIONS) | set(_SHAPES) | set(_CREATION) | set(_CONSTANTS)
    | {f"linalg.{n}" for n in _LINALG}))
"""Every ``np.<name>`` a reward program may use, on either backend (``linalg.norm`` is
``np.linalg.norm``). Anything else is a validation error naming the line."""

MATH_SUBSET: tuple[str, ...] = tuple(sorted((
    "pi", "e", "tau", "inf", "nan", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "pow",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh",
    "atanh", "hypot", "fabs", "floor", "ceil", "trunc", "copysign", "fmod", "radians", "degrees",
    "isfinite", "isnan", "isinf", "isclose", "erf", "erfc", "dist", "prod", "fsum")))
"""Every ``math.<name>`` a reward program may use."""

# numpy name -> array_api_compat.torch name (same semantics under the array API).
_TORCH_ALIASES = {
    "absolute": "abs", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
    "arctan2": "atan2", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh",
    "power": "pow", "concatenate": "concat", "bool_": "bool", "amax": "max", "amin": "min",
    "mod": "remainder", "radians": "deg2rad", "degrees": "rad2deg",
}


def _numpy_namespace() -> Namespace:
    """The numpy backend's ``np``: numpy's own functions, restricted to :data:`NUMPY_SUBSET`."""
    top = {n: getattr(np, n) for n in NUMPY_SUBSET if "." not in n}
    top["linalg"] = Namespace("np.linalg", {n: getattr(np.linalg, n) for n in _LINALG})
    return Namespace("np", top)


def _math_namespace() -> Namespace:
    return Namespace("math", {n: getattr(math, n) for n in MATH_SUBSET})


def _torch_numpy(device: Any = None) -> Namespace:
    """A numpy-like namespace over torch with exactly the names of :data:`NUMPY_SUBSET`."""
    import array_api_compat.torch as xp
    import torch

    wrapped = {"asarray", "array", "zeros", "ones", "full", "arange", "linspace", "where", "cross",
               "isclose", "cumsum", "nan_to_num"}
    ns: dict[str, Any] = {n: getattr(xp, _TORCH_ALIASES.get(n, n)) for n in NUMPY_SUBSET
                          if "." not in n and n not in wrapped}

    f64 = torch.float64

    def _on(t: Any, dev: Any) -> Any:
        return t if dev is None else t.to(dev)

    def asarray(obj: Any, dtype: Any = None, device: Any = device, copy: Any = None) -> Any:
        """numpy-style ``asarray``: numpy's dtype rules (float64 for floats); tensors pass
        through.
        """
        if _is_torch(obj):
            return _on(obj if dtype is None else obj.to(dtype), device)
        if isinstance(obj, (list, tuple)) and any(_is_torch(o) for o in obj):
            return xp.stack([asarray(o, dtype, device) for o in obj])
        if dtype is None:
            return _on(torch.from_numpy(np.array(obj)), device)
        return torch.asarray(obj, dtype=dtype, device=device, copy=copy)

    def array(obj: Any, dtype: Any = None, device: Any = device) -> Any:
        """numpy-style ``array`` (always a copy)."""
        return asarray(obj, dtype=dtype, device=device, copy=True)

    def zeros(shape: Any, dtype: Any = None, device: Any = device) -> Any:
        """numpy-style ``zeros``: float64 by default."""
        return xp.zeros(shape, dtype=dtype or f64, device=device)

    def ones(shape: Any, dtype: Any = None, device: Any = device) -> Any:
        """numpy-style ``ones``: float64 by default."""
        return xp.ones(shape, dtype=dtype or f64, device=device)

    def full(shape: Any, fill_value: Any, dtype: Any = None, device: Any = device) -> Any:
        """numpy-style ``full``: float64 for a float fill value."""
        if dtype is None and isinstance(fill_value, float):
            dtype = f64
        return xp.full(shape, fill_value, dtype=dtype, device=device)

    def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None,
               device: Any = device) -> Any:
        """numpy-style ``arange``: float64 when any bound is a float, else int64."""
        if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
            dtype = f64
        return xp.arange(start, stop, step, dtype=dtype, device=device)

    def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, dtype: Any = None,
                 device: Any = device) -> Any:
        """numpy-style ``linspace``: float64 by default."""
        return xp.linspace(start, stop, num, dtype=dtype or f64, device=device, endpoint=endpoint)

    def where(condition: Any, x: Any, y: Any) -> Any:
        """``numpy.where(condition, x, y)``; two Python-scalar branches give float64/int64 as
        numpy.
        """
        if not _is_torch(x) and not _is_torch(y):
            x = asarray(x, device=condition.device)
        return xp.where(condition, x, y)

    def isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Any:
        """``numpy.isclose``: either argument may be a Python number."""
        if not _is_torch(a):
            a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
        if not _is_torch(b):
            b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
        return torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    def cumsum(x: Any, axis: int | None = None) -> Any:
        """``numpy.cumsum``: over the flattened input when ``axis`` is None."""
        return torch.cumsum(x.reshape(-1) if axis is None else x, dim=0 if axis is None else axis)

    def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: float | None = None,
                   neginf: float | None = None) -> Any:
        """``numpy.nan_to_num`` (never in place)."""
        return torch.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)

    def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        """``numpy.linalg.norm(x, ord=None, axis=None, keepdims=False)`` on a tensor."""
        if not x.dtype.is_floating_point:
            x = x.to(torch.float64)
        return torch.linalg.norm(x, ord=ord, dim=axis, keepdim=keepdims)

    def cross(a: Any, b: Any, axis: int = -1) -> Any:
        """``numpy.cross`` of 3-vectors over ``axis`` (broadcasting)."""
        a, b = torch.broadcast_tensors(a, b)
        return torch.linalg.cross(a, b, dim=axis)

    ns.update(asarray=asarray, array=array, zeros=zeros, ones=ones, full=full, arange=arange,
              linspace=linspace, where=where, cross=cross, isclose=isclose, cumsum=cumsum,
              nan_to_num=nan_to_num)
    ns["linalg"] = Namespace("np.linalg", {"norm": norm, "vector_norm": xp.linalg.vector_norm})
    assert set(ns) - {"linalg"} | {f"linalg.{n}" for n in _LINALG} == set(NUMPY_SUBSET)
    return Namespace("np", ns)


_WARM: list[bool] = []


def warm_up() -> None:
    """Compile (or load from numba's cache) every helper's numpy kernels, once per process.

    Reward workers call the helpers after ``fork`` under a system-call allow-list that
    forbids opening files, so the kernels must exist before the fork: one variant per
    argument lane (a writeable or read-only first array with number parameters; read-only
    arrays for every argument).
    """
    if _WARM:
        return
    rw = np.linspace(-1.0, 1.0, 4)
    per_env = np.full(4, 0.5)  # array parameters take the general lane
    m = np.zeros((2, 3))
    distance(m, m + 1.0), norm(m), sum_sq(m), quat_to_euler(np.ones((2, 4)))
    for x in (rw, _ro(rw.copy())):  # the fast lane: writeable and read-only arrays
        linear_ramp(x, 0.0, 1.0), smooth_step(x, 0.0, 1.0)
        angle_wrap(x), angle_diff(x, 0.5), huber(x, 1.0), tolerance(x, 0.0, 0.5, margin=0.1)
        squash(x, 2.0), exp_decay(x, 0.5), squash(x, 2), exp_decay(x, 1)  # float and int scales
    huber(rw, per_env), angle_diff(rw, per_env)
    linear_ramp(rw, per_env, 1.0), smooth_step(rw, per_env, 1.0)
    tolerance(rw, per_env, 1.0, margin=0.1), tolerance(rw, 0.0, 0.5, margin=per_env)
    _WARM.append(True)


_NAMESPACES: dict[str, Namespace] = {}


def prelude_namespace(backend: str = "numpy", *, device: Any = None) -> dict[str, Any]:
    """Globals for a reward program: ``{"np": <namespace>, **HELPERS}``.

    Args:
        backend: ``"numpy"`` (``np`` holds numpy's functions) or ``"torch"`` (``np`` holds
            functions with numpy's semantics over tensors; the helpers dispatch on tensors).
            Either way ``np`` has exactly the names of :data:`NUMPY_SUBSET` and is read-only.
        device: torch only: device for arrays the program creates (``np.array``,
            ``np.zeros`` ...); ``None`` uses torch's default device.
    """
    if backend == "numpy":
        if device is not None:
            raise ValueError("prelude_namespace(): device is only meaningful for backend='torch'")
        if "numpy" not in _NAMESPACES:
            _NAMESPACES["numpy"] = _numpy_namespace()
        return {"np": _NAMESPACES["numpy"], **HELPERS}
    if backend == "torch":
        return {"np": _torch_numpy(device), **HELPERS}
    raise ValueError(f"prelude_namespace(): unknown backend {backend!r}; use 'numpy' or 'torch'")


def math_namespace() -> Namespace:
    """The ``math`` a program gets from ``import math``: :data:`MATH_SUBSET`, read-only."""
    if "math" not in _NAMESPACES:
        _NAMESPACES["math"] = _math_namespace()
    return _NAMESPACES["math"]


_HEADER = """\
Reward prelude: names available in every reward program without imports.

np      numpy. The same program may also run on torch tensors, so use only function forms
        (np.sum(x, axis=-1), not x.sum()) from this subset:
        {subset}
Shapes  batch-first: state fields are (B,) or (B, k); reductions act on the last axis and
        a (B,) input is a batch of scalars; elementwise helpers broadcast (scalars ok).

Helpers:"""


def describe_prelude(brief: bool = False) -> str:
    """Documentation of the prelude shown to reward writers (and LLMs).

    Generated from :data:`NUMPY_SUBSET` and each helper's signature and first docstring
    paragraph, so it cannot drift from the code. ``brief``: signatures only (about a third
    of the length; what a prompt keeps when it must fit a small context window).
    """
    subset = ", ".join(NUMPY_SUBSET)
    lines = [_HEADER.format(subset="\n        ".join(textwrap.wrap(subset, 80)))]
    for name, fn in HELPERS.items():
        sig = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                        for p in inspect.signature(fn).parameters.values())
        lines.append(f"  {name}({sig})")
        if brief:
            continue
        first = inspect.getdoc(fn).split("\n\n")[0].replace("\n", " ").replace("``", "`")
        lines.append(textwrap.fill(first, 94, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                   break_on_hyphens=False))
    return "\n".join(lines)

