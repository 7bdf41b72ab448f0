"""Expert reward for MiniHack-River: push boulders into the river to cross it, reach '>'.

The sparse goal (MiniHack's success) and distance progress towards '>' are kept, and the
key skill is rewarded through NetHack's messages: a boulder pushed into water makes "There
is a large splash ..." and fills the pool when it lands in it. Drowning (stepping into deep
water) ends the episode with end_status 1 and is penalised; a small per-step cost favours
short solutions.
"""

import numpy as np


def compute_reward(state, action):
    goal = 1.0 * (state.end_status == 2)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.05 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    splash = 0.2 * np.array([("splash" in m) for m in state.message], dtype=float)
    fill = 0.3 * np.array([("fills" in m) for m in state.message], dtype=float)
    death = -1.0 * (state.end_status == 1)
    step = -0.01 * np.ones_like(approach)
    reward = goal + approach + splash + fill + death + step
    return reward, {"goal": goal, "approach": approach, "splash": splash, "fill": fill,
                    "death": death, "step": step}
