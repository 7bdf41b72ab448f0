"""The reward prelude: helpers every reward program gets without imports.

A reward program runs with ``np`` and the helpers in :data:`HELPERS` in scope. The same
program text runs on numpy arrays (environment stepping, ``rewardgym check``) and on torch
tensors (CPU or CUDA, e.g. rewards recomputed on a replay batch):

* **numpy path** -- every helper casts its inputs once to C-contiguous ``float64`` and calls
  a numba ``@njit(cache=True)`` kernel (explicit loops, no temporaries). Scalars and
  size-1 arguments are broadcast inside the kernel without copies.
* **torch path** -- when any argument is a ``torch.Tensor`` the helper runs a pure-torch
  implementation with the same semantics on the tensor's device. Floating tensors keep their
  dtype; integer/bool tensors are promoted to ``float64`` (as numpy does). torch is never
  imported by this module unless a tensor is passed or ``prelude_namespace("torch")`` is
  called.

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
  the argument; invalid parameter values (``lower > upper``, ``scale <= 0``) raise
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
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
import types
from typing import Any, Callable

import numpy as np
from numba import njit

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
# argument handling
# --------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _any_torch(*args: Any) -> bool:
    return any(_is_torch(a) for a in args)


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
    if len(distinct) <= 1:  # fast path: one array shape plus scalars
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


def _flat(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """1-D view for an elementwise kernel: length 1 (broadcast in-kernel) or prod(shape)."""
    if a.size == 1:
        return a.reshape(1)
    if a.shape == shape:
        return a.reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)


def _rows(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """2-D ``(rows, cols)`` view for a reduction kernel over the last axis of ``shape``.

    rows is 1 or prod(shape[:-1]); cols is 1 or shape[-1]; size-1 axes broadcast in-kernel.
    """
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    lead, k = shape[:-1], shape[-1]
    cols = a.shape[-1]
    if a.shape[:-1] == lead:
        return a.reshape(math.prod(lead), cols)
    if math.prod(a.shape[:-1]) == 1:
        return a.reshape(1, cols)
    return np.ascontiguousarray(np.broadcast_to(a, lead + (cols,))).reshape(math.prod(lead), cols)


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view (no copy): kernels see one array type whether or not the caller's
    array was writeable (reward state fields are read-only), so each kernel compiles once."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _np_elementwise(helper: str, **args: Any) -> tuple[list[np.ndarray], tuple[int, ...]]:
    arrays = {k: _f64(helper, k, v) for k, v in args.items()}
    shape = _broadcast(helper, {k: a.shape for k, a in arrays.items()})
    return [_ro(_flat(a, shape)) for a in arrays.values()], shape


def _np_reduction(helper: str, **args: Any) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """2-D kernel inputs and the output shape (input shape without its last axis)."""
    arrays = {k: _f64(helper, k, v) for k, v in args.items()}
    shape = _broadcast(helper, {k: a.shape for k, a in arrays.items()})
    if len(shape) <= 1:  # scalars / a batch of scalars: k == 1
        arrays = {k: a.reshape(a.shape + (1,)) for k, a in arrays.items()}
        shape = shape + (1,)
    return [_ro(_rows(a, shape)) for a in arrays.values()], shape[:-1]


def _finish(out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | float:
    return float(out[0]) if shape == () else out.reshape(shape)


def _check_positive(helper: str, name: str, value: Any) -> None:
    """ValueError unless the (converted) parameter array is > 0 everywhere."""
    if isinstance(value, np.ndarray) and value.size == 1:
        bad = value.item() <= 0  # fast path for the common scalar parameter
    else:
        bad = bool((value <= 0).any())
    if bad:
        raise ValueError(f"{helper}(): {name!r} must be > 0")


def _check_bounds(lower: Any, upper: Any) -> None:
    """ValueError if the (converted, flat or broadcastable) bounds have lower > upper."""
    if bool((lower > upper).any()):
        raise ValueError("tolerance(): lower bound must be <= upper bound")


# --------------------------------------------------------------------------------------
# numba kernels (float64, explicit loops; a length-1 input axis is broadcast via stride 0)
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _st(a):  # pragma: no cover - compiled
    """Row stride of a kernel input: 0 broadcasts a length-1 axis, 1 walks it."""
    return 1 if a.shape[0] > 1 else 0


@njit(cache=True)
def _k_distance(a, b, out):  # pragma: no cover - compiled
    n, k = out.shape[0], (a.shape[1] if a.shape[1] != 1 else b.shape[1])
    ra, ca = _st(a), (1 if a.shape[1] > 1 else 0)
    rb, cb = _st(b), (1 if b.shape[1] > 1 else 0)
    for i in range(n):
        s = 0.0
        for j in range(k):
            d = a[i * ra, j * ca] - b[i * rb, j * cb]
            s += d * d
        out[i] = math.sqrt(s)


@njit(cache=True)
def _k_sum_sq(x, out):  # pragma: no cover - compiled
    n, k = out.shape[0], x.shape[1]
    rx = _st(x)
    for i in range(n):
        s = 0.0
        for j in range(k):
            v = x[i * rx, j]
            s += v * v
        out[i] = s


@njit(cache=True)
def _k_norm(x, out):  # pragma: no cover - compiled
    _k_sum_sq(x, out)
    for i in range(out.shape[0]):
        out[i] = math.sqrt(out[i])


@njit(cache=True)
def _sigmoid(s, code):  # pragma: no cover - compiled
    """dm_control's sigmoid ``code`` at the *scaled* distance ``s = d * scale``."""
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
def _k_tolerance(x, lower, upper, margin, code, scale, out):  # pragma: no cover - compiled
    sx, sl, su = _st(x), _st(lower), _st(upper)
    for i in range(out.shape[0]):
        v, lo, hi = x[i * sx], lower[i * sl], upper[i * su]
        if lo <= v and v <= hi:
            out[i] = 1.0
        elif margin == 0.0:
            out[i] = 0.0
        else:
            d = (lo - v) if v < lo else (v - hi)
            out[i] = _sigmoid(d / margin * scale, code)


