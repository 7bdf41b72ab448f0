"""The reward prelude: numba kernels vs per-item references, dm_control tolerance, the torch
path vs the numpy path, the torch-backed ``np`` namespace, shapes and error messages."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from rewardgym.rewards import prelude as P
from rewardgym.rewards.prelude import (
    HELPERS, SIGMOIDS, angle_diff, angle_wrap, describe_prelude, distance, exp_decay, huber,
    linear_ramp, norm, prelude_namespace, quat_to_euler, smooth_step, squash, sum_sq, tolerance)

B = 257
RTOL, ATOL = 1e-12, 1e-14


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------- per-item references


def _ref_rows(fn, *arrays):
    """Apply a per-row Python function to each row of the (B, ...) arrays."""
    return np.array([fn(*[a[i].tolist() for a in arrays]) for i in range(len(arrays[0]))])


def ref_distance(a, b):
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))


def ref_sum_sq(x):
    return sum(v * v for v in x)


def ref_norm(x):
    return math.sqrt(ref_sum_sq(x))


def ref_squash(x, s):
    return math.tanh(x / s)


def ref_ramp(x, lo, hi):
    if lo == hi:
        return 1.0 if x >= hi else 0.0
    return min(max((x - lo) / (hi - lo), 0.0), 1.0)


def ref_smooth(x, lo, hi):
    t = ref_ramp(x, lo, hi)
    return t * t * (3 - 2 * t)


def ref_wrap(t):
    r = math.pi - ((math.pi - t) % (2 * math.pi))  # Python % is a floored modulo
    return math.pi if r <= -math.pi else r


def ref_huber(x, d):
    return 0.5 * x * x if abs(x) <= d else d * (abs(x) - 0.5 * d)


def ref_exp(d, s):
    return math.exp(-d / s)


def ref_quat_to_euler(q):
    w, x, y, z = (v / math.sqrt(sum(c * c for c in q)) for v in q)
    return [math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
            math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x)))),
            math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))]


def test_reductions_match_per_item_reference(rng):
    for k in (1, 3, 7):
        a, b = rng.normal(size=(B, k)), rng.normal(size=(B, k))
        np.testing.assert_allclose(distance(a, b), _ref_rows(ref_distance, a, b), RTOL, ATOL)
        np.testing.assert_allclose(norm(a), _ref_rows(ref_norm, a), RTOL, ATOL)
        np.testing.assert_allclose(sum_sq(a), _ref_rows(ref_sum_sq, a), RTOL, ATOL)


def test_elementwise_match_per_item_reference(rng):
    x = rng.normal(scale=3.0, size=B)
    lo, hi = rng.normal(size=B), rng.normal(size=B)
    hi[:5] = lo[:5]  # lo == hi: a step
    s = rng.uniform(0.1, 2.0, size=B)
    cases = [
        (squash(x, s), [ref_squash(*v) for v in zip(x, s)]),
        (linear_ramp(x, lo, hi), [ref_ramp(*v) for v in zip(x, lo, hi)]),
        (smooth_step(x, lo, hi), [ref_smooth(*v) for v in zip(x, lo, hi)]),
        (angle_wrap(10 * x), [ref_wrap(v) for v in 10 * x]),
        (angle_diff(10 * x, lo), [ref_wrap(u - v) for u, v in zip(10 * x, lo)]),
        (huber(x, s), [ref_huber(*v) for v in zip(x, s)]),
        (exp_decay(np.abs(x), s), [ref_exp(*v) for v in zip(np.abs(x), s)]),
    ]
    for got, want in cases:
        np.testing.assert_allclose(got, want, RTOL, ATOL)


def test_squash_accuracy():
    x = np.concatenate([np.linspace(-25, 25, 200_001), [0.0, -0.0, 1e-300, -1e-12, 800.0]])
    np.testing.assert_allclose(squash(x), np.tanh(x), rtol=0, atol=4e-16)
    assert squash(800.0) == 1.0 and squash(-800.0) == -1.0


def test_kernels_are_cached_numba():
    kernels = {k: v for k, v in vars(P).items() if k.startswith("_k_")}
    with_kernel = [name for name in HELPERS if P._KERNEL_UP_TO[name] > 0]
    assert set(with_kernel) == set(HELPERS)
    for name in with_kernel:
        kernel = kernels.get(f"_k_{name}", kernels["_k_angle_diff"] if name == "angle_wrap" else None)
        assert kernel is not None, name
    for k in kernels.values():
        assert type(k._cache).__name__ != "NullCache", k  # @njit(cache=True)


def test_warm_up_compiles_every_kernel_a_program_reaches():
    """Reward workers run under a system-call allow-list that cannot read numba's cache:
    after ``warm_up`` (before the fork) the lanes a program reaches -- read-only or
    writeable (B,) fields, float or int parameters, small and large batches -- compile
    nothing new."""
    P.warm_up()
    kernels = {k: v for k, v in vars(P).items() if k.startswith("_k_")}
    before = {k: len(v.signatures) for k, v in kernels.items()}
    for batch in (1, 16, 4096):
        x = np.linspace(-2.0, 2.0, batch)
        frozen = x.copy()
        frozen.flags.writeable = False
        for v in (x, frozen):
            squash(v, 2.0), squash(v, 2), exp_decay(v, 0.5), exp_decay(v, 1), huber(v, 1.0)
            angle_wrap(v), angle_diff(v, 0.5), angle_diff(v, frozen), linear_ramp(v, 0.0, 1.0)
            smooth_step(v, 0.0, 1.0), tolerance(v, 0.0, 0.5, margin=0.1), tolerance(v, 0.0, 0.5)
        pts = np.stack([x, x, x], axis=1)
        distance(pts, pts), norm(pts), sum_sq(pts), quat_to_euler(np.ones((batch, 4)))
    assert {k: len(v.signatures) for k, v in kernels.items()} == before


def test_angle_wrap_interval():
    pi = np.pi
    theta = np.array([pi, -pi, 3 * pi, -3 * pi, 0.0, 2 * pi, 1e-17, -1e-17, pi + 1e-15])
    got = angle_wrap(theta)
    assert np.all(got > -pi) and np.all(got <= pi)
    np.testing.assert_allclose(got[:6], [pi, pi, pi, pi, 0.0, 0.0], atol=1e-12)
    assert angle_wrap(pi) == pi and angle_wrap(-pi) == pi
    np.testing.assert_allclose(angle_diff(pi - 0.1, -pi + 0.1), -0.2, atol=1e-12)


def test_quat_to_euler_inverts_mujoco(rng):
    mujoco = pytest.importorskip("mujoco")
    euler = np.stack([rng.uniform(-3.1, 3.1, B), rng.uniform(-1.5, 1.5, B),
                      rng.uniform(-3.1, 3.1, B)], axis=1)
    quats = np.zeros((B, 4))
    for e, q in zip(euler, quats):
        mujoco.mju_euler2Quat(q, e, "XYZ")
    np.testing.assert_allclose(quat_to_euler(quats), euler, atol=1e-9)
    scaled = quats * rng.uniform(0.5, 2.0, size=(B, 1))  # not normalised
    np.testing.assert_allclose(quat_to_euler(scaled), _ref_rows(ref_quat_to_euler, quats),
                               RTOL, 1e-12)
    assert quat_to_euler(quats[0]).shape == (3,)
    assert quat_to_euler(quats.reshape(B, 1, 4)).shape == (B, 1, 3)
    np.testing.assert_array_equal(quat_to_euler(np.zeros(4)), 0.0)


# ---------------------------------------------------------------- tolerance == dm_control


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf inside the reference
def test_tolerance_matches_dm_control_formula(rng):
    # Meta-World ships dm_control's rewards.tolerance/_sigmoids verbatim.
    ref = pytest.importorskip("metaworld.utils.reward_utils").tolerance
    x = np.concatenate([rng.normal(scale=2.0, size=B), [-1.0, 1.0, 0.0, np.inf, -np.inf]])
    for sigmoid in SIGMOIDS:
        vams = (0.1, 0.5, 0.9) + ((0.0,) if sigmoid in ("cosine", "linear", "quadratic") else ())
        for vam in vams:
            for margin in (0.0, 0.3, 2.0):
                for lower, upper in ((-0.5, 0.5), (0.0, 0.0), (1.0, np.inf), (-np.inf, -1.0)):
                    got = tolerance(x, lower, upper, margin, sigmoid, vam)
                    want = ref(x, (lower, upper), margin, sigmoid, vam)
                    np.testing.assert_allclose(got, want, 1e-12, 1e-14,
                                               err_msg=f"{sigmoid} vam={vam} margin={margin}")
                    got_scalar = tolerance(float(x[0]), lower, upper, margin, sigmoid, vam)
                    assert isinstance(got_scalar, float)
                    assert got_scalar == pytest.approx(float(want[0]), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("sigmoid", SIGMOIDS)
def test_tolerance_value_at_margin(sigmoid):
    # 1 inside the bounds, exactly value_at_margin at distance == margin on both sides.
    x = np.array([-0.5, 0.0, 0.5, -0.5 - 0.25, 0.5 + 0.25])
    got = tolerance(x, -0.5, 0.5, margin=0.25, sigmoid=sigmoid, value_at_margin=0.3)
    np.testing.assert_allclose(got, [1, 1, 1, 0.3, 0.3], rtol=1e-12)
    far = tolerance(np.array([0.6, 1.0, 5.0]), -0.5, 0.5, 0.25, sigmoid, 0.3)
    assert np.all(np.diff(far) <= 0) and np.all((far >= 0) & (far < 1))


def test_tolerance_margin_zero_is_indicator():
    x = np.array([-1.0, 0.0, 0.2, 0.2000001, np.nan])
    np.testing.assert_array_equal(tolerance(x, 0.0, 0.2), [0, 1, 1, 0, 0])
    # value_at_margin is ignored (not validated) when margin == 0, as in dm_control.
    np.testing.assert_array_equal(tolerance(x, 0.0, 0.2, 0.0, "gaussian", 1.0), [0, 1, 1, 0, 0])


def test_tolerance_per_env_bounds(rng):
    x, lo = rng.normal(size=B), rng.normal(size=B)
    got = tolerance(x, lo, lo + 0.5, 1.0, "long_tail")
    want = [tolerance(float(a), float(b), float(b) + 0.5, 1.0, "long_tail") for a, b in zip(x, lo)]
    np.testing.assert_allclose(got, want, RTOL, ATOL)


# ---------------------------------------------------------------- torch == numpy


def _all_helper_calls(rng):
    x3, y3 = rng.normal(size=(B, 3)), rng.normal(size=(B, 3))
    x, lo = rng.normal(scale=3.0, size=B), rng.normal(size=B)
    q = rng.normal(size=(B, 4))
    calls = [
        ("distance", (x3, y3), {}), ("distance", (x3, np.array([0.0, 0.0, 1.0])), {}),
        ("distance", (x, 0.5), {}), ("norm", (x3,), {}), ("norm", (x,), {}),
        ("sum_sq", (x3,), {}), ("sum_sq", (x,), {}),
        ("squash", (x, 2.0), {}), ("squash", (x3, np.array([1.0, 2.0, 3.0])), {}),
        ("linear_ramp", (x, lo, lo + 1.0), {}), ("linear_ramp", (x, 1.0, -1.0), {}),
        ("linear_ramp", (x, 0.5, 0.5), {}), ("smooth_step", (x3, -1.0, 1.0), {}),
        ("angle_wrap", (10 * x,), {}), ("angle_diff", (10 * x, lo), {}),
        ("huber", (x3, 0.5), {}), ("exp_decay", (np.abs(x), 0.3), {}), ("quat_to_euler", (q,), {}),
    ]
    for sigmoid in SIGMOIDS:
        calls.append(("tolerance", (x, -0.5, np.abs(lo) - 0.5),
                      dict(margin=0.7, sigmoid=sigmoid, value_at_margin=0.2)))
    calls.append(("tolerance", (x, -0.5, 0.5), {}))
    return calls


@pytest.mark.parametrize("batch", [1, 16, 2000])
def test_tolerance_array_margin_is_a_per_element_margin(rng, batch):
    x, lo = rng.normal(scale=2.0, size=batch), rng.normal(size=batch)
    margin = rng.uniform(0.0, 2.0, size=batch)
    margin[::3] = 0.0  # a hard indicator there
    for sigmoid in SIGMOIDS:
        got = tolerance(x, lo, lo + 0.5, margin, sigmoid, 0.2)
        want = [tolerance(float(a), float(b), float(b) + 0.5, float(m), sigmoid, 0.2)
                for a, b, m in zip(x, lo, margin)]
        np.testing.assert_allclose(got, want, RTOL, ATOL, err_msg=sigmoid)
        on_torch = tolerance(torch.from_numpy(x), torch.from_numpy(lo), torch.from_numpy(lo) + 0.5,
                             torch.from_numpy(margin), sigmoid, 0.2)
        np.testing.assert_allclose(on_torch.numpy(), want, 1e-10, 1e-12, err_msg=sigmoid)
    inside = tolerance(np.array([0.0, 5.0]), -1.0, 1.0, np.array([0.0, 0.0]))
    np.testing.assert_array_equal(inside, [1.0, 0.0])


@pytest.mark.parametrize("batch", [1, 16, 256, 4096])
def test_kernels_and_numpy_expressions_agree_at_every_batch_size(batch):
    """Each helper runs a numba kernel or its array-API expression depending on the batch
    size and on how the arguments arrive: every lane must give the same numbers."""
    rng = np.random.default_rng(batch)
    x = rng.normal(scale=3.0, size=batch)
    frozen = x.copy()
    frozen.flags.writeable = False  # state fields are read-only
    strided = np.stack([x, x], axis=1)[:, 0]  # not contiguous: the general lane
    xp, code, scale = P._XP, P._SIGMOID_CODE["long_tail"], P._sigmoid_scale("long_tail", 0.1)
    cases = [  # (helper, its arguments after x, the array-API expression on numpy)
        ("squash", (2.0,), lambda v: P._squash(xp, v, 2.0)),
        ("squash", (2,), lambda v: P._squash(xp, v, 2.0)),
        ("exp_decay", (0.3,), lambda v: P._exp_decay(xp, v, 0.3)),
        ("exp_decay", (3,), lambda v: P._exp_decay(xp, v, 3.0)),
        ("huber", (0.5,), lambda v: P._huber(xp, v, 0.5)),
        ("angle_wrap", (), lambda v: P._angle_diff(xp, v, 0.0)),
        ("angle_diff", (0.4,), lambda v: P._angle_diff(xp, v, 0.4)),
        ("linear_ramp", (-1.0, 2.0), lambda v: P._linear_ramp(xp, v, -1.0, 2.0)),
        ("smooth_step", (2.0, -1.0), lambda v: P._smooth_step(xp, v, 2.0, -1.0)),
        ("tolerance", (-0.5, 0.5, 0.7, "long_tail"), lambda v: P._tolerance(xp, v, -0.5, 0.5, 0.7, code, scale)),
        ("tolerance", (-0.5, 0.5), lambda v: P._tolerance(xp, v, -0.5, 0.5, 0.0, 0, 0.0)),
    ]
    for name, args, expression in cases:
        want = expression(x)
        for arg in (x, frozen, strided, x.tolist()):
            np.testing.assert_allclose(HELPERS[name](arg, *args), want, 1e-12, 1e-14, err_msg=f"{name} B={batch}")
    q = rng.normal(size=(batch, 4))
    np.testing.assert_allclose(quat_to_euler(q), P._quat_to_euler(P._XP, q), 1e-12, 1e-12)


def test_torch_cpu_equals_numpy(rng):
    for name, args, kw in _all_helper_calls(rng):
        want = HELPERS[name](*args, **kw)
        targs = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
        got = HELPERS[name](*targs, **kw)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64, name
        np.testing.assert_allclose(got.numpy(), want, 1e-10, 1e-12, err_msg=name)
        # Only the first argument a tensor: the others are moved to it.
        mixed = HELPERS[name](targs[0], *args[1:], **kw)
        np.testing.assert_allclose(mixed.numpy(), want, 1e-10, 1e-12, err_msg=name)


def test_torch_dtypes_and_scalars():
    x32 = torch.randn(6, 3)
    assert sum_sq(x32).dtype == torch.float32 and sum_sq(x32).shape == (6,)
    assert norm(torch.tensor([[3, 4]])).dtype == torch.float64  # ints -> float64, as numpy
    assert float(norm(torch.tensor([[3, 4]]))) == 5.0
    zero_d = squash(torch.tensor(0.5), 0.5)
    assert zero_d.shape == () and float(zero_d) == pytest.approx(math.tanh(1.0))
    assert angle_wrap(torch.tensor([math.pi, -math.pi], dtype=torch.float64)).tolist() == [math.pi] * 2


@pytest.mark.gpu
def test_cuda_equals_numpy(rng):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for name, args, kw in _all_helper_calls(rng):
        want = HELPERS[name](*args, **kw)
        targs = [torch.from_numpy(a).cuda() if isinstance(a, np.ndarray) else a for a in args]
        got = HELPERS[name](*targs, **kw)
        assert got.device.type == "cuda", name
        np.testing.assert_allclose(got.cpu().numpy(), want, 1e-9, 1e-12, err_msg=name)
        got32 = HELPERS[name](*[t.float() if isinstance(t, torch.Tensor) else t for t in targs], **kw)
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.cpu().numpy(), want, 2e-4, 2e-4, err_msg=name)


PROGRAM = """
import numpy as np

