"""Moved to :mod:`rewardgym.runs.sb3`; this name is kept so that existing scripts keep working."""

from rewardgym.runs.sb3 import *  # noqa: F401,F403
