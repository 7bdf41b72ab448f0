"""Moved to :mod:`rewardgym.runs.evaluate`; this name is kept so that existing scripts keep working."""

from rewardgym.runs.evaluate import *  # noqa: F401,F403
