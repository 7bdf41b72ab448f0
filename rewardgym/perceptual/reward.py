"""The perceptual reward as a reward source: ``reward="model.pt"`` or ``shaping="model.pt"``.

The source asks the env for camera frames (:meth:`requires`), so ``gym.make`` renders
one ``(H, W, 3)`` frame per env per step from the model's camera; the reward is the
progress φ of the new frame (:meth:`PerceptualModel.progress`), term ``"progress"``.
As a potential (``shaping=``), Φ = φ.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardgym.envs.view import StateView, raw_batch
from rewardgym.perceptual.model import PerceptualModel
from rewardgym.rewards.source import RewardSource, Terms

if TYPE_CHECKING:
    from rewardgym.envs.task import TaskSpec


class PerceptualReward(RewardSource):
    """Reward = progress through the demonstrated steps, read from camera frames.

    Args:
        model: a fitted :class:`PerceptualModel` (or the path of one).
        task: the task the env runs; must be the task of the demonstrations.
        trusted: allow a model file whose encoder is TorchScript (code named by the file).
    """

    name = "perceptual"

    def __init__(self, model: PerceptualModel | str | Path, task: "TaskSpec | None" = None, trusted: bool = False):
        self.path = None if isinstance(model, PerceptualModel) else str(model)
        self.model = model if isinstance(model, PerceptualModel) else PerceptualModel.load(model, trusted=trusted)
        if task is not None and task.id != self.model.task:
            where = f"{self.path}: " if self.path else ""
            raise ValueError(f"{where}perceptual model was fitted on demonstrations of {self.model.task}, "
                             f"not {task.id}")

    def requires(self) -> dict[str, Any]:
        return {"frames": self.model.frame_spec}

    def potential(self, state: StateView) -> np.ndarray:
        """Φ(s) = progress of the state's frame, ``(B,)``."""
        frames = raw_batch(state).get("frame")
        if frames is None:
            raise ValueError("the perceptual reward needs camera frames in the raw batch: make the env with "
                             "gym.make/make_vec (they render frames for sources that require them)")
        return self.model.progress(np.asarray(frames))

    def compute(self, state: StateView, action: Any) -> tuple[Any, Terms]:
        progress = self.potential(state)
        return progress, {"progress": progress}

    def __repr__(self) -> str:
        return f"PerceptualReward({self.path or self.model.task}, K={self.model.num_steps})"


def resolve_perceptual(spec: str, task: "TaskSpec", *, trusted: bool = False,
                       options: dict[str, Any] | None = None) -> PerceptualReward | None:
    """``reward="model.pt"``: a perceptual model file (registered reward kind ``"perceptual"``)."""
    from rewardgym.perceptual.model import is_perceptual_model

    if not spec.endswith(".pt"):
        return None
    if not Path(spec).is_file():
        raise FileNotFoundError(f"perceptual reward model not found: {spec}")
    if not is_perceptual_model(spec):
        raise ValueError(f"{spec}: not a rewardgym perceptual reward model (fit one with `rewardgym demos fit`)")
    return PerceptualReward(spec, task, trusted)


def resolve_perceptual_potential(spec: str, task: "TaskSpec", *, trusted: bool = False,
                                 options: dict[str, Any] | None = None) -> Any:
    """``shaping="model.pt"``: Φ = the model's progress (registered potential kind ``"perceptual"``)."""
    from rewardgym.perceptual.model import is_perceptual_model

    if spec.endswith(".pt") and is_perceptual_model(spec):
        return PerceptualReward(spec, task, trusted).potential
    return None
