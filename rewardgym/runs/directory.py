"""Run directories: every ``train`` writes one, and ``eval``/``--resume`` read it back.

Layout::

    runs/<task>-<reward>-<algo>-s<seed>-<time>/
        config.json          resolved configuration (task, reward, algorithm, hyper-parameters,
                             versions) — what ``--resume`` and ``eval`` rebuild the run from
        reward.py            copy of the reward program, when the reward was a file
        metrics.jsonl        one JSON object per update (steps, time, fps, returns, success, terms)
        checkpoints/latest.pt   last checkpoint (atomic replace), plus final.pt at the end
        learning_curve.png   episode return / env return / success vs env steps
        eval.json, video.mp4 written by ``rewardgym eval``

Every file is written atomically (temporary file + ``os.replace``), so a run killed at
any moment leaves the previous complete version of each file.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

from rewardgym.files import (atomic_write_bytes, atomic_write_text, confined, no_links_out,  # noqa: F401
                             read_json, save_figure)
from rewardgym.rewards.source import is_file_term
from rewardgym.rewards.spec import RewardSpec
from rewardgym.runs.algorithms import ALGORITHMS

MAX_METRICS_BYTES = 256 * 2**20  # metrics.jsonl read back from a (possibly received) run
RUN_FORMAT = 1  # bumped when the layout or the checkpoint contents change incompatibly


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or from an incompatible version/task."""


UNSAFE_PICKLE_WARNING = ("loading a pickled checkpoint: it can run any code its author put in it; only do this "
                         "for runs you made yourself")
"""Shown whenever a checkpoint is loaded by unpickling (``--unsafe-pickle``)."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60]


class RunDir:
    """A run directory (see the module docstring for its files)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- creation / loading -----------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, config: dict[str, Any], name: str | None = None) -> "RunDir":
        """Make a new run directory under ``root`` and write ``config.json``."""
        root = Path(root)
        if name is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            task = config["task"].removeprefix("rewardgym/").rsplit("-v", 1)[0]
            name = slug(f"{task}-{Path(str(config['reward'])).stem}-{config['algo']}-s{config['seed']}-{stamp}")
        path = root / name
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{name}-{suffix}"
        path.mkdir(parents=True)
        run = cls(path)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run; raises :class:`RunError` naming what is wrong."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"run directory not found: {run.path}")
        if not run.config_path.is_file():
            raise RunError(f"{run.path} is not a rewardgym run (no config.json)")
        try:
            no_links_out(run.path, "run directory")
        except ValueError as exc:
            raise RunError(str(exc)) from None
        config = run.config()
        if config.get("run_format") != RUN_FORMAT:
            raise RunError(f"{run.config_path}: run format {config.get('run_format')!r} is not supported by "
                           f"this rewardgym (expects {RUN_FORMAT}); re-train the run")
        return run

    # -- files ----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoint_dir / "latest.pt"

    def write_config(self, config: dict[str, Any]) -> None:
        config = {"run_format": RUN_FORMAT, **config}
        atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=False, default=str) + "\n")

    def config(self) -> dict[str, Any]:
        try:
            config = read_json(self.config_path)
        except ValueError as exc:
            raise RunError(str(exc)) from None
        if not isinstance(config, dict):
            raise RunError(f"{self.config_path}: not a JSON object")
        return config

    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to metrics.jsonl (one line each, flushed and fsynced)."""
        nofollow = lambda path, flags: os.open(path, flags | os.O_NOFOLLOW)  # noqa: E731 - a link is never written through
        with open(self.metrics_path, "a", encoding="utf-8", opener=nofollow) as handle:
            for row in rows:
                handle.write(json.dumps(row, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics row (a line cut by a crash is ignored)."""
        if not self.metrics_path.is_file():
            return []
        size = self.metrics_path.stat().st_size
        if size > MAX_METRICS_BYTES:
            raise RunError(f"{self.metrics_path}: {size:,} bytes; rewardgym reads metrics files of at most "
                           f"{MAX_METRICS_BYTES:,} bytes (a run writes about 1 kB per update)")
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def truncate_metrics(self, global_step: int) -> None:
        """Drop rows logged after ``global_step`` (work lost since the last checkpoint)."""
        rows = [r for r in self.metrics() if r.get("global_step", 0) <= global_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, default=float) + "\n" for r in rows))

    # -- plots ----------------------------------------------------------------------------
    def plot_learning_curve(self) -> Path | None:
        """Write learning_curve.png from metrics.jsonl; returns its path (None if no data)."""
        rows = [r for r in self.metrics() if r.get("episode_return") is not None]
        if not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["global_step"] for r in rows]
        config = self.config()
        panels = [("episode_return", "return (injected reward)"), ("env_return", "return (env reward)"),
                  ("success_rate", "success rate")]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, (key, label) in zip(axes, panels):
            values = [r.get(key) for r in rows]
            ax.plot(steps, [float("nan") if v is None else v for v in values], lw=1.5)
            ax.set_xlabel("env steps")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{config['task']}  reward={config['reward']}  {config['algo']}  seed={config['seed']}",
                     fontsize=10)
        fig.tight_layout()
        return save_figure(fig, self.path / "learning_curve.png", dpi=110)


