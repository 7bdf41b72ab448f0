"""Expert reward for NetHack-Score: the in-game score, plus the habits that raise it.

NLE's Score task rewards the change of the bottom-line score (Küttler et al., 2020). The
score grows by experience (kills), gold and 50 points per new dungeon level, so an agent
that learns from it alone mostly learns to fight near the start. This program keeps the
score delta as the main term (scaled to ~0.1 per point) and adds small, standard shaping
terms used in NLE agents: new map cells explored (curiosity about the level), getting
closer to a known down staircase (descending is worth 50 points), a penalty for actions
that take no game time (menu loops, walking into walls; NLE's own step penalty), a penalty
for lost hit points and a large one for dying (a dead hero scores nothing more).
"""

import numpy as np


def compute_reward(state, action):
    score = 0.1 * (state.score - state.prev.score)
    explore = 0.01 * np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 50)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach_stairs = 0.02 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    stall = -0.01 * (state.time == state.prev.time)
    hp_loss = -0.05 * np.maximum(state.prev.hp - state.hp, 0)
    death = -10.0 * (state.end_status == 1)
    reward = score + explore + approach_stairs + stall + hp_loss + death
    return reward, {"score": score, "explore": explore, "approach_stairs": approach_stairs,
                    "stall": stall, "hp_loss": hp_loss, "death": death}
