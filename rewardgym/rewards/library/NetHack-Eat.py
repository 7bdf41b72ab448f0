"""Expert reward for NetHack-Eat: eat to stay fed, without choking.

NLE's Eat reward is the positive change of the nutrition counter. This program keeps that
(scaled so an apple, 50 nutrition, gives 0.5), adds a bonus when the hunger status improves
from Hungry or worse, a per-step cost while Hungry/Weak/Fainting so the agent does not wait
until starving, shaping towards displayed food and corpses, and message-based terms: a
bonus for finishing a meal and a penalty for the overeating warning that precedes choking
("You're having a hard time getting all of it down."). Death costs most.
"""

import numpy as np


def compute_reward(state, action):
    nutrition = 0.01 * np.maximum(state.nutrition - state.prev.nutrition, 0)
    relief = 1.0 * ((state.prev.hunger >= 2) & (state.hunger < state.prev.hunger))
    hungry = -0.02 * (state.hunger >= 2)
    seen = (state.food_distance < 1000) & (state.prev.food_distance < 1000)
    to_food = 0.02 * np.where(seen, np.clip(state.prev.food_distance - state.food_distance, -1, 1), 0.0)
    finished = 0.5 * np.array([("You finish eating" in m) for m in state.message], dtype=float)
    overeating = -2.0 * np.array([("hard time getting all of it down" in m) for m in state.message],
                                 dtype=float)
    stall = -0.001 * (state.time == state.prev.time)
    death = -10.0 * (state.end_status == 1)
    reward = nutrition + relief + hungry + to_food + finished + overeating + stall + death
    return reward, {"nutrition": nutrition, "relief": relief, "hungry": hungry, "to_food": to_food,
                    "finished": finished, "overeating": overeating, "stall": stall, "death": death}
