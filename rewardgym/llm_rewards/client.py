"""Moved to :mod:`rewardgym.llm.client`; this name is kept so that existing scripts keep working."""

from rewardgym.llm.client import *  # noqa: F401,F403
