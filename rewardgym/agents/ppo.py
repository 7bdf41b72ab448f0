"""Moved to :mod:`rewardgym.learners.ppo`; this name is kept so that existing scripts keep working."""

from rewardgym.learners.ppo import *  # noqa: F401,F403
