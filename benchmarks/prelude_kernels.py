"""Prelude helpers (numba kernels) vs a per-item pure-Python loop vs a plain numpy expression.

Run ``python benchmarks/prelude_kernels.py [--batch 4096] [--no-jit]``. For each helper the
three implementations are checked to agree, then timed side by side in this process:

* ``numba``: the public helper (argument casting + the ``@njit(cache=True)`` kernel), i.e.
  what a reward program pays per call. Kernels are warmed up first, so JIT compilation is
  never inside a measurement; the first call of each helper in this process is reported
  separately (``first ms``: compile, or load from numba's on-disk cache).
* ``python``: a per-item loop over the batch with ``math`` (inputs converted with
  ``.tolist()`` inside the timed region), the obvious non-vectorised implementation.
* ``numpy``: the equivalent vectorised numpy expression.

Unless ``--no-jit`` is given, two fresh interpreters sharing an empty ``NUMBA_CACHE_DIR``
also measure the first-call time with a cold cache (compile) and then a warm cache (load).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from rewardgym.rewards import prelude as P

_2PI = 2.0 * math.pi
_GAUSS = math.sqrt(-2.0 * math.log(0.1))  # dm_control gaussian scale for value_at_margin=0.1


# ---------------------------------------------------------------- per-item references


def _py_rows(fn: Callable[..., float], *arrays: np.ndarray) -> np.ndarray:
    cols = [a.tolist() for a in arrays]
    return np.array([fn(*row) for row in zip(*cols)])


def _py_distance(a, b):
    return math.sqrt(sum((u - v) * (u - v) for u, v in zip(a, b)))


def _py_tolerance(x, lower=-0.5, upper=0.5, margin=1.0):
    if lower <= x <= upper:
        return 1.0
    d = ((lower - x) if x < lower else (x - upper)) / margin * _GAUSS
    return math.exp(-0.5 * d * d)


def _py_ramp(x, lo, hi):
    return min(max((x - lo) / (hi - lo), 0.0), 1.0)


def _py_wrap(t):
    return math.pi - ((math.pi - t) % _2PI)


def _py_huber(x, d=1.0):
    a = abs(x)
    return 0.5 * a * a if a <= d else d * (a - 0.5 * d)


def _py_quat(w, x, y, z):
    return (math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
            math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x)))),
            math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _np_tolerance(x, lower=-0.5, upper=0.5, margin=1.0):
    d = np.where(x < lower, lower - x, x - upper) / margin
    return np.where((lower <= x) & (x <= upper), 1.0, np.exp(-0.5 * (d * _GAUSS) ** 2))


def _np_quat(q):
    w, x, y, z = q.T
    return np.stack([np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
                     np.arcsin(np.clip(2 * (w * y - z * x), -1, 1)),
                     np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))], axis=-1)


def _cases(batch: int) -> list[tuple[str, str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]]:
    """(helper, input, numba call, per-item python call, numpy call) for each helper."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(batch, 3)), rng.normal(size=(batch, 3))
    act = rng.uniform(-1, 1, size=(batch, 8))
    x, y = rng.normal(scale=2.0, size=batch), rng.normal(scale=2.0, size=batch)
    q = rng.normal(size=(batch, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    B = f"({batch},"
    return [
        ("distance", f"{B} 3) x2", lambda: P.distance(a, b),
         lambda: np.array([_py_distance(u, v) for u, v in zip(a.tolist(), b.tolist())]),
         lambda: np.linalg.norm(a - b, axis=-1)),
        ("norm", f"{B} 3)", lambda: P.norm(a),
         lambda: np.array([math.sqrt(sum(v * v for v in r)) for r in a.tolist()]),
         lambda: np.linalg.norm(a, axis=-1)),
        ("sum_sq", f"{B} 8)", lambda: P.sum_sq(act),
         lambda: np.array([sum(v * v for v in r) for r in act.tolist()]),
         lambda: np.sum(act ** 2, axis=-1)),
        ("tolerance", f"{B}) gaussian", lambda: P.tolerance(x, -0.5, 0.5, 1.0),
         lambda: _py_rows(_py_tolerance, x), lambda: _np_tolerance(x)),
        ("squash", f"{B})", lambda: P.squash(x, 2.0),
         lambda: _py_rows(lambda v: math.tanh(v / 2.0), x), lambda: np.tanh(x / 2.0)),
        ("linear_ramp", f"{B})", lambda: P.linear_ramp(x, -1.0, 1.0),
         lambda: _py_rows(lambda v: _py_ramp(v, -1.0, 1.0), x),
         lambda: np.clip((x + 1.0) / 2.0, 0.0, 1.0)),
        ("smooth_step", f"{B})", lambda: P.smooth_step(x, -1.0, 1.0),
         lambda: _py_rows(lambda v: (lambda t: t * t * (3 - 2 * t))(_py_ramp(v, -1.0, 1.0)), x),
         lambda: (lambda t: t * t * (3 - 2 * t))(np.clip((x + 1.0) / 2.0, 0.0, 1.0))),
        ("angle_wrap", f"{B})", lambda: P.angle_wrap(5 * x),
         lambda: _py_rows(_py_wrap, 5 * x), lambda: np.pi - np.mod(np.pi - 5 * x, _2PI)),
        ("angle_diff", f"{B}) x2", lambda: P.angle_diff(x, y),
         lambda: _py_rows(lambda u, v: _py_wrap(u - v), x, y),
         lambda: np.pi - np.mod(np.pi - (x - y), _2PI)),
        ("huber", f"{B})", lambda: P.huber(x),
         lambda: _py_rows(_py_huber, x),
         lambda: np.where(np.abs(x) <= 1.0, 0.5 * x * x, np.abs(x) - 0.5)),
        ("exp_decay", f"{B})", lambda: P.exp_decay(np.abs(x), 0.3),
         lambda: _py_rows(lambda v: math.exp(-v / 0.3), np.abs(x)), lambda: np.exp(-np.abs(x) / 0.3)),
        ("quat_to_euler", f"{B} 4)", lambda: P.quat_to_euler(q),
         lambda: np.array([_py_quat(*r) for r in q.tolist()]), lambda: _np_quat(q)),
    ]


def _per_call_us(fn: Callable[[], Any], min_time: float = 0.05, repeats: int = 5) -> float:
    """Best-of-``repeats`` mean time per call in microseconds (calls per repeat auto-sized)."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-7)))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def kernel_rows(batch: int = 4096) -> list[dict]:
    """Time every prelude helper at ``batch``; one dict per helper.

    Keys: ``helper``, ``input``, ``first_call_ms`` (first call in this process: JIT compile
    or cache load), ``numba_us``, ``numpy_us``, ``python_us`` (per call, microseconds),
    ``speedup_vs_python``, ``speedup_vs_numpy`` (ratios of per-call times).
    """
    rows = []
    for name, desc, numba_fn, py_fn, np_fn in _cases(batch):
        t0 = time.perf_counter()
        got = numba_fn()  # first call in this process: compile or load from cache
        first_ms = (time.perf_counter() - t0) * 1e3
        for other in (py_fn(), np_fn()):
            np.testing.assert_allclose(got, other, rtol=1e-9, atol=1e-12, err_msg=name)
        numba_us = _per_call_us(numba_fn)
        numpy_us = _per_call_us(np_fn)
        python_us = _per_call_us(py_fn, min_time=0.1, repeats=3)
        rows.append(dict(helper=name, input=desc, first_call_ms=first_ms, numba_us=numba_us,
                         numpy_us=numpy_us, python_us=python_us,
                         speedup_vs_python=python_us / numba_us,
                         speedup_vs_numpy=numpy_us / numba_us))
    return rows


_FIRST_CALLS = """
import json, runpy, sys, time
cases = runpy.run_path(sys.argv[1])["_cases"]  # imports the prelude; compiles nothing
out = {}
for name, _, fn, _, _ in cases(64):
    t0 = time.perf_counter(); fn(); out[name] = (time.perf_counter() - t0) * 1e3
print(json.dumps(out))
"""


def jit_first_call_ms() -> dict[str, dict[str, float]]:
    """First-call ms per helper in two fresh interpreters sharing one empty numba cache dir.

    Returns ``{"cold": {...}, "cached": {...}}``: ``cold`` compiles every kernel (empty
    ``NUMBA_CACHE_DIR``), ``cached`` loads them from what ``cold`` wrote (``cache=True``).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "cached"):
            proc = subprocess.run([sys.executable, "-c", _FIRST_CALLS, os.path.abspath(__file__)],
                                  env=env, cwd=root, capture_output=True, text=True, check=True,
                                  timeout=600)
            result[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _print_table(rows: list[dict], batch: int) -> None:
    headers = ["helper", "input", "first call ms", "numba µs", "numpy µs", "per-item Python µs",
               "× vs Python", "× vs numpy"]
    cells = [[r["helper"], r["input"], f"{r['first_call_ms']:.1f}", f"{r['numba_us']:.1f}",
              f"{r['numpy_us']:.1f}", f"{r['python_us']:.0f}", f"{r['speedup_vs_python']:.0f}×",
              f"{r['speedup_vs_numpy']:.1f}×"] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # aligned text fallback
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        for line in [headers] + cells:
            print("  ".join(v.rjust(w) if i > 1 else v.ljust(w)
                            for i, (v, w) in enumerate(zip(line, widths))))
        return
    table = Table(title=f"prelude helpers, batch {batch} (per call; numba = public helper)")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right")
    for c in cells:
        table.add_row(*c)
    Console(width=max(120, Console().width)).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--no-jit", action="store_true", help="skip the cold/cached JIT runs")
    parser.add_argument("--json", action="store_true", help="print rows as JSON instead")
    args = parser.parse_args()
    rows = kernel_rows(args.batch)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print_table(rows, args.batch)
        worst = min(rows, key=lambda r: r["speedup_vs_python"])
        print(f"slowest speed-up vs per-item Python: {worst['helper']} "
              f"{worst['speedup_vs_python']:.0f}× (target ≥ 20×)")
    if not args.no_jit:
        jit = jit_first_call_ms()
        for label, times in jit.items():
            print(f"first call of each helper in a fresh process, {label} numba cache: "
                  f"{sum(times.values()):.0f} ms for all {len(times)} (max "
                  f"{max(times, key=times.get)} {max(times.values()):.0f} ms)")
            print("   " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
