"""Moved to :mod:`rewardgym.learners.policies`; this name is kept so that existing scripts keep working."""

from rewardgym.learners.policies import *  # noqa: F401,F403
