"""The task registry: every ``rewardgym/<Family>-<Task>-v0`` id and its :class:`TaskSpec`.

Family modules (``rewardgym.envs.families.*``) declare ``TASKS: list[TaskSpec]`` without
importing their simulator; simulators are imported when an env is made, so
``import rewardgym`` stays fast and a missing optional simulator never breaks it.
"""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym

from rewardgym.envs.task import TaskSpec

FAMILY_MODULES = (
    "rewardgym.envs.families.locomotion",
    "rewardgym.envs.families.metaworld",
    "rewardgym.envs.families.fetch",
    "rewardgym.envs.families.nethack",
    "rewardgym.envs.families.maniskill",
)

_TASKS: dict[str, TaskSpec] = {}


class UnknownTaskError(KeyError):
    """No task has this id; the message lists the closest ids."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def all_tasks() -> dict[str, TaskSpec]:
    """Every declared task (available or not), by id, in family order."""
    if not _TASKS:
        for module_name in FAMILY_MODULES:
            module = importlib.import_module(module_name)
            for spec in module.TASKS:
                if spec.id in _TASKS:
                    raise ValueError(f"task id {spec.id!r} declared twice ({module_name})")
                _TASKS[spec.id] = spec
    return _TASKS


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


def register_all() -> None:
    """Register every task id with Gymnasium (``gym.make`` / ``gym.make_vec``)."""
    for spec in all_tasks().values():
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point="rewardgym.envs.make:make_env",
            vector_entry_point="rewardgym.envs.make:make_vec_env",
            kwargs={"task_id": spec.id},
            # The base env applies its own time limit beneath the reward wrapper, so the
            # wrapper sees truncations; gym.make must not add a second TimeLimit on top.
            max_episode_steps=None,
        )
