"""Configuration: tables read from files and values checked against typed fields, with
one-line errors that name the file, the line and the key.

Every configuration file rewardgym reads from a user (hyper-parameters, randomisation ranges,
robot and safety configs) is data, parsed by ``tomllib``/``json`` only (:func:`read_table`).
A dataclass of settings is filled by :func:`from_dict`: unknown keys are refused with the
closest valid one (:func:`check_keys`), values are converted to the field's annotated type or
refused (:func:`coerce`), and a message cites ``file:line`` of the key when the source is a
file (:func:`locate`). PPO's config, ONI's options and the randomisation, safety and robot
configs share these rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

T = TypeVar("T")


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
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise error(f"{where}: unknown {what} {key!r}{hint} Valid keys: {', '.join(valid)}.")


def locate(source: str, key: str) -> str:
    """``source`` or ``source:line`` when ``source`` is a readable file (under 1 MB) mentioning ``key``."""
    try:
        path = Path(source)
        if path.is_file() and path.stat().st_size < 1_000_000:
            pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*[:=]")
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    return f"{source}:{number}"
    except (OSError, ValueError):
        pass
    return source


def coerce(key: str, value: Any, hint: Any, where: str, error: type[Exception] = ValueError,
           what: str = "config key") -> Any:
    """``value`` converted to the annotation ``hint`` (int -> float, list -> tuple of ints,
    ``Literal`` choices, ``X | None`` unions, finite numbers only), or ``error`` naming ``where``,
    ``what`` and ``key``. Other annotations (``Any``, containers of text) pass ``value`` through."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> Exception:
        return error(f"{where}: {what} {key!r} expects {expected}, got {value!r} ({type(value).__name__})")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for member in inner[:-1]:  # e.g. bool | Literal["auto"]: the first member that accepts the value
            try:
                return coerce(key, value, member, where, error, what)
            except error:
                pass
        return coerce(key, value, inner[-1], where, error, what)
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint_text = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(f"{where}: {what} {key!r} must be one of {list(args)}, got {value!r}{hint_text}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
            raise fail("a list of integers")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise fail("a boolean")
        return bool(value)
    if hint is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise fail("an integer")
        return int(value)
    if hint is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise fail("a number")
        if not math.isfinite(float(value)):
            raise fail("a finite number")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise fail("a string")
    return value


def from_dict(cls: type[T], data: Any, source: str, error: type[Exception] = ValueError,
              what: str = "config key") -> T:
    """An instance of the dataclass ``cls`` from ``data``: unknown keys refused (closest valid
    key named), each value coerced to its field's annotation (:func:`coerce`), errors citing
    ``source`` (``file:line`` when it is a file). Range checks stay with ``cls``."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a table of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        where = locate(source, str(key))
        check_keys([key], names, error, where, what)
        values[key] = coerce(key, value, hints[key], where, error, what)
    return cls(**values)
