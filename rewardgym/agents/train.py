"""Moved to :mod:`rewardgym.runs.train`; this name is kept so that existing scripts keep working."""

from rewardgym.runs.train import *  # noqa: F401,F403
