"""Moved to :mod:`rewardgym.learners.normalize`; this name is kept so that existing scripts keep working."""

from rewardgym.learners.normalize import *  # noqa: F401,F403
