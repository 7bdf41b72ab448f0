"""Φ(s) = V(s): the value function of a trained rewardgym PPO run as a shaping potential.

Ng et al. (1999) show that Φ = V* makes shaping most helpful; a trained agent's value
estimate approximates it. ``shaping="runs/NAME"`` (or one of its checkpoints) resolves here
(registered as the potential kind ``"value"``). The env must report observations
(:meth:`ValuePotential.requires`), which ``gym.make``/``make_vec`` arrange. Observations are
normalised with the run's frozen statistics; Φ is in the units of the run's (possibly
normalised) return. The run's checkpoint loads as data (``weights_only``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardgym.runs.directory import RunDir
from rewardgym.envs.view import StateView, raw_batch

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec


class ValuePotential:
    """Φ(s) = V(obs) of a trained rewardgym PPO run, ``(B,)`` for a batch of states.

    Args:
        run: a ``rewardgym train`` run directory (algo ``ppo``) or one of its checkpoints.
        task: the task the env runs; must be the run's task.
    """

    def __init__(self, run: Any, task: "TaskSpec"):
        import gymnasium as gym

        from rewardgym.runs.evaluate import RunPolicy

        path = Path(run)
        run_dir = RunDir.open(path.parent.parent if path.is_file() else path)
        config = run_dir.config()
        if config.get("algo") != "ppo":
            raise ValueError(f"{run_dir.path}: a value potential needs a rewardgym PPO run, not algo {config.get('algo')!r}")
        if config.get("task") != task.id:
            raise ValueError(f"{run_dir.path}: the run trained {config.get('task')}, not {task.id}; its value "
                             f"function is no potential for this task")
        env = gym.make_vec(task.id, num_envs=1)
        try:
            self._agent = RunPolicy(run_dir, env).agent
        finally:
            env.close()
        if getattr(self._agent, "_dict_obs", False):
            raise ValueError(f"{run_dir.path}: value potentials support Box observations only")
        self.run = str(run_dir.path)

    def requires(self) -> dict[str, Any]:
        return {"obs": True}

    def __call__(self, state: StateView) -> np.ndarray:
        obs = raw_batch(state).get("obs")
        if obs is None:
            raise ValueError("a value potential needs the observation in the raw batch: make the env with "
                             "gym.make/make_vec (they add it for sources that require it)")
        return self._agent.value(np.asarray(obs, dtype=np.float32)).astype(np.float64)


def resolve_value_potential(spec: str, task: "TaskSpec", *, trusted: bool = False,
                            options: dict[str, Any] | None = None) -> ValuePotential | None:
    """``shaping="runs/NAME"`` (a directory with config.json) or a ``.pt`` checkpoint inside one."""
    path = Path(spec)
    if path.is_dir() or (path.suffix == ".pt" and path.is_file() and path.parent.name == "checkpoints"):
        return ValuePotential(path, task)
    return None
