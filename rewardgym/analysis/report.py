"""``rewardgym analyze``: judge reward programs before training on them.

For each program, on a coverage set of real transitions (:mod:`rewardgym.analysis.coverage`):

* ``epic`` / ``starc``: distance to the reference reward (the task's expert program by
  default), and ``epic_to_sparse`` / ``starc_to_sparse`` to the task's sparse success
  reward (:mod:`rewardgym.analysis.distance`; 0 = orders policies alike, 1 = opposite);
* ``alignment``: Kendall τ-b between how the program and the success test rank trajectory
  windows (at most :data:`WINDOW` steps each) — the program's discounted return of its
  *canonical* reward (so the statistic ignores scale and potential shaping) against the
  window's discounted sparse return; in ``[-1, 1]``, None when the coverage holds no success;
* ``top_reward_failure``: of the transitions in the top 1 % of the program's canonical
  reward, the fraction whose new state fails the success test (None without successes);
* per-term shares of the reward's variance (``Cov(term, R) / Var(R)``; they sum to 1 when the
  terms add up to the reward), and **flags**: one-line reasons to look again.

Programs are untrusted input here too: each runs in its sandboxed worker with its limits.
A program that fails on a mixed triple is reported with the error, not dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rewardgym.analysis.coverage import Coverage, collect_coverage, evaluate_on_triples
from rewardgym.analysis.distance import CanonicalReward, bootstrap_interval, canonicalize, epic, starc

__all__ = ["AnalysisReport", "ProgramAnalysis", "analyze", "reward_distance", "WINDOW", "DEFAULT_TRANSITIONS",
           "DEFAULT_MEAN_STATES", "DEFAULT_MEAN_ACTIONS"]

WINDOW = 50
"""Steps per trajectory window ranked by ``alignment`` (long episodes give several windows)."""
DEFAULT_TRANSITIONS = 16384
"""Coverage transitions by default: the 95 % interval of EPIC is within ±0.015 on Fetch-Reach
(``python benchmarks/analysis.py --part interval``)."""
DEFAULT_MEAN_STATES = 64
"""States ``S_j ~ D_S`` the canonicalisation's expectations are averaged over (as ``S`` and ``S'``)."""
DEFAULT_MEAN_ACTIONS = 4
"""Actions ``A_l ~ D_A`` crossed with them."""
TOP_FRACTION = 0.01

# Flag thresholds (EPIC = sqrt((1 - rho)/2): 0.05 is rho > 0.995, 0.775 is rho < -0.2).
EQUIVALENT_EPIC = 0.05
OPPOSED_EPIC = math.sqrt(0.6)
UNRELATED_EPIC = math.sqrt(0.4)


@dataclass
class ProgramAnalysis:
    """What :func:`analyze` found for one program (``None``: not measurable, see ``flags``)."""

    name: str
    path: str
    epic: float | None = None
    starc: float | None = None
    epic_to_sparse: float | None = None
    starc_to_sparse: float | None = None
    alignment: float | None = None
    top_reward_failure: float | None = None
    flags: list[str] = field(default_factory=list)
    epic_interval: tuple[float, float] | None = None
    starc_interval: tuple[float, float] | None = None
    term_shares: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    JSON_KEYS = ("name", "path", "epic", "starc", "epic_to_sparse", "starc_to_sparse", "alignment",
                 "top_reward_failure", "flags")

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` entry: exactly :attr:`JSON_KEYS`."""
        return {key: getattr(self, key) for key in self.JSON_KEYS}