@njit(cache=True)
def _k_squash(x, scale, out):  # pragma: no cover - compiled
    sx, ss = _st(x), _st(scale)
    for i in range(out.shape[0]):
        out[i] = _tanh(x[i * sx] / scale[i * ss])


@njit(cache=True)
def _ramp(v, lo, hi):  # pragma: no cover - compiled
    if hi == lo:
        return 1.0 if v >= hi else 0.0
    t = (v - lo) / (hi - lo)
    return min(max(t, 0.0), 1.0)


@njit(cache=True)
def _k_linear_ramp(x, lo, hi, out):  # pragma: no cover - compiled
    sx, sl, sh = _st(x), _st(lo), _st(hi)
    for i in range(out.shape[0]):
        out[i] = _ramp(x[i * sx], lo[i * sl], hi[i * sh])


@njit(cache=True)
def _k_smooth_step(x, lo, hi, out):  # pragma: no cover - compiled
    sx, sl, sh = _st(x), _st(lo), _st(hi)
    for i in range(out.shape[0]):
        t = _ramp(x[i * sx], lo[i * sl], hi[i * sh])
        out[i] = t * t * (3.0 - 2.0 * t)


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
def _tanh(v):  # pragma: no cover - compiled
    """``tanh(v)`` from one ``exp`` (about 2x faster than libm ``tanh``); abs. error < 4e-16."""
    e = math.exp(-2.0 * abs(v))
    t = (1.0 - e) / (1.0 + e)
    return t if v >= 0.0 else -t


