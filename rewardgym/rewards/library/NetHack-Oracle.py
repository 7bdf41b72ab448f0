"""Expert reward for NetHack-Oracle: descend to the Oracle (depth 5-9) and stand next to her.

A long-horizon task: the Oracle is several levels down. The program rewards each new
deepest level reached (the main progress signal), exploring and closing in on a known down
staircase while the Oracle is not in view, and closing in on the Oracle once she is. Being
next to her (NLE's success) is the goal. Survival matters over this horizon: lost hit
points and death are penalised, as are steps that take no game time.
"""

import numpy as np


def compute_reward(state, action):
    goal = 10.0 * state.oracle_adjacent
    descend = 2.0 * (state.deepest_level > state.prev.deepest_level)
    no_oracle = state.oracle_distance >= 1000
    new_cells = np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 50)
    explore = 0.005 * new_cells * no_oracle
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    to_stairs = 0.05 * no_oracle * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    seen = (state.oracle_distance < 1000) & (state.prev.oracle_distance < 1000)
    to_oracle = 0.2 * np.where(
        seen, np.clip(state.prev.oracle_distance - state.oracle_distance, -1, 1), 0.0)
    hp_loss = -0.02 * np.maximum(state.prev.hp - state.hp, 0)
    stall = -0.01 * (state.time == state.prev.time)
    death = -10.0 * (state.end_status == 1)
    reward = goal + descend + explore + to_stairs + to_oracle + hp_loss + stall + death
    return reward, {"goal": goal, "descend": descend, "explore": explore, "to_stairs": to_stairs,
                    "to_oracle": to_oracle, "hp_loss": hp_loss, "stall": stall, "death": death}
