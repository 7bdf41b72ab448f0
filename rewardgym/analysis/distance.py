"""Reward distances that ignore what does not change the optimal policy: EPIC and STARC.

Both start from the same **canonicalisation**, the one of EPIC (Gleave et al. 2021,
"Quantifying Differences in Reward Functions", Def. 4.1)::

    C(R)(s, a, s') = R(s, a, s') + E[γ R(s', A, S') − R(s, A, S') − γ R(S, A, S')]

with ``S, S' ~ D_S`` and ``A ~ D_A`` independent. ``C`` removes potential shaping and
constants exactly: ``C(a·R + γΦ(s') − Φ(s) + c) = a·C(R)`` for every ``Φ``.

* **EPIC** is the Pearson distance of canonical rewards over the coverage distribution
  ``D`` of transitions: ``sqrt((1 − ρ) / 2)`` in ``[0, 1]``.
* **STARC** (Skalse et al., ICLR 2024, Def. 2.1) is ``m(s(R1), s(R2))`` with
  ``s(R) = c(R) / n(c(R))`` (0 where ``c(R) = 0``). Our choice, and why:
  ``c = C_EPIC`` — the STARC paper's Prop. 3.6 shows it is a valid canonicalisation, and it
  is the only one of the paper's that can be estimated from samples: ``C_VAL`` and the
  minimal canonicalisation need the transition function and a policy's value function,
  which a continuous simulator does not give us. ``n = m = L2`` under ``D`` (the paper's
  recommended norm; it makes the metric a chord on the unit sphere), halved so that the
  range is ``[0, 1]``: ``||s1 − s2||₂ / 2``. Unlike EPIC it does not centre the canonical
  rewards, so it also tells apart rewards whose canonical forms differ by a constant
  under ``D`` (which EPIC, a correlation, ignores).

**Estimation.** Expectations are weighted means over a *mean set*: ``m_s`` states
``S_j ~ D_S`` and ``m_a`` actions ``A_l ~ D_A``, crossed (every state with every action,
every ``S`` with every ``S'``), and the same states serve as ``S`` and as ``S'``. With
``Q[x, l, j] = R(x, A_l, S_j)`` over every state ``x`` of the coverage pool,
``M(x) = mean_{l,j} Q[x, l, j]`` and ``M̄ = mean_{i,l,j} R(S_i, A_l, S_j)``, the canonical
reward of transition ``t`` is ``R_t + γ M(s'_t) − M(s_t) − γ M̄``. Because ``S`` and ``S'``
are one weighted multiset, the estimate is *exactly* invariant to shaping and scale (not
only in expectation), and stays so under the bootstrap, which reweights transitions,
mean-set states and mean-set actions (the sampling errors there are). On a finite task
whose mean set is every state and every action, the estimate is the exact formula.
(:mod:`rewardgym.analysis.report` zeroes the rewards *from* terminal states, which are
absorbing; on tasks that terminate, shaping invariance then needs ``Φ = 0`` there.)

Everything here is plain numpy over reward values; evaluating programs on states (in the
sandbox) is :mod:`rewardgym.analysis.evaluate`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["CanonicalReward", "canonicalize", "epic", "starc", "pearson_distance", "bootstrap_interval"]


@dataclass(frozen=True)
class CanonicalReward:
    """A reward's values on the coverage, with what its canonical form is computed from.

    Attributes:
        values: ``(n,)`` R on the coverage transitions ``(s_t, a_t, s'_t)``.
        mixed: ``(P, m_a, m_s)`` ``Q[x, l, j] = R(x, A_l, S_j)`` over the state pool.
        cube: ``(m_s, m_a, m_s)`` ``R(S_i, A_l, S_j)``.
        prev: ``(n,)`` pool index of each ``s_t``; ``next``: of each ``s'_t``.
        gamma: the discount of the canonicalisation.
    """

    values: np.ndarray
    mixed: np.ndarray
    cube: np.ndarray
    prev: np.ndarray
    next: np.ndarray
    gamma: float

    def canonical(self, rows: np.ndarray | None = None, state_weights: np.ndarray | None = None,
                  action_weights: np.ndarray | None = None) -> np.ndarray:
        """``C(R)`` on the transitions: ``(n,)`` by default; with ``rows`` ``(R, n)`` (transition
        resamples) and weights ``(R, m_s)``, ``(R, m_a)`` of mean-set states and actions (resample
        counts), the ``R`` bootstrap replicates ``(R, n)`` at once."""
        _, m_a, m_s = self.mixed.shape
        if rows is None:
            ws, wa = np.full((1, m_s), 1.0 / m_s), np.full((1, m_a), 1.0 / m_a)
            rows = np.arange(len(self.values))[None]
        else:
            ws = state_weights / state_weights.sum(axis=1, keepdims=True)
            wa = action_weights / action_weights.sum(axis=1, keepdims=True)
        weights = (wa[:, :, None] * ws[:, None, :]).reshape(len(ws), -1)  # (R, m_a * m_s)
        m_of = self.mixed.reshape(len(self.mixed), -1) @ weights.T  # (P, R): one BLAS call
        m_bar = np.einsum("ri,ir->r", ws, self.cube.reshape(m_s, -1) @ weights.T)  # (R,)
        replicate = np.arange(len(ws))[:, None]
        out = (self.values[rows] + self.gamma * m_of[self.next[rows], replicate] - m_of[self.prev[rows], replicate]
               - self.gamma * m_bar[:, None])
        return out[0] if len(out) == 1 and state_weights is None else out

    @cached_property  # a frozen dataclass's cached_property writes __dict__ directly: computed once
    def scale(self) -> float:
        """The magnitude of the reward's values (what "zero up to rounding" is relative to)."""
        return float(max(np.abs(self.values).max(initial=0.0), np.abs(self.mixed).max(initial=0.0)))


def canonicalize(values: np.ndarray, mixed: np.ndarray, cube: np.ndarray, prev: np.ndarray,
                 next_: np.ndarray, gamma: float) -> CanonicalReward:
    """Bundle a reward's evaluations (see :class:`CanonicalReward`) after checking shapes."""
    values, mixed, cube = (np.asarray(v, dtype=np.float64) for v in (values, mixed, cube))
    if mixed.ndim != 3 or cube.shape != (mixed.shape[2], mixed.shape[1], mixed.shape[2]) \
            or values.shape != np.shape(prev) or values.shape != np.shape(next_):
        raise ValueError(f"inconsistent shapes: values {values.shape}, mixed {mixed.shape}, cube {cube.shape}, "
                         f"transitions {np.shape(prev)}")
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    return CanonicalReward(values, mixed, cube, np.asarray(prev), np.asarray(next_), float(gamma))


def _is_flat(x: np.ndarray, scale: float) -> bool:
    """Whether ``x`` is constant up to rounding, relative to the magnitude ``scale`` of the
    reward it was computed from (``C(1)`` is ~1e-16, not a signal)."""
    return bool(np.ptp(x) <= 1e-9 * scale) if x.size else True


def pearson_distance(x: np.ndarray, y: np.ndarray, scale_x: float | None = None,
                     scale_y: float | None = None) -> float:
    """``sqrt((1 − ρ(x, y)) / 2)`` in ``[0, 1]``. A constant reward orders every policy alike:
    two constants are at distance 0, a constant and a non-constant reward at ``sqrt(1/2)``
    (no correlation). ``scale_*``: the magnitude of the rewards ``x``, ``y`` came from."""
    flat_x = _is_flat(x, np.abs(x).max(initial=0.0) if scale_x is None else scale_x)
    flat_y = _is_flat(y, np.abs(y).max(initial=0.0) if scale_y is None else scale_y)
    if flat_x or flat_y:
        return 0.0 if flat_x and flat_y else float(np.sqrt(0.5))
    x = x - x.mean()
    y = y - y.mean()
    rho = float(np.clip(np.dot(x, y) / (np.sqrt(np.dot(x, x)) * np.sqrt(np.dot(y, y))), -1.0, 1.0))
    return float(np.sqrt(max(0.0, (1.0 - rho) / 2.0)))


def _standardised(x: np.ndarray, scale: float) -> np.ndarray:
    """``x / ||x||₂`` under the uniform distribution over its entries (0 when ``x`` is 0 up to rounding)."""
    norm = np.sqrt(np.mean(np.square(x)))
    if norm <= 1e-9 * scale or norm == 0.0:
        return np.zeros_like(x)
    return x / norm


def starc_from_canonical(x: np.ndarray, y: np.ndarray, scale_x: float | None = None,
                         scale_y: float | None = None) -> float:
    """``||x/||x|| − y/||y|| ||₂ / 2`` under the uniform distribution over transitions, in ``[0, 1]``.
    A canonical reward that is 0 (a reward equivalent to a constant) standardises to 0, so it is
    at distance 1/2 from every other reward and 0 from another such."""
    sx = np.abs(x).max(initial=0.0) if scale_x is None else scale_x
    sy = np.abs(y).max(initial=0.0) if scale_y is None else scale_y
    return float(min(1.0, np.sqrt(np.mean(np.square(_standardised(x, sx) - _standardised(y, sy)))) / 2.0))


def epic(a: CanonicalReward, b: CanonicalReward) -> float:
    """EPIC distance between two rewards evaluated on the same coverage and mean set."""
    return pearson_distance(a.canonical(), b.canonical(), a.scale, b.scale)


def starc(a: CanonicalReward, b: CanonicalReward) -> float:
    """STARC distance (``C_EPIC``, L2 normalisation, L2 metric, halved) on the same coverage."""
    return starc_from_canonical(a.canonical(), b.canonical(), a.scale, b.scale)


def bootstrap_interval(a: CanonicalReward, b: CanonicalReward, method: str = "epic", resamples: int = 200,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the distance, resampling transitions, mean-set states
    and mean-set actions (the three sources of sampling error of the estimate)."""
    metric = pearson_distance if method == "epic" else starc_from_canonical
    rng = np.random.default_rng(seed)
    n, (_, m_a, m_s) = len(a.values), a.mixed.shape
    out = np.empty(resamples)
    for start in range(0, resamples, 50):  # replicates in blocks: matrix work, bounded memory
        r = min(50, resamples - start)
        rows = rng.integers(0, n, (r, n))
        ws = np.stack([np.bincount(row, minlength=m_s) for row in rng.integers(0, m_s, (r, m_s))]).astype(float)
        wa = np.stack([np.bincount(row, minlength=m_a) for row in rng.integers(0, m_a, (r, m_a))]).astype(float)
        xs, ys = a.canonical(rows, ws, wa), b.canonical(rows, ws, wa)
        out[start:start + r] = [metric(x, y, a.scale, b.scale) for x, y in zip(xs, ys)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(out, [tail, 1.0 - tail])
    return float(low), float(high)
