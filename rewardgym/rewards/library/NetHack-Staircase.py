"""Expert reward for NetHack-Staircase: find the down staircase and stand on it.

The goal bonus is NLE's own success (standing on '>'). The first level's staircase is
usually out of sight at the start, so the program rewards exploration (new map cells) only
while no '>' is known, a bonus for discovering one, and then potential-like progress
towards it (cells of Chebyshev distance closed per step, capped at one). Steps that take no
game time (menus, bumping walls) cost NLE's -0.01; dying costs the goal's worth.
"""

import numpy as np


def compute_reward(state, action):
    goal = 10.0 * state.on_stairs_down
    seen_before = state.prev.stairs_down_visible
    discover = 1.0 * (state.stairs_down_visible & ~seen_before)
    new_cells = np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 50)
    explore = 0.01 * new_cells * ~seen_before
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.1 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    stall = -0.01 * (state.time == state.prev.time)
    death = -10.0 * (state.end_status == 1)
    reward = goal + discover + explore + approach + stall + death
    return reward, {"goal": goal, "discover": discover, "explore": explore,
                    "approach": approach, "stall": stall, "death": death}