def compute_reward(state, action):
    ctrl = np.sum(action ** 2, axis=-1)
    reach = np.exp(-np.linalg.norm(state["hand"] - state["goal"], axis=-1) / 0.1)
    upright = np.where(np.cos(state["angle"]) > 0.5, 1.0, 0.0)
    speed = np.clip(state["vel"], -1.0, 2.0)
    heading = np.arctan2(state["hand"][:, 1], state["hand"][:, 0]) / np.pi
    target = np.array([0.1, 0.2, 0.3])
    near = tolerance(distance(state["hand"], target), 0.0, 0.05, 0.2, "gaussian")
    terms = {"ctrl": -0.1 * ctrl, "reach": reach, "upright": upright, "speed": speed,
             "heading": heading, "near": near,
             "wrap": angle_wrap(state["angle"] * 3) + huber(speed, 0.5) + sum_sq(action),
             "mx": np.maximum(speed, 0.0) + np.minimum(np.abs(speed), 1.0) + np.sqrt(np.square(speed))}
    total = terms["ctrl"] + terms["reach"] + terms["upright"] + np.tanh(terms["speed"])
    return total + terms["near"] + np.zeros(action.shape[0]), terms
"""


def _run_program(backend, state, action):
    glb = prelude_namespace(backend)
    exec(compile(PROGRAM.replace("import numpy as np\n", ""), "<program>", "exec"), glb)
    return glb["compute_reward"](state, action)


def test_program_runs_unchanged_on_torch(rng):
    state = {"hand": rng.normal(size=(B, 3)), "goal": rng.normal(size=(B, 3)),
             "angle": rng.normal(size=B), "vel": rng.normal(size=B)}
    action = rng.uniform(-1, 1, size=(B, 6))
    r_np, terms_np = _run_program("numpy", state, action)
    r_t, terms_t = _run_program("torch", {k: torch.from_numpy(v) for k, v in state.items()},
                                torch.from_numpy(action))
    assert isinstance(r_t, torch.Tensor) and r_t.shape == (B,) and r_t.dtype == torch.float64
    np.testing.assert_allclose(r_t.numpy(), r_np, 1e-10, 1e-12)
    assert terms_t.keys() == terms_np.keys()
    for k in terms_np:
        assert terms_t[k].dtype == torch.float64, k
        np.testing.assert_allclose(terms_t[k].numpy(), terms_np[k], 1e-10, 1e-12, err_msg=k)


def test_torch_namespace_subset():
    tnp = prelude_namespace("torch")["np"]
    for name in P.NUMPY_SUBSET:
        obj = tnp
        for part in name.split("."):
            obj = getattr(obj, part)
    assert not hasattr(tnp, "save") and not hasattr(tnp, "load")  # curated, no I/O
    assert tnp.array([1.0, 2.0]).dtype == torch.float64 and tnp.array([0.1]).item() == 0.1
    assert tnp.full(3, 0.1)[0].item() == 0.1 and tnp.full(2, 1).dtype == torch.int64
    assert tnp.arange(3).dtype == torch.int64 and tnp.arange(0.0, 1.0, 0.1)[1].item() == 0.1
    assert tnp.linspace(0, 1, 11)[1].item() == np.linspace(0, 1, 11)[1]
    assert tnp.where(torch.tensor([True, False]), 1.0, 0.0).dtype == torch.float64
    assert tnp.array([1, 2]).dtype == torch.int64
    assert tnp.zeros((2, 3)).dtype == torch.float64
    assert tnp.concatenate([tnp.ones(2), tnp.zeros(1)]).tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(tnp.linalg.norm(torch.tensor([[3.0, 4.0]]), axis=-1).numpy(), [5.0])
    np.testing.assert_allclose(tnp.cross(torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0])).numpy(),
                               [0, 0, 1])
    assert tnp.float64 is torch.float64 and tnp.pi == math.pi
    with pytest.raises(ValueError, match="backend"):
        prelude_namespace("jax")


def test_numpy_namespace():
    """The numpy backend's np holds numpy's own functions, restricted to the allow-list."""
    ns = prelude_namespace("numpy")
    assert set(ns) == {"np", *HELPERS}
    assert ns["np"].sum is np.sum and ns["np"].linalg.norm is np.linalg.norm and ns["np"].pi == np.pi


# ---------------------------------------------------------------- shapes, scalars, errors


def test_broadcasting_and_scalars(rng):
    x3 = rng.normal(size=(B, 3))
    assert isinstance(norm(3.0), float) and norm(-3.0) == 3.0
    assert isinstance(distance(1.0, 4.0), float) and distance(1.0, 4.0) == 3.0
    assert isinstance(tolerance(0.1, 0.0, 1.0), float)
    assert distance(x3, [0.0, 0.0, 0.0]).shape == (B,)
    np.testing.assert_allclose(distance(x3, 0.0), norm(x3), RTOL)
    np.testing.assert_allclose(distance(x3, x3[:, :1]), norm(x3 - x3[:, :1]), RTOL)  # (B, 1)
    np.testing.assert_allclose(norm(x3[:, 0]), np.abs(x3[:, 0]))  # (B,) is a batch of scalars
    assert norm(rng.normal(size=(4, 5, 3))).shape == (4, 5)
    assert sum_sq(np.ones((4, 0))).tolist() == [0.0] * 4
    assert distance(np.ones((4, 0)), 1.0).tolist() == [0.0] * 4
    assert distance(np.ones((0, 3)), np.ones(3)).shape == (0,)
    assert squash(x3, 2.0).shape == (B, 3)
    assert tolerance(np.zeros((0,)), 0.0, 1.0).shape == (0,)
    np.testing.assert_array_equal(sum_sq(np.array([[1, 2], [3, 4]])), [5.0, 25.0])  # ints
    np.testing.assert_array_equal(tolerance(np.array([True, False]), 1.0, 1.0), [1.0, 0.0])
    xs = x3[:, 1]  # non-contiguous view
    np.testing.assert_allclose(squash(xs), np.tanh(xs), RTOL)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_shape_errors_name_helper_and_argument(backend):
    conv = (lambda a: torch.as_tensor(a)) if backend == "torch" else (lambda a: a)
    with pytest.raises(TypeError, match=r"distance\(\): argument 'b' has shape \(5, 3\).*'a'"):
        distance(conv(np.zeros((4, 3))), np.zeros((5, 3)))
    with pytest.raises(TypeError, match=r"tolerance\(\): argument 'lower' has shape \(5,\)"):
        tolerance(conv(np.zeros(4)), np.zeros(5), 1.0)
    with pytest.raises(TypeError, match=r"linear_ramp\(\): argument 'hi'"):
        linear_ramp(conv(np.zeros(4)), 0.0, np.ones(3))
    with pytest.raises(TypeError, match=r"quat_to_euler\(\): argument 'q' must have shape"):
        quat_to_euler(conv(np.zeros((4, 3))))
    with pytest.raises(TypeError, match=r"squash\(\): argument 'scale' must be a number"):
        squash(conv(np.zeros(4)), "big")
    with pytest.raises(TypeError, match=r"angle_diff\(\): argument 'b' must be a number"):
        angle_diff(conv(np.zeros(4)), None)


def test_value_errors():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="lower bound"):
        tolerance(x, 1.0, 0.0)
    with pytest.raises(ValueError, match="margin"):
        tolerance(x, 0.0, 1.0, margin=-1.0)
    with pytest.raises(ValueError, match="unknown sigmoid"):
        tolerance(x, 0.0, 1.0, 1.0, sigmoid="gauss")
    with pytest.raises(ValueError, match="value_at_margin"):
        tolerance(x, 0.0, 1.0, 1.0, "gaussian", 0.0)
    with pytest.raises(ValueError, match="value_at_margin"):
        tolerance(x, 0.0, 1.0, 1.0, "linear", 1.0)
    with pytest.raises(ValueError, match="margin must be >= 0 everywhere"):
        tolerance(x, 0.0, 1.0, margin=np.array([1.0, -1.0, 0.0]))
    nan = float("nan")  # NaN parameters are errors, not NaN rewards later
    with pytest.raises(ValueError, match="margin must be >= 0"):
        tolerance(x, 0.0, 1.0, margin=nan)
    with pytest.raises(ValueError, match="margin must be >= 0 everywhere"):
        tolerance(x, 0.0, 1.0, margin=np.array([1.0, nan, 0.0]))
    for lower, upper in ((nan, 1.0), (0.0, nan), (np.array([0.0, nan, 0.0]), 1.0)):
        with pytest.raises(ValueError, match="lower bound"):
            tolerance(x, lower, upper)
    for fn, kw in ((squash, "scale"), (huber, "delta"), (exp_decay, "scale")):
        with pytest.raises(ValueError, match=kw):
            fn(x, 0.0)
        with pytest.raises(ValueError, match=kw):
            fn(torch.zeros(3), torch.tensor(-1.0))
        for nan in (float("nan"), np.array([1.0, np.nan, 1.0]), torch.tensor(float("nan"))):
            with pytest.raises(ValueError, match=kw):  # NaN is not > 0: an error, not NaN rewards
                fn(x if not torch.is_tensor(nan) else torch.zeros(3), nan)


# ---------------------------------------------------------------- documentation, import


def test_describe_prelude_is_generated():
    text = describe_prelude()
    flat = " ".join(text.split())
    for name, fn in HELPERS.items():
        assert f"  {name}(" in text
        first_paragraph = fn.__doc__.strip().split("\n\n")[0].replace("``", "`")
        assert " ".join(first_paragraph.split()) in flat, name
        assert fn.__doc__ and ("(B" in fn.__doc__ or "elementwise" in fn.__doc__), name
    assert "tolerance(x, lower, upper, margin=0.0, sigmoid='gaussian', value_at_margin=0.1)" in text
    assert "linalg.norm" in text and "arctan2" in text


def test_module_import_does_not_import_torch():
    # Load prelude.py as a standalone module so that nothing else in rewardgym is imported.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('prelude_alone', {P.__file__!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert m.norm([[3.0, 4.0]]).tolist() == [5.0]\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert importlib.util.find_spec("array_api_compat") is not None
