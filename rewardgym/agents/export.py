"""Moved to :mod:`rewardgym.runs.export`; this name is kept so that existing scripts keep working."""

from rewardgym.runs.export import *  # noqa: F401,F403
