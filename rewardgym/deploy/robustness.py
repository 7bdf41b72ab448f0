"""``rewardgym robustness``: how far each physical parameter may move before a policy fails.

After DrEureka's RAPP (Ma et al., 2024, "DrEureka: Language Model Guided Sim-To-Real
Transfer"): every parameter is swept **alone** (the others stay nominal) over a list of
values; at each value the policy runs ``episodes`` episodes on the same seeds as at nominal,
so differences come from the parameter only. A value *keeps* the policy when

* ``criterion = "success"`` (the default when the policy succeeds at nominal): its success
  rate is at least ``min_success`` (the task's success test);
* ``criterion = "return"`` (the default otherwise): its mean return is at least
  ``nominal - (1 - keep_return) * |nominal|``.

The **kept range** of a parameter is the contiguous run of kept values around its nominal
value. With ``--llm``, an OpenAI-compatible model gets the sweep (table and kept ranges)
and the parameters' meaning, units and physical bounds, and proposes domain-randomisation
ranges as TOML; the reply is validated like any randomisation file (unknown key, value
outside physical sense) and repaired by asking again with the error, at most
``max_repairs`` times. Outputs in ``--out``: ``robustness.json``, ``robustness.md``,
``robustness.png`` and, with ``--llm``, ``randomize_llm.toml`` (usable as
``train --randomize``) and ``llm_transcript.jsonl``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rewardgym.files import atomic_write_text, save_figure
from rewardgym.text import escape_control
from rewardgym.wrappers.randomize import PARAMS, RandomizationConfig, RandomizationError

CRITERIA = ("auto", "success", "return")


@dataclass
class SweepRow:
    """One evaluated value: ``param = value`` (``param == "nominal"`` for the unperturbed row)."""

    param: str
    value: float | None
    success_rate: float
    return_mean: float
    return_std: float
    length_mean: float
    kept: bool = True


@dataclass
class SweepResult:
    """A sweep (see the module docstring).

    Attributes:
        task: task id.
        policy: what was evaluated (path).
        criterion: ``"success"`` or ``"return"`` (resolved).
        threshold: the success rate or return a value had to reach.
        episodes, seed: of every evaluation.
        nominal: the unperturbed row.
        rows: one per (param, value), in sweep order.
        ranges: param -> ``[low, high]`` kept range, or None when even the value closest to
            nominal fails.
    """

    task: str
    policy: str
    criterion: str
    threshold: float
    episodes: int
    seed: int
    nominal: SweepRow
    rows: list[SweepRow] = field(default_factory=list)
    ranges: dict[str, list[float] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "policy": self.policy, "criterion": self.criterion, "threshold": self.threshold,
                "episodes": self.episodes, "seed": self.seed, "nominal": asdict(self.nominal),
                "rows": [asdict(r) for r in self.rows], "ranges": self.ranges}

    def table(self) -> str:
        """A Markdown table of every row (what the report and the LLM prompt show)."""
        lines = ["| parameter | value | success rate | return (mean ± std) | episode length | kept |",
                 "|---|---|---|---|---|---|"]
        for r in [self.nominal, *self.rows]:
            value = "nominal" if r.value is None else f"{r.value:g}"
            lines.append(f"| {r.param} | {value} | {r.success_rate:.2f} | {r.return_mean:.1f} ± {r.return_std:.1f} "
                         f"| {r.length_mean:.0f} | {'yes' if r.kept else 'no'} |")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- policy
def load_batch_policy(path: str | Path, trusted: bool = False) -> tuple[Callable[[np.ndarray], np.ndarray], str, str]:
    """``(batch policy, task, label)`` from an exported policy or a rewardgym PPO run directory.

    ``trusted`` allows a TorchScript export (a program; see :meth:`ExportedPolicy.load`).

    A run is evaluated through the same :class:`~rewardgym.runs.export.DeployablePolicy`
    that ``rewardgym export`` writes (normaliser and bounds inside), in torch.
    """
    import torch

    from rewardgym.runs.export import ExportedPolicy, deployable_policy, is_exported_policy, load_run_agent

    if is_exported_policy(path):
        policy = ExportedPolicy.load(path, trusted=trusted)
        return policy, policy.task, str(policy.path)
    run, config, agent = load_run_agent(path)
    module = deployable_policy(agent)

    @torch.no_grad()
    def run_policy(obs: np.ndarray) -> np.ndarray:
        return module(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return run_policy, config["task"], str(run.path)


# ----------------------------------------------------------------------------- sweep
def parse_values(param: str, text: str | None) -> list[float]:
    """``"0.5,1,2"`` -> values of ``param`` (its default grid when ``text`` is None), validated."""
    if param not in PARAMS:
        RandomizationConfig.from_dict({param: 0}, source="--param")  # raises, naming the closest key
    if param == "push_interval":
        raise RandomizationError("--param push_interval: sweep push_velocity instead (pushes need both; the "
                                 "sweep uses push_interval = 1 s)")
    if text is None:
        values = list(PARAMS[param].sweep)
    else:
        try:
            values = [float(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise RandomizationError(f"--values {text!r} for {param}: expected numbers separated by commas") from None
    if not values:
        raise RandomizationError(f"--values for {param}: no values")
    for v in values:
        RandomizationConfig.from_dict({**_PUSHES.get(param, {}), param: v}, source=f"--param {param}")
    return sorted(set(values))


_PUSHES = {"push_velocity": {"push_interval": 1.0}}  # a push sweep pushes once a second


def _perturbation(param: str, value: float) -> dict[str, Any]:
    """The randomisation config that sets ``param`` to ``value`` and leaves the rest nominal."""
    return {**_PUSHES.get(param, {}), param: int(value) if PARAMS[param].integer else value}


def _row(param: str, value: float | None, report: Mapping[str, Any]) -> SweepRow:
    return SweepRow(param, value, float(report["success_rate"]), float(report["env_return"]["mean"]),
                    float(report["env_return"]["std"]), float(report["length"]["mean"]))


def kept_range(values: Sequence[float], kept: Sequence[bool], nominal: float) -> list[float] | None:
    """The contiguous run of kept values (sorted ``values``) around the value closest to ``nominal``."""
    if not values:
        return None
    centre = int(np.argmin([abs(v - nominal) for v in values]))
    if not kept[centre]:
        return None
    lo = hi = centre
    while lo > 0 and kept[lo - 1]:
        lo -= 1
    while hi < len(values) - 1 and kept[hi + 1]:
        hi += 1
    return [float(values[lo]), float(values[hi])]


def sweep(policy: Callable[[np.ndarray], np.ndarray], task: str, params: Mapping[str, Sequence[float]],
          episodes: int = 5, seed: int = 10_000, criterion: str = "auto", min_success: float = 0.5,
          keep_return: float = 0.8, label: str = "",
          on_row: Callable[[SweepRow], None] | None = None) -> SweepResult:
    """Evaluate ``policy`` at nominal, then at each value of each parameter alone.

    Args:
        policy: a batch policy (``(B, obs_dim)`` -> actions).
        task: task id.
        params: parameter -> values (validated by :func:`parse_values`).
        episodes, seed: per evaluation (the same seeds everywhere).
        criterion: ``auto``, ``success`` or ``return`` (module docstring).
        min_success: success rate that keeps a value (``success``).
        keep_return: fraction of the nominal return that keeps a value (``return``).
        on_row: called with each row as it is measured (progress).
    """
    from rewardgym.runs.evaluate import evaluate_policy

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    nominal = _row("nominal", None, evaluate_policy(policy, task, episodes=episodes, seed=seed))
    if criterion == "auto":
        criterion = "success" if nominal.success_rate > 0 else "return"
    threshold = min_success if criterion == "success" else \
        nominal.return_mean - (1.0 - keep_return) * abs(nominal.return_mean)
    if on_row:
        on_row(nominal)
    result = SweepResult(task, label, criterion, float(threshold), episodes, seed, nominal)
    for param, values in params.items():
        kept = []
        for value in values:
            report = evaluate_policy(policy, task, episodes=episodes, seed=seed,
                                     randomize=_perturbation(param, value))
            row = _row(param, float(value), report)
            row.kept = (row.success_rate >= threshold) if criterion == "success" else (row.return_mean >= threshold)
            kept.append(row.kept)
            result.rows.append(row)
            if on_row:
                on_row(row)
        result.ranges[param] = kept_range(list(values), kept, PARAMS[param].nominal)
    return result


# ----------------------------------------------------------------------------- report
def write_report(result: SweepResult, out_dir: str | Path) -> Path:
    """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "robustness.json", json.dumps(result.to_json(), indent=2) + "\n")
    what = (f"success rate >= {result.threshold:g}" if result.criterion == "success"
            else f"return >= {result.threshold:.1f} (of {result.nominal.return_mean:.1f} at nominal)")
    ranges = "\n".join(f"- {p}: " + (f"{r[0]:g} to {r[1]:g} {PARAMS[p].unit}" if r else "none (fails nearest nominal)")
                       for p, r in result.ranges.items())
    atomic_write_text(out / "robustness.md", escape_control(  # a report: no control characters (rewardgym.text)
        f"# Robustness of {result.policy}\n\nTask {result.task}; {result.episodes} episodes per value (seeds "
        f"{result.seed}..); a value keeps the policy when {what}.\n\n{result.table()}\n\nKept ranges:\n\n{ranges}\n"))
    _plot(result, out / "robustness.png")
    return out


