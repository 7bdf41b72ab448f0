"""Wrappers that inject rewards into environments."""

from rewardgym.wrappers.inject import RewardInjection, VectorRewardInjection

__all__ = ["RewardInjection", "VectorRewardInjection"]
