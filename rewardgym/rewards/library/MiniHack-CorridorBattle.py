"""Expert reward for MiniHack-CorridorBattle: beat the rats in the corridor, reach '>'.

The sparse goal (MiniHack's success) plus the tactics the task is about: a bonus per kill
("You kill ..." message), a cost per hit point lost, and a cost per extra monster adjacent
beyond one (being surrounded in the open room instead of fighting one at a time in the
corridor). Progress to '>' is shaped by the distance change; death costs the goal's worth.
"""

import numpy as np


def compute_reward(state, action):
    goal = 1.0 * (state.end_status == 2)
    kill = 0.2 * np.array([("You kill" in m) or ("You destroy" in m) for m in state.message],
                          dtype=float)
    hp_loss = -0.02 * np.maximum(state.prev.hp - state.hp, 0)
    surrounded = -0.01 * np.maximum(state.monsters_adjacent - 1, 0)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.02 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    death = -1.0 * (state.end_status == 1)
    reward = goal + kill + hp_loss + surrounded + approach + death
    return reward, {"goal": goal, "kill": kill, "hp_loss": hp_loss, "surrounded": surrounded,
                    "approach": approach, "death": death}
