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
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

RUN_FORMAT = 1  # bumped when the layout or the checkpoint contents change incompatibly


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or from an incompatible version/task."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.config_path}:{exc.lineno}: invalid JSON ({exc.msg})") from None

    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to metrics.jsonl (one line each, flushed and fsynced)."""
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics row (a line cut by a crash is ignored)."""
        if not self.metrics_path.is_file():
            return []
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
        out = self.path / "learning_curve.png"
        tmp = self.path / ".learning_curve.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, out)
        return out
