"""Expert reward for NetHack-Gold: collect gold.

NLE's Gold reward is the change in carried gold (gold is auto-picked up in that task).
Gold piles are sparse, so the program adds shaping towards the nearest displayed '$'
(cells closed per step), exploration of new cells, and a bonus for reaching a new deepest
level (deeper levels hold larger piles). Steps without game time and death are penalised.
"""

import numpy as np


def compute_reward(state, action):
    gold = 0.1 * (state.gold - state.prev.gold)
    seen = (state.gold_distance < 1000) & (state.prev.gold_distance < 1000)
    to_gold = 0.1 * np.where(seen, np.clip(state.prev.gold_distance - state.gold_distance, -1, 1), 0.0)
    explore = 0.01 * np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 50)
    descend = 1.0 * (state.deepest_level > state.prev.deepest_level)
    stall = -0.01 * (state.time == state.prev.time)
    death = -5.0 * (state.end_status == 1)
    reward = gold + to_gold + explore + descend + stall + death
    return reward, {"gold": gold, "to_gold": to_gold, "explore": explore, "descend": descend,
                    "stall": stall, "death": death}
