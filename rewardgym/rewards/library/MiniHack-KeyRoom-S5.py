"""Expert reward for MiniHack-KeyRoom-S5: fetch the key, unlock the door, reach '>'.

A three-stage task, rewarded stage by stage: picking up the key (a 'key' appears in the
inventory; the rogue's own 'lock pick' does not count), unlocking the door (NetHack's
"You succeed in unlocking ..." message), then closing in on the staircase once the key is
held and '>' is displayed, and the sparse goal (MiniHack's success, end_status 2). A small
per-step cost favours short solutions.
"""

import numpy as np


def compute_reward(state, action):
    has_key = np.array([any(("key" in item) for item in inv) for inv in state.inventory])
    had_key = np.array([any(("key" in item) for item in inv) for inv in state.prev.inventory])
    got_key = 0.5 * (has_key & ~had_key)
    unlocked = 0.5 * np.array([("You succeed in" in m) for m in state.message], dtype=float)
    known = (state.stairs_down_distance < 1000) & (state.prev.stairs_down_distance < 1000)
    approach = 0.05 * has_key * np.where(
        known, np.clip(state.prev.stairs_down_distance - state.stairs_down_distance, -1, 1), 0.0)
    goal = 1.0 * (state.end_status == 2)
    step = -0.01 * np.ones_like(approach)
    reward = got_key + unlocked + approach + goal + step
    return reward, {"got_key": got_key, "unlocked": unlocked, "approach": approach,
                    "goal": goal, "step": step}
