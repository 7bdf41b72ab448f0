"""Expert reward for MetaWorld-DrawerClose, in the structure of Meta-World's v2 drawer-close reward.

Terms (Meta-World v2 ``drawer-close``, batched):
  * ``close``    9 * hamacher(reach, in_place): ``reach`` = tolerance of the hand's distance
                 to the drawer front (within 5 mm, margin = initial distance; long-tail rather
                 than Meta-World's gaussian, so it stays informative far away) and
                 ``in_place`` = long-tail tolerance of the front's distance to the closed
                 position (within 4 cm, margin = initial distance - 4 cm). The Hamacher product
                 pays for closing only while the hand is at the drawer (Meta-World also gates
                 reach by the gripper command; that gate is dropped here, it is irrelevant to
                 pushing).
  * ``reach``    1 * reach, a small term so the hand is drawn to the drawer from the start.
  * ``success``  tops the reward up to 10 when the front is within 0.065 m of the goal.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    in_place = tolerance(state.obj_to_goal, -np.inf, 0.04, np.abs(state.goal_error_init - 0.04), "long_tail")
    start = np.abs(distance(state.obj_init_pos, state.hand_init_pos) - 0.005)
    reach = tolerance(state.hand_to_obj, -np.inf, 0.005, start, "long_tail")
    close = 9.0 * hamacher(reach, in_place)
    shaped = close + reach
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"close": close, "reach": reach, "success": bonus}
