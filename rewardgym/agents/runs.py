"""Moved to :mod:`rewardgym.runs.directory`; this name is kept so that existing scripts keep working."""

from rewardgym.runs.directory import *  # noqa: F401,F403
