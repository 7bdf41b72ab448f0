"""rewardgym.cli"""
