"""Perceptual rewards from a few demonstrations (Sermanet, Xu & Levine 2016).

``demos`` records demonstrations (frames + states), ``features`` turns frames into
features (time-contrastive encoder or a pretrained network), ``model`` discovers the
task's steps and fits per-step classifiers, ``reward`` exposes the result as a reward
source. Command line: ``rewardgym demos collect|fit|show``.
"""

from rewardgym.perceptual.demos import DemoError, Demos, collect
from rewardgym.perceptual.model import PerceptualModel
from rewardgym.perceptual.reward import PerceptualReward

__all__ = ["DemoError", "Demos", "PerceptualModel", "PerceptualReward", "collect"]
