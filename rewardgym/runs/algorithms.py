"""The algorithms a run can be trained with, as data: what ``train``, ``eval`` and ``export``
dispatch on instead of testing algorithm names.

Each :class:`Algorithm` says which learner trains it (rewardgym's PPO or Stable-Baselines3),
whether it trains a multi-agent task's agent vector env (IPPO, MAPPO) and whether its critic
reads the global state (MAPPO), and whether ``rewardgym export`` can export its policy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """One ``--algo``.

    Attributes:
        name: the ``--algo`` value (written to ``config.json``).
        learner: ``"ppo"`` (:mod:`rewardgym.learners.ppo`) or ``"sb3"`` (Stable-Baselines3 PPO).
        multi_agent: trains the agent vector env of a multi-agent task (one sub-env per agent).
        global_state: the critic reads the task's global state (MAPPO).
        exportable: ``rewardgym export`` writes its policy as ONNX/TorchScript.
        checkpoint_suffixes: checkpoint file suffixes it reads (SB3 also reads its old ``.zip``).
    """

    name: str
    learner: str
    multi_agent: bool = False
    global_state: bool = False
    exportable: bool = False
    checkpoint_suffixes: tuple[str, ...] = (".pt",)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("ppo", "ppo", exportable=True),
    Algorithm("sb3-ppo", "sb3", checkpoint_suffixes=(".pt", ".zip")),
    Algorithm("ippo", "ppo", multi_agent=True),
    Algorithm("mappo", "ppo", multi_agent=True, global_state=True),
)}


def get_algorithm(name: object, where: str = "--algo") -> Algorithm:
    """The algorithm called ``name``; a ValueError naming ``where`` and the choices otherwise."""
    algorithm = ALGORITHMS.get(name) if isinstance(name, str) else None
    if algorithm is None:
        raise ValueError(f"{where}: unknown algorithm {str(name)[:40]!r}; choose one of {', '.join(ALGORITHMS)}")
    return algorithm
