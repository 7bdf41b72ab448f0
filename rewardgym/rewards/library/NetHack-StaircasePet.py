"""Expert reward for NetHack-StaircasePet: reach '>' with the pet next to the hero.

Success is NLE's: on a down staircase with a pet in an adjacent cell. The hard part is the
pet: kittens wander. The program therefore uses the Staircase shaping (explore until a '>'
is known, then close the distance) and adds pet terms: a small cost per cell of distance
to the pet beyond adjacency (and for losing sight of it), and a small reward for waiting on
the stairs while the pet is still on its way, so the agent learns to wait rather than leave.
"""

import numpy as np


def compute_reward(state, action):
    goal = 10.0 * (state.on_stairs_down & state.pet_adjacent)
    seen_before = state.prev.stairs_down_visible
    discover = 1.0 * (state.stairs_down_visible & ~seen_before)
    new_cells = np.clip(state.explored_cells_total - state.prev.explored_cells_total, 0, 50)
    explore = 0.01 * new_cells * ~seen_before
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.1 * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    pet_far = -0.005 * np.clip(state.pet_distance - 1, 0, 10)
    wait_for_pet = 0.02 * (state.on_stairs_down & ~state.pet_adjacent & (state.pet_distance < 1000))
    stall = -0.01 * (state.time == state.prev.time)
    death = -10.0 * (state.end_status == 1)
    reward = goal + discover + explore + approach + pet_far + wait_for_pet + stall + death
    return reward, {"goal": goal, "discover": discover, "explore": explore, "approach": approach,
                    "pet_far": pet_far, "wait_for_pet": wait_for_pet, "stall": stall,
                    "death": death}
