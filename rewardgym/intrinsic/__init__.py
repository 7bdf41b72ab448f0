"""rewardgym.intrinsic"""
