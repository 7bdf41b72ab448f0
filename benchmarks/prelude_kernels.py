"""Prelude helpers vs the vectorised numpy a person would write vs a per-item Python loop.

Run ``python benchmarks/prelude_kernels.py [--batches 1 16 256 4096] [--no-jit]``. For each
helper and batch size the three are checked to agree, then timed side by side in this process:

* ``helper``: the public helper as a reward program calls it (state fields arrive as
  read-only float64 arrays, parameters as numbers): argument handling plus the numba kernel
  or the numpy expression, whichever that helper uses at that batch size (``lane``).
  Kernels are warmed up first, so JIT compilation is never inside a measurement; the first
  call of each helper in this process is reported separately (``first ms``).
* ``numpy``: the equivalent vectorised numpy expression (the reference to beat).
* ``python``: a per-item loop over the batch with ``math`` (inputs converted with
  ``.tolist()`` inside the timed region), the obvious non-vectorised implementation.

Times are the CPU time of this thread per call (best of 7 repeats of >= 20 ms), which a
busy machine disturbs far less than wall time; on an idle core the two are the same.
Targets (issue 14): helper >= 1x numpy at every batch size, and >= 2x where the helper
runs numba at a batch of 4096.

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


def _frozen(a: np.ndarray) -> np.ndarray:
    """Read-only, as the state fields a reward program receives."""
    a.flags.writeable = False
    return a


def _cases(batch: int) -> list[tuple[str, str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]]:
    """(helper, input, helper call, per-item python call, numpy call) for each helper."""
    rng = np.random.default_rng(0)
    a, b = _frozen(rng.normal(size=(batch, 3))), _frozen(rng.normal(size=(batch, 3)))
    act = _frozen(rng.uniform(-1, 1, size=(batch, 8)))
    x, y = _frozen(rng.normal(scale=2.0, size=batch)), _frozen(rng.normal(scale=2.0, size=batch))
    q = rng.normal(size=(batch, 4))
    q = _frozen(q / np.linalg.norm(q, axis=-1, keepdims=True))
    ax = _frozen(np.abs(x))
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
        ("angle_wrap", f"{B})", lambda: P.angle_wrap(x),
         lambda: _py_rows(_py_wrap, x), lambda: np.pi - np.mod(np.pi - x, _2PI)),
        ("angle_diff", f"{B}) x2", lambda: P.angle_diff(x, y),
         lambda: _py_rows(lambda u, v: _py_wrap(u - v), x, y),
         lambda: np.pi - np.mod(np.pi - (x - y), _2PI)),
        ("huber", f"{B})", lambda: P.huber(x),
         lambda: _py_rows(_py_huber, x),
         lambda: np.where(np.abs(x) <= 1.0, 0.5 * x * x, np.abs(x) - 0.5)),
        ("exp_decay", f"{B})", lambda: P.exp_decay(ax, 0.3),
         lambda: _py_rows(lambda v: math.exp(-v / 0.3), ax), lambda: np.exp(-ax / 0.3)),
        ("quat_to_euler", f"{B} 4)", lambda: P.quat_to_euler(q),
         lambda: np.array([_py_quat(*r) for r in q.tolist()]), lambda: _np_quat(q)),
    ]


def _per_call_us(fn: Callable[[], Any], min_time: float = 0.02, repeats: int = 7) -> float:
    """Best-of-``repeats`` mean CPU time of this thread per call, in microseconds (calls per
    repeat auto-sized to ``min_time``)."""
    fn()
    t0 = time.thread_time()
    fn()
    once = time.thread_time() - t0
    number = max(1, int(min_time / max(once, 1e-7)))
    best = math.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - t0) / number)
    return best * 1e6


def kernel_rows(batch: int = 4096) -> list[dict]:
    """Time every prelude helper at ``batch``; one dict per helper.

    Keys: ``helper``, ``input``, ``lane`` (``numba`` or ``numpy``: what the helper runs at this
    batch size), ``first_call_ms`` (first call in this process: JIT compile or cache load),
    ``helper_us``, ``numpy_us``, ``python_us`` (CPU µs per call), ``speedup_vs_python``,
    ``speedup_vs_numpy`` (ratios of per-call times).
    """
    rows = []
    for name, desc, helper_fn, py_fn, np_fn in _cases(batch):
        t0 = time.perf_counter()
        got = helper_fn()  # first call in this process: compile or load from cache
        first_ms = (time.perf_counter() - t0) * 1e3
        for other in (py_fn(), np_fn()):
            np.testing.assert_allclose(got, other, rtol=1e-9, atol=1e-12, err_msg=name)
        numpy_us = _per_call_us(np_fn)
        helper_us = _per_call_us(helper_fn)
        python_us = _per_call_us(py_fn, min_time=0.05, repeats=3)
        rows.append(dict(helper=name, input=desc, lane="numba" if batch <= P._KERNEL_UP_TO[name] else "numpy",
                         first_call_ms=first_ms, helper_us=helper_us, numpy_us=numpy_us, python_us=python_us,
                         speedup_vs_python=python_us / helper_us, speedup_vs_numpy=numpy_us / helper_us))
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


def _print_tables(by_batch: dict[int, list[dict]]) -> None:
    batches = list(by_batch)
    names = [r["helper"] for r in by_batch[batches[0]]]
    head = ["helper", *[f"x numpy B={b}" for b in batches], *[f"lane B={b}" for b in batches]]
    lines = [head]
    for i, name in enumerate(names):
        lines.append([name, *[f"{by_batch[b][i]['speedup_vs_numpy']:.2f}x" for b in batches],
                      *[by_batch[b][i]["lane"] for b in batches]])
    largest = batches[-1]
    lines2 = [["helper", "input", f"helper µs", "numpy µs", "per-item Python µs", "x numpy", "x Python"]]
    for r in by_batch[largest]:
        lines2.append([r["helper"], r["input"], f"{r['helper_us']:.1f}", f"{r['numpy_us']:.1f}",
                       f"{r['python_us']:.0f}", f"{r['speedup_vs_numpy']:.2f}x", f"{r['speedup_vs_python']:.0f}x"])
    for title, rows in ((f"helper vs vectorised numpy (ratio of CPU time per call; > 1: the helper is faster)",
                         lines), (f"batch {largest}: both references", lines2)):
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print(f"\n{title}")
        for r in rows:
            print("  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--no-jit", action="store_true", help="skip the cold/cached JIT runs")
    parser.add_argument("--json", action="store_true", help="print rows as JSON instead")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    P.warm_up()
    by_batch = {b: kernel_rows(b) for b in args.batches}
    if args.json:
        print(json.dumps(by_batch, indent=1))
    else:
        print(f"load average at start {load:.2f}")
        _print_tables(by_batch)
        slowest = min((r["speedup_vs_numpy"], b, r["helper"]) for b, rows in by_batch.items() for r in rows)
        print(f"\nslowest vs numpy: {slowest[2]} at B={slowest[1]}: {slowest[0]:.2f}x (target >= 1x)")
        big = max(by_batch)
        numba_big = [(r["speedup_vs_numpy"], r["helper"]) for r in by_batch[big] if r["lane"] == "numba"]
        if numba_big:
            print(f"slowest numba helper at B={big}: {min(numba_big)[1]} {min(numba_big)[0]:.2f}x (target >= 2x)")
    if not args.no_jit:
        jit = jit_first_call_ms()
        for label, times in jit.items():
            print(f"first call of each helper in a fresh process, {label} numba cache: "
                  f"{sum(times.values()):.0f} ms for all {len(times)} (max "
                  f"{max(times, key=times.get)} {max(times.values()):.0f} ms)")


if __name__ == "__main__":
    main()