# -- reward files -----------------------------------------------------------------------------
def run_copy(run: "RunDir", token: str) -> str:
    """``token`` (``w*path.py`` or ``path.pt``) pointing at the run's own copy of the file.

    A run reads only its own files: a token that names a file (a ``.py``/``.pt`` name or any
    path) resolves to the copy the run holds under that file name (:func:`confined`: no
    link out of the run), wherever the run is resumed or evaluated; the path written in
    ``config.json`` is never opened. Kinds (``expert``, ``sparse``, ``oni`` ...) pass through.

    Raises:
        RunError: the run holds no copy of a file its config names.
    """
    core = token.split("*")[-1]
    if not is_file_term(core):
        return token
    what = f"{run.config_path}: reward file {core[:120]!r}"
    try:
        path = confined(run.path, Path(core).name, what, plain=True)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if not path.is_file():
        raise RunError(f"{what}: the run holds no copy of it ({path.name}); a run reads only its own files, "
                       f"so it cannot be resumed or evaluated with a file from elsewhere")
    return token.replace(core, str(path))


def reward_for_run(run: "RunDir") -> str:
    """The run's reward expression with program and model files pointing at the run's own copies."""
    spec = RewardSpec(str(run.config()["reward"]))
    return spec.with_files({name: run_copy(run, name) for name in spec.files()}).reward


# -- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(payload: dict[str, Any], run: "RunDir", name: str) -> Path:
    """Atomically write a checkpoint ``payload`` (tensors and plain containers) as ``checkpoints/<name>``."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = run.checkpoint_dir / name
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: Path, task_id: str, algo: str, unsafe_pickle: bool = False) -> dict[str, Any]:
    """Read a checkpoint as data and check it belongs to ``task_id``, ``algo`` and this rewardgym.

    ``torch.load(weights_only=True)`` accepts tensors and plain containers only, so a file
    crafted to run code on unpickling is refused; ``unsafe_pickle`` lifts that (runs you made
    with an older rewardgym; see :data:`UNSAFE_PICKLE_WARNING`).

    Raises:
        RunError: naming the file and what is wrong with it.
    """
    import warnings

    import torch

    if unsafe_pickle:
        warnings.warn(f"{path}: {UNSAFE_PICKLE_WARNING}", stacklevel=2)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        hint = ("; it holds objects that weights-only loading refuses (loading it would run code). If you made this "
                "run yourself with an older rewardgym, pass --unsafe-pickle" if "weights_only" in str(exc) else "")
        raise RunError(f"{path}: not a readable rewardgym checkpoint ({detail}){hint}") from None
    if not isinstance(payload, dict) or payload.get("run_format") != RUN_FORMAT:
        raise RunError(f"{path}: checkpoint format {payload.get('run_format') if isinstance(payload, dict) else '?'}"
                       f" is not supported by this rewardgym (expects {RUN_FORMAT})")
    if payload.get("task") != task_id:
        raise RunError(f"{path}: checkpoint is for task {payload.get('task')!r}, not {task_id!r}")
    if payload.get("algo") != algo:
        raise RunError(f"{path}: checkpoint is of algorithm {payload.get('algo')!r}, not {algo!r}")
    if not isinstance(payload.get("global_step"), int) or payload["global_step"] < 0:
        raise RunError(f"{path}: checkpoint field global_step={payload.get('global_step')!r} is not valid")
    return payload


def latest_checkpoint(run: "RunDir", algo: str, final: bool = False) -> Path | None:
    """The checkpoint to load (``final`` first when asked), or None; SB3 runs made before
    weights-only checkpoints have ``.zip`` files."""
    names = (["final"] if final else []) + ["latest"]
    for name in names:
        algorithm = ALGORITHMS.get(algo)
        for suffix in algorithm.checkpoint_suffixes if algorithm else (".pt",):
            path = run.checkpoint_dir / f"{name}{suffix}"
            if path.is_file():
                return path
    return None
