"""Reading configuration tables (TOML or JSON files) with one-line errors that name the file.

Every configuration file rewardgym reads from a user (randomisation ranges, robot and safety
configs) goes through :func:`read_table`: it is data, parsed by ``tomllib``/``json`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_table(path: str | Path, error: type[Exception], what: str, section: str | None = None) -> dict[str, Any]:
    """The top-level table of a ``.toml`` (or ``.json``) file.

    Args:
        path: the file.
        error: the exception class to raise (its message names the file and the problem).
        what: what the file is, for "... not found" (``"safety config"``).
        section: when the file has a table of this name (``[randomize]``), return that table.

    Raises:
        error: missing file, unreadable text, invalid TOML/JSON (with line and column), not a table.
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: invalid TOML ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a table, got {type(data).__name__}")
    if section is not None and isinstance(data.get(section), dict):
        return data[section]
    return data


def check_keys(data: Any, valid: list[str] | tuple[str, ...], error: type[Exception], where: str,
               what: str = "key") -> None:
    """Raise ``error`` for the first key of ``data`` not in ``valid``, naming the closest valid one."""
    import difflib

    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise error(f"{where}: unknown {what} {key!r}{hint} Valid keys: {', '.join(valid)}.")
