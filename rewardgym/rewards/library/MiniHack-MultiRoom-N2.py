"""Expert reward for MiniHack-MultiRoom-N2: go through the door into the next room, reach '>'.

The sparse goal (MiniHack's success) plus: exploration of new cells (the second room and
'>' are unseen at the start), a bonus when a door opens ("The door opens."), distance
progress towards '>' once it is displayed, and a per-step cost (the episode has only 40
steps).
"""

import numpy as np


def compute_reward(state, action):
    goal = 1.0 * (state.end_status == 2)
    explore = 0.01 * np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 30)
    door = 0.2 * np.array([("The door opens" in m) for m in state.message], dtype=float)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.1 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    step = -0.01 * np.ones_like(approach)
    reward = goal + explore + door + approach + step
    return reward, {"goal": goal, "explore": explore, "door": door, "approach": approach,
                    "step": step}
