"""Judge rewards before training on them: EPIC and STARC distances, alignment with the success
test, hacking flags (``rewardgym analyze``; docs/ANALYSIS.md).

>>> from rewardgym.analysis import analyze, reward_distance
>>> reward_distance("Fetch-Reach", "my_reward.py", "expert", method="epic")   # doctest: +SKIP
"""

from rewardgym.analysis.coverage import Coverage, collect_coverage
from rewardgym.analysis.distance import CanonicalReward, pearson_distance
from rewardgym.analysis.report import AnalysisReport, ProgramAnalysis, analyze, reward_distance

__all__ = ["AnalysisReport", "CanonicalReward", "Coverage", "ProgramAnalysis", "analyze", "collect_coverage",
           "pearson_distance", "reward_distance"]
