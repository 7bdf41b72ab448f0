"""Expert reward for MetaWorld-DoorOpen, in the structure of Meta-World's v2 door-open reward.

Terms (Meta-World v2 ``door-open``, batched):
  * ``ready``    2 * hamacher(ready_to_open, grab_effort): ``ready_to_open`` is the Hamacher
                 product of (a) staying above a log-shaped "floor" funnel centred 5 cm inside
                 the handle (so the hand comes down onto the handle instead of into the door)
                 and (b) a tolerance on the hand's distance to the pulling point just behind
                 the handle (obj_pos + (0, 0.03, -0.01) m, within 6 cm, margin 0.5 m);
                 grab_effort = (action[3] + 1) / 2.
  * ``opened``   8 * (0.2 * [the handle has moved 2 cm toward the goal] + 0.8 * tolerance of
                 goal_error, the handle's x distance to the goal, margin = its initial value).
                 Meta-World measures the hinge angle; goal_error is the quantity its success
                 test thresholds, and it shrinks as the door swings open.
  * ``success``  tops the reward up to 10 when goal_error <= 0.08 m.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    hand = state.hand_pos
    handle = state.obj_pos
    # Floor funnel around a point 5 cm inside the handle (Meta-World's `_reward_pos`).
    radius = np.sqrt((hand[:, 0] - handle[:, 0] + 0.05) ** 2 + (hand[:, 1] - handle[:, 1]) ** 2)
    floor = np.where(radius <= 0.12, 0.0, 0.04 * np.log(np.maximum(radius - 0.12, 1e-6)) + 0.4)
    below = floor - hand[:, 2]
    floor_margin = np.maximum(floor, 1e-3) / 2.0
    above_floor = np.where(below <= 0.0, 1.0, tolerance(below, -np.inf, 0.01, floor_margin, "long_tail"))
    dx = hand[:, 0] - handle[:, 0]
    dy = hand[:, 1] - handle[:, 1] - 0.03
    dz = hand[:, 2] - handle[:, 2] + 0.01
    in_place = tolerance(np.sqrt(dx ** 2 + dy ** 2 + dz ** 2), -np.inf, 0.06, 0.5, "long_tail")
    ready_to_open = hamacher(above_floor, in_place)
    grab = (np.clip(action[:, 3], -1.0, 1.0) + 1.0) / 2.0
    ready = 2.0 * hamacher(ready_to_open, grab)
    started = np.where(state.goal_error < state.goal_error_init - 0.02, 1.0, 0.0)
    opening = tolerance(state.goal_error, -np.inf, 0.0, state.goal_error_init, "long_tail")
    opened = 8.0 * (0.2 * started + 0.8 * opening)
    shaped = ready + opened
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"ready": ready, "opened": opened, "success": bonus}
