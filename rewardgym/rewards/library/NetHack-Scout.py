"""Expert reward for NetHack-Scout: explore as much of the dungeon as possible.

NLE's Scout reward counts newly revealed map cells per level. This program uses the
episode total over levels (state.explored_cells_total, never double-counting a level) and
adds a bonus per new deepest level, since a fresh level is where most unexplored cells are;
plus NLE's penalty for steps that take no game time, and a death penalty.
"""

import numpy as np


def compute_reward(state, action):
    new_cells = 0.02 * np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 100)
    descend = 1.0 * (state.deepest_level > state.prev.deepest_level)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    to_stairs = 0.01 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    stall = -0.01 * (state.time == state.prev.time)
    death = -5.0 * (state.end_status == 1)
    reward = new_cells + descend + to_stairs + stall + death
    return reward, {"new_cells": new_cells, "descend": descend, "to_stairs": to_stairs,
                    "stall": stall, "death": death}
