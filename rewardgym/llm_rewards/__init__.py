"""rewardgym.llm_rewards"""