@dataclass
class AnalysisReport:
    """The result of :func:`analyze` (see the module docstring)."""

    task: str
    reference: str
    gamma: float
    transitions: int
    programs: list[ProgramAnalysis]
    seed: int = 0
    mean_set: tuple[int, int] = (DEFAULT_MEAN_STATES, DEFAULT_MEAN_ACTIONS)
    coverage: list[str] = field(default_factory=list)
    successes: int = 0
    notes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # rows/columns of ``epic_matrix``
    epic_matrix: list[list[float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"task", "reference", "gamma", "transitions", "programs": [...]}`` (the ``--json`` file)."""
        return {"task": self.task, "reference": self.reference, "gamma": self.gamma,
                "transitions": self.transitions, "programs": [p.to_json() for p in self.programs]}

    def details(self) -> dict[str, Any]:
        """Everything, intervals and term shares included (``--out DIR/details.json``)."""
        out = self.to_json()
        out.update(seed=self.seed, mean_set=self.mean_set, coverage=self.coverage, successes=self.successes,
                   notes=self.notes, names=self.names, epic_matrix=self.epic_matrix,
                   programs=[asdict(p) for p in self.programs])
        return out

    def summary(self, name: str) -> str:
        """One line per program for an LLM's reflection prompt (numbers and flags, no paths)."""
        p = next(p for p in self.programs if p.name == name)
        if p.error:
            return f"analysis: could not evaluate ({p.error})"
        parts = [f"EPIC to {self.reference} {_fmt(p.epic)}" if self.reference != "sparse" else "",
                 f"EPIC to sparse success {_fmt(p.epic_to_sparse)}",
                 f"alignment with success {_fmt(p.alignment)}",
                 f"top-1% reward on failing states {_fmt(p.top_reward_failure)}"]
        text = "analysis: " + ", ".join(x for x in parts if x)
        return text + ("; " + "; ".join(p.flags) if p.flags else "")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


class _Judge:
    """Evaluates rewards on one coverage set and one mean set, so every distance is comparable."""

    def __init__(self, task: Any, coverage: Coverage, gamma: float, mean_states: int, mean_actions: int, seed: int,
                 mean_set: tuple[np.ndarray, np.ndarray] | None = None):
        self.task = task
        self.coverage = coverage
        self.gamma = gamma
        rng = np.random.default_rng(seed)
        pool, n = coverage.pool_size, len(coverage)
        if mean_set is None:
            self.mean_s = rng.choice(pool, mean_states, replace=pool < mean_states)
            self.mean_a = rng.choice(n, mean_actions, replace=n < mean_actions)
        else:
            self.mean_s, self.mean_a = (np.asarray(i, dtype=np.int64).reshape(-1) for i in mean_set)
            if not (len(self.mean_s) and len(self.mean_a) and 0 <= self.mean_s.min() and self.mean_s.max() < pool
                    and 0 <= self.mean_a.min() and self.mean_a.max() < n):
                raise ValueError(f"mean_set indices must point into the coverage's {pool} states and {n} actions")
        # Q[x, l, j] = R(x, A_l, S_j) over every pool state x, flattened x-major then l, j.
        m_s, m_a = len(self.mean_s), len(self.mean_a)
        self.q = (np.repeat(np.arange(pool), m_a * m_s), np.tile(np.repeat(self.mean_a, m_s), pool),
                  np.tile(self.mean_s, pool * m_a))
        # R(S_i, A_l, S_j), i-major then l, j.
        self.cube = (np.repeat(self.mean_s, m_a * m_s), np.tile(np.repeat(self.mean_a, m_s), m_s),
                     np.tile(self.mean_s, m_s * m_a))
        self.shape = (pool, m_a, m_s)
        terminated = coverage.states.get("terminated")
        self.terminal = np.zeros(pool, dtype=bool) if terminated is None else np.asarray(terminated, dtype=bool)

    @property
    def triples(self) -> int:
        """Mixed triples evaluated per reward."""
        return len(self.q[0]) + len(self.cube[0])

    def evaluate(self, source: Any) -> tuple[CanonicalReward, dict[str, np.ndarray]]:
        cov, spec = self.coverage, self.task.view
        values, terms = evaluate_on_triples(source, spec, cov.states, cov.actions, cov.prev,
                                            np.arange(len(cov)), cov.next, terms=True)
        mixed, _ = evaluate_on_triples(source, spec, cov.states, cov.actions, *self.q)
        cube, _ = evaluate_on_triples(source, spec, cov.states, cov.actions, *self.cube)
        _, m_a, m_s = self.shape
        mixed, cube = mixed.reshape(self.shape), cube.reshape(m_s, m_a, m_s)
        # A terminal state is absorbing and pays nothing afterwards (the episodic MDP made infinite):
        # rewards *from* it are 0. Without this a per-step constant (a survival bonus that teaches the
        # agent to avoid the goal that ends the episode) would canonicalise away.
        mixed[self.terminal] = 0.0
        cube[self.terminal[self.mean_s]] = 0.0
        canonical = canonicalize(values, mixed, cube, cov.prev, cov.next, self.gamma)
        return canonical, terms


def _windows(coverage: Coverage) -> tuple[np.ndarray, np.ndarray]:
    """``(window id (n,), discount gamma-exponent (n,))``: trajectories cut into :data:`WINDOW`-step windows."""
    key = coverage.trajectory.astype(np.int64) * 1_000_003 + coverage.step // WINDOW
    _, ids = np.unique(key, return_inverse=True)
    return ids, coverage.step % WINDOW


def _alignment(canonical: np.ndarray, success: np.ndarray, windows: np.ndarray, offset: np.ndarray,
               gamma: float) -> float | None:
    """Kendall τ-b of the windows' discounted canonical returns against their discounted sparse returns."""
    from scipy.stats import kendalltau

    discount = gamma ** offset
    program = np.bincount(windows, weights=discount * canonical)
    sparse = np.bincount(windows, weights=discount * success)
    if np.ptp(sparse) == 0 or np.ptp(program) <= 1e-12 * np.abs(program).max(initial=0.0):
        return None
    tau = kendalltau(program, sparse).statistic
    return None if not np.isfinite(tau) else float(tau)


def _top_failure(canonical: np.ndarray, success: np.ndarray) -> float | None:
    if not success.any() or np.ptp(canonical) <= 1e-12 * np.abs(canonical).max(initial=0.0):
        return None
    k = max(1, int(round(TOP_FRACTION * len(canonical))))
    top = np.argpartition(-canonical, k - 1)[:k]
    return float(np.mean(~success[top]))


def _term_shares(values: np.ndarray, terms: dict[str, np.ndarray]) -> dict[str, float]:
    centred = values - values.mean()
    var = float(np.dot(centred, centred))
    if var <= 0.0 or len(terms) < 2:
        return {}
    return {name: float(np.dot(t - t.mean(), centred) / var) for name, t in terms.items()}


def _flags(p: ProgramAnalysis, reference: str, has_reference: bool, canonical: CanonicalReward,
           terms: dict[str, np.ndarray], others: dict[str, np.ndarray]) -> list[str]:
    flags = []
    if np.ptp(canonical.canonical()) <= 1e-9 * canonical.scale:
        return ["constant on the coverage set up to shaping: it ranks every policy alike"]
    if has_reference and p.epic is not None:
        if p.epic <= EQUIVALENT_EPIC:
            flags.append(f"equivalent to the {reference} up to scale and shaping (EPIC {p.epic:.3f})")
        elif p.epic >= OPPOSED_EPIC:
            flags.append(f"opposes the {reference}: pays more where it pays less (EPIC {p.epic:.2f})")
        elif p.epic >= UNRELATED_EPIC:
            flags.append(f"unrelated to the {reference} (EPIC {p.epic:.2f}, correlation near 0)")
    if p.alignment is not None and p.alignment < -0.05:
        flags.append(f"ranks failing trajectories above successful ones (alignment {p.alignment:.2f})")
    if p.top_reward_failure is not None and p.top_reward_failure >= 0.9:
        flags.append(f"its highest rewards (top 1%) go to failing states {100 * p.top_reward_failure:.0f}% of the time")
    for name, share in sorted(p.term_shares.items(), key=lambda kv: -kv[1]):
        if share < 0.5:
            break
        related = [abs(_corr(terms[name], other)) for other in others.values()]
        if related and max(related) < 0.1:
            what = " and ".join(others)
            flags.append(f"term {name!r} carries {100 * share:.0f}% of the reward's variance but is unrelated to "
                         f"{what} (|correlation| < 0.1): it pays for something the task does not ask for")
    return flags


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return 0.0 if den == 0.0 else float(np.dot(x, y) / den)


def _resolve(spec: Any, task: Any, trusted: bool, limits: Any) -> Any:
    """A program, ``expert``, ``sparse`` or ``env`` as a reward source (other kinds learn online: refused)."""
    from rewardgym.rewards.resolve import resolve_reward

    text = str(spec)
    if not (text in ("expert", "sparse", "env") or text.endswith(".py")):
        raise ValueError(f"analyze takes reward programs (.py), 'expert', 'sparse' or 'env'; got {text!r}")
    if text.endswith(".py") and not Path(text).is_file():
        raise FileNotFoundError(f"reward program not found: {text}")
    return resolve_reward(text, task, trusted=trusted, limits=limits)


def analyze(task: Any, programs: Sequence[str | Path], reference: str | Path = "expert", gamma: float = 0.99,
            coverage: Coverage | Sequence[Coverage | Callable[[], Coverage]] | None = None,
            transitions: int = DEFAULT_TRANSITIONS,
            seed: int = 0, mean_states: int = DEFAULT_MEAN_STATES, mean_actions: int = DEFAULT_MEAN_ACTIONS,
            intervals: bool = True, trusted: bool = False, limits: Any = None,
            mean_set: tuple[Sequence[int], Sequence[int]] | None = None, progress: Callable[[str], None] | None = None) -> AnalysisReport:
    """Analyse reward ``programs`` of ``task`` against ``reference`` and the sparse reward.

    Args:
        task: task id or :class:`~rewardgym.envs.task.TaskSpec` (single-agent).
        programs: paths of reward programs (or ``"expert"``, ``"sparse"``, ``"env"``).
        reference: ``"expert"`` (the task's expert program), ``"sparse"``, or a program path.
        gamma: the discount of the canonicalisation and the alignment returns, in (0, 1].
        coverage: transitions to judge on (default: ``transitions`` random-action transitions); a
            list may hold callables ``() -> Coverage``, collected only once every program passed
            validation (a typo fails fast, not after the rollouts).
        transitions: size of the default coverage set.
        seed: seed of the rollouts, the mean set and the bootstrap.
        mean_states, mean_actions: sizes of the mean set (states ``S_j`` crossed with actions ``A_l``).
        mean_set: ``(state pool indices, action indices)`` to use as the mean set instead of a
            sample (a finite task passing every state and one transition per action gets the
            exact formula of the distances).
        intervals: compute 95 % bootstrap intervals of the distances to the reference.
        trusted: run program files in this process without the sandbox (your own code only).
        limits: time/memory limits of program workers (``ProgramLimits`` or a dict).
        progress: called with a short message as each step starts.

    Raises:
        ValueError: bad gamma, an unknown reference, an empty coverage set (the message names it).
        FileNotFoundError: a program or reference file that does not exist.
        rewardgym.rewards.sandbox.ProgramRejected: a program broke a sandbox rule (reference included).
    """
    from rewardgym.envs.registry import get_task
    from rewardgym.rewards.program import RewardProgramError

    spec = get_task(task) if isinstance(task, str) else task
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    for option, value in (("mean_states", mean_states), ("mean_actions", mean_actions)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value!r}")
    if not programs:
        raise ValueError("give at least one reward program to analyse")
    say = progress or (lambda message: None)
    reference = str(reference)
    if reference == "expert" and spec.expert_path is None:
        raise ValueError(f"task {spec.id} has no expert program: use --reference sparse or a program")
    reference_source = _resolve(reference, spec, trusted, limits)  # every program is validated before any work
    sources: list[Any] = []
    try:
        for program in programs:
            sources.append(_resolve(program, spec, trusted, limits))
        if coverage is None:
            say(f"collecting {transitions} random-action transitions of {spec.id}")
            coverage = collect_coverage(spec, transitions, seed)
        elif not isinstance(coverage, Coverage):
            coverage = Coverage.concatenate([part() if callable(part) else part for part in coverage])
        if len(coverage) == 0:
            raise ValueError("the coverage set is empty: give at least one source of transitions")
    except BaseException:
        for source in [reference_source, *sources]:
            source.close()
        raise
    judge = _Judge(spec, coverage, float(gamma), mean_states, mean_actions, seed, mean_set)
    success = coverage.success
    windows, offset = _windows(coverage)
    try:
        say(f"evaluating the reference ({reference}) and the sparse reward")
        sparse, _ = judge.evaluate(_resolve("sparse", spec, trusted, limits))
        ref, ref_terms = (sparse, {}) if reference == "sparse" else judge.evaluate(reference_source)
        has_reference = reference != "sparse"
        results: list[ProgramAnalysis] = []
        evaluated: list[CanonicalReward | None] = []
        for program, source in zip(programs, sources):
            name = Path(str(program)).stem if str(program).endswith(".py") else str(program)
            p = ProgramAnalysis(name=name, path=str(program))
            results.append(p)
            say(f"evaluating {name} on {len(coverage)} transitions and {judge.triples} mixed triples")
            try:
                canonical, terms = judge.evaluate(source)
            except RewardProgramError as exc:
                p.error = str(exc)
                p.flags.append(f"cannot be evaluated on the coverage's (s, a, s') triples: {exc}")
                evaluated.append(None)
                continue
            finally:
                source.close()
            evaluated.append(canonical)
            values = canonical.canonical()
            p.epic_to_sparse, p.starc_to_sparse = epic(canonical, sparse), starc(canonical, sparse)
            p.epic, p.starc = epic(canonical, ref), starc(canonical, ref)
            if intervals:
                p.epic_interval = bootstrap_interval(canonical, ref, "epic", seed=seed)
                p.starc_interval = bootstrap_interval(canonical, ref, "starc", seed=seed)
            p.alignment = _alignment(values, success, windows, offset, gamma)
            p.top_reward_failure = _top_failure(values, success)
            p.term_shares = _term_shares(canonical.values, terms)
            others = {"success": sparse.values}
            if has_reference:
                others[f"the {reference}"] = ref.values
            p.flags.extend(_flags(p, reference, has_reference, canonical, terms, others))
    finally:
        reference_source.close()
        for source in sources:
            source.close()
    report = AnalysisReport(task=spec.id, reference=reference, gamma=float(gamma), transitions=len(coverage),
                            programs=results, seed=seed, mean_set=(len(judge.mean_s), len(judge.mean_a)), coverage=list(coverage.sources),
                            successes=int(success.sum()))
    if not success.any():
        report.notes.append("no transition of the coverage set succeeds, so alignment and top-reward failure are "
                            "unknown: add --coverage RUN_DIR with a policy that sometimes succeeds")
    named = [(p.name, c) for p, c in zip(results, evaluated) if c is not None]
    named += [(f"{reference} (reference)", ref)] if has_reference else []
    named += [("sparse", sparse)]
    report.names = [n for n, _ in named]
    report.epic_matrix = [[epic(a, b) for _, b in named] for _, a in named]
    return report


def reward_distance(task: Any, a: str | Path, b: str | Path, method: str = "epic", gamma: float = 0.99,
                    transitions: int = DEFAULT_TRANSITIONS, seed: int = 0, coverage: Coverage | None = None,
                    trusted: bool = False, **options: Any) -> float:
    """The EPIC or STARC distance between rewards ``a`` and ``b`` of ``task``, in ``[0, 1]``.

    ``a`` and ``b`` are program paths or ``"expert"``/``"sparse"``/``"env"``; see :func:`analyze`
    for the other arguments."""
    if method not in ("epic", "starc"):
        raise ValueError(f"method must be 'epic' or 'starc', got {method!r}")
    report = analyze(task, [a], reference=b, gamma=gamma, coverage=coverage, transitions=transitions, seed=seed,
                     intervals=False, trusted=trusted, **options)
    value = getattr(report.programs[0], method) if str(b) != "sparse" else \
        getattr(report.programs[0], f"{method}_to_sparse")
    if value is None:
        raise ValueError(f"{a}: {report.programs[0].error}")
    return float(value)


def save_heatmap(report: AnalysisReport, path: str | Path) -> Path:
    """The EPIC distance matrix over the analysed rewards (programs, reference, sparse) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardgym.files import save_figure
    from rewardgym.text import escape_control

    names = [escape_control(n)[:40] for n in report.names]
    matrix = np.asarray(report.epic_matrix, dtype=np.float64)
    size = 2.0 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                    color="white" if matrix[i, j] < 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label="EPIC distance (0: same order of policies)")
    ax.set_title(f"{report.task}\nEPIC distances, gamma {report.gamma:g}, {report.transitions} transitions", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
