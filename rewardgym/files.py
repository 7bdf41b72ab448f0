"""Files: atomic writes, and reading what other people send (bounded, confined to its directory).

Two rules hold for every file rewardgym writes or reads back:

* **Atomic writes.** :func:`atomic_write_bytes` / :func:`atomic_write_text` write a temporary
  file beside the target and ``os.replace`` it, so a run killed at any moment leaves the
  previous complete version of each file.
* **Received files are data, and their paths stay home.** A run directory, a synthesis
  run, a label store may come from a stranger. A name read from such a file (a candidate
  id, an attempt's file name, a reward copy) is a *name*, never a path:
  :func:`confined` joins it to the directory it belongs to and refuses absolute paths,
  ``..``, separators where a plain name is expected, and links that resolve outside the
  directory. :func:`read_json` bounds a file's size before parsing it.

This module is the bottom layer: it imports nothing from rewardgym.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["NAME_PATTERN", "UnsafePath", "atomic_write_bytes", "atomic_write_text", "confined", "read_json",
           "no_links_out", "save_figure", "MAX_JSON_BYTES"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""A plain file name read from a received file: letters, digits, ``_ . -``; no separators,
no leading dot, at most 100 characters."""

MAX_JSON_BYTES = 64 * 2**20
"""Largest JSON file (config, state, eval) rewardgym parses from a run directory (64 MiB):
far above what a run writes, far below what would swell the process."""


class UnsafePath(ValueError):
    """A path read from a received file points outside its directory (or is not a plain name)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
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
    """:func:`atomic_write_bytes` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (:func:`atomic_write_bytes`) and close it."""
    import io

    import matplotlib.pyplot as plt  # lazy: plotting is optional work, and pyplot is slow to import

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def confined(root: str | Path, name: Any, what: str, *, plain: bool = False) -> Path:
    """``root / name`` for a ``name`` read from a received file, refused unless it stays in ``root``.

    Args:
        root: the directory the name belongs to (a run directory, a round directory).
        name: the relative path (``plain=True``: one plain file name, :data:`NAME_PATTERN`).
        what: where the name came from, for the message (``"state.json: candidate id"``).

    Raises:
        UnsafePath: ``name`` is not a string, is absolute, has ``..`` parts, a NUL, or (once
            links are resolved) leads outside ``root``.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UnsafePath(f"{what}: {name!r} is not a file name")
    if plain and not NAME_PATTERN.match(name):
        raise UnsafePath(f"{what}: {name[:120]!r} is not a plain name (letters, digits, '_', '.', '-'; "
                         f"no path separators)")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePath(f"{what}: {name[:120]!r} points outside {root} (received files name paths inside "
                         f"their own directory only)")
    root = Path(root)
    path = root / rel
    real_root = root.resolve()
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise UnsafePath(f"{what}: {name[:120]!r} cannot be resolved ({exc})") from None
    if real != real_root and real_root not in real.parents:
        raise UnsafePath(f"{what}: {name[:120]!r} leads outside {root} (through a link)")
    return path


def no_links_out(root: str | Path, what: str, max_entries: int = 100_000) -> None:
    """Refuse a received directory holding a symbolic link that resolves outside it.

    rewardgym writes into run directories it reads (metrics, checkpoints, reports); a link
    planted there (``metrics.jsonl -> ~/.bashrc``) would make those writes land elsewhere.

    Raises:
        UnsafePath: naming the link, or when the tree has more than ``max_entries`` entries.
    """
    root = Path(root)
    real_root = root.resolve()
    seen = 0
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > max_entries:
                raise UnsafePath(f"{what}: {root} holds more than {max_entries:,} entries")
            path = Path(current) / name
            if path.is_symlink():
                target = path.resolve()
                if target != real_root and real_root not in target.parents:
                    raise UnsafePath(f"{what}: {path} is a link to {target}, outside {root} (a received directory "
                                     f"must not point rewardgym's writes elsewhere)")


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file at ``path``, refusing one larger than ``max_bytes`` before reading it.

    Raises:
        ValueError: too large, not UTF-8, or not JSON; the message names the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size:,} bytes; rewardgym reads JSON files of at most {max_bytes:,} bytes "
                         f"(a run never writes one this large)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None
