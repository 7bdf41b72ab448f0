"""Moved to :mod:`rewardgym.learners.mappo`; this name is kept so that existing scripts keep working."""

from rewardgym.learners.mappo import *  # noqa: F401,F403
