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


def long_tail(x, bound, margin):
    """dm_control ``tolerance`` with bounds (0, bound) and the long-tail sigmoid (0.1 at margin)."""
    d = np.maximum(x - bound, 0.0) / np.maximum(margin, 1e-6)
    return 1.0 / ((3.0 * d) ** 2 + 1.0)


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    in_place = long_tail(state.obj_to_goal, 0.04, np.abs(state.goal_error_init - 0.04))
    reach = long_tail(state.hand_to_obj, 0.005,
                     np.abs(distance(state.obj_init_pos, state.hand_init_pos) - 0.005))
    close = 9.0 * hamacher(reach, in_place)
    shaped = close + reach
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"close": close, "reach": reach, "success": bonus}
