"""The task registry: every ``rewardgym/<Family>-<Task>-v0`` id and its :class:`TaskSpec`.

Built-in family modules (``rewardgym.envs.families.*``) declare ``TASKS: list[TaskSpec]``
without importing their simulator; simulators are imported when an env is made, so
``import rewardgym`` stays fast and a missing optional simulator never breaks it. Tasks on
your own environments are declared with :func:`rewardgym.register_task`
(:mod:`rewardgym.envs.declare`), which lands in :func:`add_task` like every built-in one.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from rewardgym.envs.task import TaskSpec

_ID = re.compile(r"rewardgym/[A-Za-z0-9][A-Za-z0-9_.-]*-v\d+")

FAMILY_MODULES = (
    "rewardgym.envs.families.locomotion",
    "rewardgym.envs.families.metaworld",
    "rewardgym.envs.families.fetch",
    "rewardgym.envs.families.nethack",
    "rewardgym.envs.families.maniskill",
)

_TASKS: dict[str, TaskSpec] = {}
_BUILTINS_LOADED: list[bool] = []


class UnknownTaskError(KeyError):
    """No task has this id; the message lists the closest ids."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


TASKS_VARIABLE = "REWARDGYM_TASKS"
"""Environment variable naming modules or ``.py`` files that declare tasks (``os.pathsep``-separated);
``rewardgym --tasks`` sets it, so processes the CLI starts (synthesis workers) see the same tasks."""


def all_tasks() -> dict[str, TaskSpec]:
    """Every declared task (available or not), by id: the built-in families, then yours."""
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED.append(True)
        for module_name in FAMILY_MODULES:
            module = importlib.import_module(module_name)
            for spec in module.TASKS:
                if spec.id in _TASKS:
                    raise ValueError(f"task id {spec.id!r} declared twice ({module_name})")
                _TASKS[spec.id] = spec
        load_task_modules(os.environ.get(TASKS_VARIABLE, ""))
    return _TASKS


_LOADED_MODULES: set[str] = set()


def load_task_modules(entries: str | Sequence[str]) -> None:
    """Import modules (``my_pkg.tasks``) or run files (``my_tasks.py``) that call ``register_task``.

    This runs your code: name only files you wrote. Each entry is loaded once per process.

    Raises:
        ValueError: naming the entry that is neither an importable module nor an existing file.
    """
    items = [e for e in (entries.split(os.pathsep) if isinstance(entries, str) else entries) if e and e.strip()]
    for entry in items:
        entry = entry.strip()
        if entry in _LOADED_MODULES:
            continue
        _LOADED_MODULES.add(entry)
        path = Path(entry)
        if entry.endswith(".py"):
            if not path.is_file():
                raise ValueError(f"task module {entry}: no such file")
            name = f"rewardgym_user_tasks_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(entry)
            except ModuleNotFoundError as exc:
                raise ValueError(f"task module {entry!r} cannot be imported ({exc})") from None


def _normalise(name: str) -> str:
    if not name.startswith("rewardgym/"):
        name = "rewardgym/" + name
    if not name.rsplit("-", 1)[-1].startswith("v") or not name.rsplit("-", 1)[-1][1:].isdigit():
        name = name + "-v0"
    return name


def get_task(name: str) -> TaskSpec:
    """The task with id ``name``; also accepts ``Hopper-Backflip`` or ``Hopper-Backflip-v0``.

    Raises:
        UnknownTaskError: no such task; the message lists the closest ids.
    """
    tasks = all_tasks()
    if name in tasks:
        return tasks[name]
    full = _normalise(name)
    if full in tasks:
        return tasks[full]
    lowered = {k.lower(): k for k in tasks}
    if full.lower() in lowered:
        return tasks[lowered[full.lower()]]
    close = difflib.get_close_matches(full, list(tasks), n=5, cutoff=0.4)
    hint = ("closest ids: " + ", ".join(close)) if close else "run `rewardgym list` for all ids"
    raise UnknownTaskError(f"unknown task {name!r}; {hint}")


_LISTENERS: list[Callable[[TaskSpec], None]] = []


def add_task_listener(listener: Callable[[TaskSpec], None]) -> None:
    """Call ``listener(spec)`` for every task declared from now on (the Gymnasium id registration
    lives above this module, in :mod:`rewardgym.wrappers.make`)."""
    _LISTENERS.append(listener)


def add_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Declare a task (built-in families and :func:`rewardgym.envs.declare.register_task` use this).

    Raises:
        ValueError: the id is taken (unless ``replace``) or does not read ``rewardgym/<Name>-v<N>``.
    """
    tasks = all_tasks()
    if not _ID.fullmatch(spec.id):
        raise ValueError(f"task id {spec.id!r} must read rewardgym/<Name>-v<version>, e.g. rewardgym/MyRobot-Reach-v0")
    if spec.id in tasks and not replace:
        raise ValueError(f"task id {spec.id!r} is already declared (by {tasks[spec.id].family!r}); choose another "
                         f"name or version")
    tasks[spec.id] = spec
    for listener in _LISTENERS:
        listener(spec)
    return spec