@njit(cache=True)
def _k_angle_wrap(theta, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        out[i] = _wrap(theta[i])


@njit(cache=True)
def _k_angle_diff(a, b, out):  # pragma: no cover - compiled
    sa, sb = _st(a), _st(b)
    for i in range(out.shape[0]):
        out[i] = _wrap(a[i * sa] - b[i * sb])


@njit(cache=True)
def _k_huber(x, delta, out):  # pragma: no cover - compiled
    sx, sd = _st(x), _st(delta)
    for i in range(out.shape[0]):
        a, d = abs(x[i * sx]), delta[i * sd]
        out[i] = 0.5 * a * a if a <= d else d * (a - 0.5 * d)


@njit(cache=True)
def _k_exp_decay(d, scale, out):  # pragma: no cover - compiled
    sd, ss = _st(d), _st(scale)
    for i in range(out.shape[0]):
        out[i] = math.exp(-d[i * sd] / scale[i * ss])


@njit(cache=True)
def _k_quat_to_euler(q, out):  # pragma: no cover - compiled
    for i in range(q.shape[0]):
        w, x, y, z = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
        ww, xx, yy, zz = w * w, x * x, y * y, z * z
        n2 = ww + xx + yy + zz
        out[i, 0] = math.atan2(2.0 * (w * x + y * z), ww - xx - yy + zz)
        s = 2.0 * (w * y - x * z) / n2 if n2 > 0.0 else 0.0
        out[i, 1] = math.asin(min(max(s, -1.0), 1.0))
        out[i, 2] = math.atan2(2.0 * (w * z + x * y), ww + xx - yy - zz)


# --------------------------------------------------------------------------------------
# torch path (imported lazily)
# --------------------------------------------------------------------------------------


def _t_args(helper: str, **args: Any) -> tuple[list[Any], tuple[int, ...]]:
    """All arguments as tensors on the first tensor's device with one floating dtype."""
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


def _t_sigmoid(s: Any, code: int) -> Any:
    import torch

    if code == 0:
        return torch.exp(-0.5 * s * s)
    if code == 1:
        return 1.0 / torch.cosh(s)
    if code == 2:
        return 1.0 / (s * s + 1.0)
    if code == 3:
        return 1.0 / (torch.abs(s) + 1.0)
    inside = torch.abs(s) < 1.0
    if code == 4:
        return torch.where(inside, (1.0 + torch.cos(math.pi * s)) / 2.0, 0.0)
    if code == 5:
        return torch.where(inside, 1.0 - s, 0.0)
    if code == 6:
        return torch.where(inside, 1.0 - s * s, 0.0)
    return 1.0 - torch.tanh(s) ** 2


def _t_wrap(theta: Any) -> Any:
    import torch

    r = math.pi - torch.remainder(math.pi - theta, _TWO_PI)
    return torch.where(r <= -math.pi, math.pi, r)


def _t_reduce_sq(x: Any, ndim: int) -> Any:
    """Sum of squares over the last axis (elementwise square for ndim <= 1)."""
    return x * x if ndim <= 1 else (x * x).sum(dim=-1)


# --------------------------------------------------------------------------------------
# public helpers
# --------------------------------------------------------------------------------------


def distance(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Euclidean distance over the last axis: ``a (B, k)``, ``b (B, k) | (k,)`` -> ``(B,)``, in
    the inputs' unit.

    ``b`` may be a fixed target ``(k,)``; 1-D inputs ``(B,)`` give ``abs(a - b)``.
    """
    if _any_torch(a, b):
        import torch

        (ta, tb), shape = _t_args("distance", a=a, b=b)
        d = ta - tb
        return torch.abs(d) if len(shape) <= 1 else torch.sqrt((d * d).sum(dim=-1))
    (a2, b2), shape = _np_reduction("distance", a=a, b=b)
    out = np.empty(math.prod(shape))
    _k_distance(a2, b2, out)
    return _finish(out, shape)


def norm(x: ArrayLike) -> ArrayLike:
    """Euclidean norm over the last axis: ``(B, k)`` -> ``(B,)``, in the input's unit (``(B,)``
    -> ``abs(x)``).
    """
    if _any_torch(x):
        import torch

        (tx,), shape = _t_args("norm", x=x)
        return torch.sqrt(_t_reduce_sq(tx, len(shape)))
    (x2,), shape = _np_reduction("norm", x=x)
    out = np.empty(math.prod(shape))
    _k_norm(x2, out)
    return _finish(out, shape)


def sum_sq(x: ArrayLike) -> ArrayLike:
    """Sum of squares over the last axis: ``(B, k)`` -> ``(B,)``, e.g. control cost
    ``sum_sq(action)`` (``(B,)`` -> ``x**2``).
    """
    if _any_torch(x):
        (tx,), shape = _t_args("sum_sq", x=x)
        return _t_reduce_sq(tx, len(shape))
    (x2,), shape = _np_reduction("sum_sq", x=x)
    out = np.empty(math.prod(shape))
    _k_sum_sq(x2, out)
    return _finish(out, shape)


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


def tolerance(x: ArrayLike, lower: ArrayLike, upper: ArrayLike, margin: float = 0.0,
              sigmoid: str = "gaussian", value_at_margin: float = 0.1) -> ArrayLike:
    """dm_control's ``rewards.tolerance``: 1 where ``lower <= x <= upper``, decaying to
    ``value_at_margin`` at distance ``margin`` outside; elementwise, ``(B,)`` -> ``(B,)`` in [0,
    1].

    Same semantics as ``dm_control.utils.rewards.tolerance(x, bounds=(lower, upper), margin,
    sigmoid, value_at_margin)`` (Tassa et al., 2018, "DeepMind Control Suite"), with
    ``lower``/``upper`` allowed to be arrays broadcasting against ``x`` (bounds may be
    ``±np.inf`` or equal). ``margin`` (scalar, same unit as ``x``) == 0 gives a hard 0/1
    indicator and ignores ``value_at_margin``. ``sigmoid`` is one of :data:`SIGMOIDS`;
    ``value_at_margin`` must be in (0, 1), or [0, 1) for cosine/linear/quadratic (which have
    compact support: exactly 0 beyond a finite distance).
    """
    if sigmoid not in _SIGMOID_CODE:
        raise ValueError(f"tolerance(): unknown sigmoid {sigmoid!r}; one of {', '.join(SIGMOIDS)}")
    if (margin.ndim if _is_torch(margin) else np.ndim(margin)) != 0:
        raise TypeError("tolerance(): argument 'margin' must be a scalar")
    margin = float(margin)
    if margin < 0:
        raise ValueError(f"tolerance(): margin must be >= 0, got {margin}")
    scale = _sigmoid_scale(sigmoid, float(value_at_margin)) if margin > 0 else 0.0
    code = _SIGMOID_CODE[sigmoid]
    if _any_torch(x, lower, upper):
        import torch

        (tx, tl, tu), _ = _t_args("tolerance", x=x, lower=lower, upper=upper)
        _check_bounds(tl, tu)
        inside = (tl <= tx) & (tx <= tu)
        if margin == 0.0:
            return torch.where(inside, 1.0, 0.0).to(tx.dtype)
        d = torch.where(tx < tl, tl - tx, tx - tu) / margin
        return torch.where(inside, 1.0, _t_sigmoid(d * scale, code))
    (fx, fl, fu), shape = _np_elementwise("tolerance", x=x, lower=lower, upper=upper)
    _check_bounds(fl, fu)
    out = np.empty(math.prod(shape))
    _k_tolerance(fx, fl, fu, margin, code, scale, out)
    return _finish(out, shape)


def squash(x: ArrayLike, scale: ArrayLike = 1.0) -> ArrayLike:
    """``tanh(x / scale)``: smooth saturation of an unbounded term into (-1, 1); elementwise,
    ``scale > 0`` in ``x``'s unit.
    """
    if _any_torch(x, scale):
        import torch

        (tx, ts), _ = _t_args("squash", x=x, scale=scale)
        _check_positive("squash", "scale", ts)
        return torch.tanh(tx / ts)
    (fx, fs), shape = _np_elementwise("squash", x=x, scale=scale)
    _check_positive("squash", "scale", fs)
    out = np.empty(math.prod(shape))
    _k_squash(fx, fs, out)
    return _finish(out, shape)


def linear_ramp(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
    """Linear ramp clipped to [0, 1]: 0 at ``x = lo``, 1 at ``x = hi``; elementwise.

    ``lo > hi`` gives a decreasing ramp; ``lo == hi`` is the step ``x >= hi``.
    """
    if _any_torch(x, lo, hi):
        import torch

        (tx, tl, th), _ = _t_args("linear_ramp", x=x, lo=lo, hi=hi)
        return _t_ramp(torch, tx, tl, th)
    (fx, fl, fh), shape = _np_elementwise("linear_ramp", x=x, lo=lo, hi=hi)
    out = np.empty(math.prod(shape))
    _k_linear_ramp(fx, fl, fh, out)
    return _finish(out, shape)


def _t_ramp(torch: Any, x: Any, lo: Any, hi: Any) -> Any:
    span = hi - lo
    same = span == 0
    t = torch.clamp((x - lo) / torch.where(same, 1.0, span), 0.0, 1.0)
    return torch.where(same, (x >= hi).to(x.dtype), t)


def smooth_step(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
    """Cubic smoothstep ``t*t*(3 - 2t)`` of ``t = linear_ramp(x, lo, hi)``: 0 at ``lo``, 1 at
    ``hi``, zero slope at both ends; elementwise.
    """
    if _any_torch(x, lo, hi):
        import torch

        (tx, tl, th), _ = _t_args("smooth_step", x=x, lo=lo, hi=hi)
        t = _t_ramp(torch, tx, tl, th)
        return t * t * (3.0 - 2.0 * t)
    (fx, fl, fh), shape = _np_elementwise("smooth_step", x=x, lo=lo, hi=hi)
    out = np.empty(math.prod(shape))
    _k_smooth_step(fx, fl, fh, out)
    return _finish(out, shape)


def angle_wrap(theta: ArrayLike) -> ArrayLike:
    """Angle wrapped to (-pi, pi] radians; elementwise (``pi`` and ``-pi`` both map to ``pi``)."""
    if _any_torch(theta):
        (tt,), _ = _t_args("angle_wrap", theta=theta)
        return _t_wrap(tt)
    (ft,), shape = _np_elementwise("angle_wrap", theta=theta)
    out = np.empty(math.prod(shape))
    _k_angle_wrap(ft, out)
    return _finish(out, shape)


def angle_diff(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Signed smallest angle from ``b`` to ``a``, ``angle_wrap(a - b)`` in (-pi, pi] radians;
    elementwise.
    """
    if _any_torch(a, b):
        (ta, tb), _ = _t_args("angle_diff", a=a, b=b)
        return _t_wrap(ta - tb)
    (fa, fb), shape = _np_elementwise("angle_diff", a=a, b=b)
    out = np.empty(math.prod(shape))
    _k_angle_diff(fa, fb, out)
    return _finish(out, shape)


def huber(x: ArrayLike, delta: ArrayLike = 1.0) -> ArrayLike:
    """Huber penalty, elementwise: ``0.5*x**2`` for ``|x| <= delta``, else ``delta*(|x| -
    0.5*delta)`` (Huber, 1964); ``delta > 0``.
    """
    if _any_torch(x, delta):
        import torch

        (tx, td), _ = _t_args("huber", x=x, delta=delta)
        _check_positive("huber", "delta", td)
        a = torch.abs(tx)
        return torch.where(a <= td, 0.5 * a * a, td * (a - 0.5 * td))
    (fx, fd), shape = _np_elementwise("huber", x=x, delta=delta)
    _check_positive("huber", "delta", fd)
    out = np.empty(math.prod(shape))
    _k_huber(fx, fd, out)
    return _finish(out, shape)


def exp_decay(d: ArrayLike, scale: ArrayLike = 1.0) -> ArrayLike:
    """``exp(-d / scale)``: 1 at ``d = 0``, 1/e at ``d = scale``; elementwise, ``scale > 0`` in
    ``d``'s unit (e.g. reward ``exp_decay(distance(a, b), 0.1)``).
    """
    if _any_torch(d, scale):
        import torch

        (td, ts), _ = _t_args("exp_decay", d=d, scale=scale)
        _check_positive("exp_decay", "scale", ts)
        return torch.exp(-td / ts)
    (fd, fs), shape = _np_elementwise("exp_decay", d=d, scale=scale)
    _check_positive("exp_decay", "scale", fs)
    out = np.empty(math.prod(shape))
    _k_exp_decay(fd, fs, out)
    return _finish(out, shape)


def quat_to_euler(q: ArrayLike) -> ArrayLike:
    """Quaternion ``(B, 4)`` (w, x, y, z; MuJoCo order) -> Euler angles ``(B, 3)`` (roll, pitch,
    yaw) in radians.

    Convention ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (extrinsic x-y-z, MuJoCo ``"XYZ"``;
    inverse of ``mujoco.mju_euler2Quat(q, euler, "XYZ")``); roll, yaw in (-pi, pi], pitch in
    [-pi/2, pi/2]. ``q`` need not be normalised (a zero quaternion gives zeros).
    """
    if _any_torch(q):
        import torch

        (tq,), shape = _t_args("quat_to_euler", q=q)
        _check_quat_shape(shape)
        w, x, y, z = tq.unbind(-1)
        ww, xx, yy, zz = w * w, x * x, y * y, z * z
        n2 = ww + xx + yy + zz
        s = torch.where(n2 > 0, 2.0 * (w * y - x * z) / torch.where(n2 > 0, n2, 1.0), 0.0)
        return torch.stack([
            torch.atan2(2.0 * (w * x + y * z), ww - xx - yy + zz),
            torch.asin(torch.clamp(s, -1.0, 1.0)),
            torch.atan2(2.0 * (w * z + x * y), ww + xx - yy - zz),
        ], dim=-1)
    a = _f64("quat_to_euler", "q", q)
    _check_quat_shape(a.shape)
    out = np.empty(a.shape[:-1] + (3,))
    _k_quat_to_euler(_ro(a.reshape(-1, 4)), out.reshape(-1, 3))
    return out


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
    """Compile (or load from numba's cache) every helper's numpy kernel, once per process.

    Reward workers call the helpers after ``fork`` under a system-call allow-list that
    forbids opening files, so the kernels must exist before the fork.
    """
    if _WARM:
        return
    a, b = np.zeros((2, 3)), np.ones((2, 3))
    x = np.linspace(-1.0, 1.0, 4)
    distance(a, b), norm(a), sum_sq(a), squash(x), linear_ramp(x, 0.0, 1.0), smooth_step(x, 0.0, 1.0)
    angle_wrap(x), angle_diff(x, x), huber(x), exp_decay(x), quat_to_euler(np.ones((2, 4)))
    tolerance(x, 0.0, 0.5, margin=0.1)  # one kernel serves every sigmoid (a code argument)
    tolerance(x, 0.0, 0.5)
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

