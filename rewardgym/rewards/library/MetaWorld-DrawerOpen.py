"""Expert reward for MetaWorld-DrawerOpen: Meta-World's v2 drawer-open reward, batched.

Terms (Meta-World v2 ``drawer-open``):
  * ``caging``   5 * tolerance(|(handle - hand) * (3, 3, 1)|, (0, 0.01), margin = the same
                 quantity at reset): reach the handle, with x/y errors weighted 3x so the hand
                 can hover above the handle and drop down onto it.
  * ``opening``  5 * tolerance(|handle - goal|, (0, 0.02), margin = 0.2 m, the drawer's
                 travel): pull the handle to the goal.
Both long-tail tolerances (0.1 at the margin); the sum is 10 only when both are satisfied.
"""


def long_tail(x, bound, margin):
    """dm_control ``tolerance`` with bounds (0, bound) and the long-tail sigmoid (0.1 at margin)."""
    d = np.maximum(x - bound, 0.0) / np.maximum(margin, 1e-6)
    return 1.0 / ((3.0 * d) ** 2 + 1.0)


def scaled_error(a, b):
    return np.sqrt((3.0 * (a[:, 0] - b[:, 0])) ** 2 + (3.0 * (a[:, 1] - b[:, 1])) ** 2
                   + (a[:, 2] - b[:, 2]) ** 2)


def compute_reward(state, action):
    caging = 5.0 * long_tail(scaled_error(state.obj_pos, state.hand_pos), 0.01,
                             scaled_error(state.obj_init_pos, state.hand_init_pos))
    opening = 5.0 * long_tail(state.goal_error, 0.02, 0.2)
    return caging + opening, {"caging": caging, "opening": opening}
