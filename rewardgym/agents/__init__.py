"""rewardgym.agents"""