def _plot(result: SweepResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(result.ranges)
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(4.2 * max(1, len(params)), 3.4), squeeze=False)
    for ax, param in zip(axes[0], params):
        rows = [r for r in result.rows if r.param == param]
        x = [r.value for r in rows]
        ax.errorbar(x, [r.return_mean for r in rows], yerr=[r.return_std for r in rows], marker="o", lw=1.2,
                    label="return")
        ax.axhline(result.nominal.return_mean, color="grey", ls=":", lw=1, label="nominal return")
        kept = result.ranges[param]
        if kept:
            ax.axvspan(kept[0], kept[1], color="green", alpha=0.12, label="kept range")
        ax.axvline(PARAMS[param].nominal, color="black", lw=0.6)
        twin = ax.twinx()
        twin.plot(x, [r.success_rate for r in rows], color="tab:orange", marker="s", lw=1, label="success")
        twin.set_ylim(-0.05, 1.05)
        twin.set_ylabel("success rate", color="tab:orange")
        ax.set_xlabel(f"{param} ({PARAMS[param].unit})")
        ax.set_ylabel("return (env reward)")
        ax.legend(fontsize=7, loc="lower center")
    fig.suptitle(f"{result.task}: one parameter at a time ({result.episodes} episodes per value)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------- LLM ranges
SYSTEM_PROMPT = (
    "You design domain randomisation for sim-to-real transfer of reinforcement-learning policies, as in "
    "DrEureka. You are given a robustness sweep of a trained policy: each physical parameter was varied alone, "
    "and the policy was evaluated at each value. Propose, for each parameter worth randomising, a range "
    "[low, high] to sample uniformly per training episode: wide enough to cover what a real robot may differ "
    "by, but inside the range where the policy still succeeds (so that training can still make progress). "
    "Answer with exactly one ```toml code block of `key = [low, high]` lines using only the keys listed, and "
    "a short justification after it.")


def llm_messages(result: SweepResult, instruction: str) -> list[dict[str, str]]:
    """The chat messages that ask for randomisation ranges (system + user)."""
    keys = "\n".join(f"- {k} ({p.unit}): {p.doc}; physical bounds "
                     f"[{'-inf' if p.low is None else f'{p.low:g}'}, {'inf' if p.high is None else f'{p.high:g}'}]"
                     f"{' (whole numbers)' if p.integer else ''}; nominal {p.nominal:g}"
                     for k, p in PARAMS.items() if k != "push_interval")
    kept = "\n".join(f"- {p}: " + (f"[{r[0]:g}, {r[1]:g}]" if r else "none") for p, r in result.ranges.items())
    what = (f"success rate >= {result.threshold:g}" if result.criterion == "success"
            else f"mean return >= {result.threshold:.1f}")
    user = (f"Task: {result.task}\nInstruction: {instruction}\n\nRandomisation keys you may use:\n{keys}\n\n"
            f"Robustness sweep ({result.episodes} episodes per value; a value is kept when {what}):\n\n"
            f"{result.table()}\n\nKept ranges (contiguous around nominal):\n{kept}\n\n"
            "Propose the domain-randomisation ranges for training as one ```toml block.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_TOML_BLOCK = re.compile(r"```(?:toml)?\s*\n(.*?)```", re.DOTALL)


def parse_ranges(reply: str) -> RandomizationConfig:
    """The randomisation table in an LLM reply (its first ```toml block, else the whole reply)."""
    import tomllib

    match = _TOML_BLOCK.search(reply)
    text = match.group(1) if match else reply
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RandomizationError(f"the reply holds no valid TOML table ({exc})") from None
    if isinstance(data.get("randomize"), dict):
        data = data["randomize"]
    if not data:
        raise RandomizationError("the reply's TOML table is empty")
    return RandomizationConfig.from_dict(data, source="LLM reply")


def suggest_ranges(result: SweepResult, client: Any, out_dir: str | Path, max_repairs: int = 1) -> tuple[
        RandomizationConfig, Path]:
    """Ask ``client`` (an :class:`~rewardgym.llm.client.LLMClient`) for randomisation ranges.

    Returns the validated configuration and the ``randomize_llm.toml`` written in ``out_dir``.

    Raises:
        RandomizationError: no valid table after ``max_repairs`` repairs (the last error).
    """
    from rewardgym.envs.registry import get_task

    messages = llm_messages(result, get_task(result.task).instruction)
    error: RandomizationError | None = None
    for _ in range(max_repairs + 1):
        reply = client.complete(messages).text
        try:
            config = parse_ranges(reply)
            break
        except RandomizationError as exc:
            error = exc
            messages = messages + [{"role": "assistant", "content": reply},
                                   {"role": "user", "content": f"Randomisation repair request: {exc}. Answer again "
                                                               "with one corrected ```toml block."}]
    else:
        raise RandomizationError(f"the LLM gave no valid randomisation table after {max_repairs} repair(s): {error}")
    lines = [f"# domain randomisation proposed by {client.model} on {time.strftime('%Y-%m-%d %H:%M')} from the "
             f"robustness sweep of {result.policy}", "# (validated; use with: rewardgym train TASK --randomize THIS)"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.to_dict().items()]
    path = Path(out_dir) / "randomize_llm.toml"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return config, path
