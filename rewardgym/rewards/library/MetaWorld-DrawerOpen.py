"""Expert reward for MetaWorld-DrawerOpen: Meta-World's v2 drawer-open reward, batched.

Terms (Meta-World v2 ``drawer-open``):
  * ``caging``   5 * tolerance(|(handle - hand) * (3, 3, 1)|, (0, 0.01), margin = the same
                 quantity at reset): reach the handle, with x/y errors weighted 3x so the hand
                 can hover above the handle and drop down onto it.
  * ``opening``  5 * tolerance(|handle - goal|, (0, 0.02), margin = 0.2 m, the drawer's
                 travel): pull the handle to the goal.
Both long-tail tolerances (0.1 at the margin); the sum is 10 only when both are satisfied.
"""


def scaled_error(a, b):
    return np.sqrt((3.0 * (a[:, 0] - b[:, 0])) ** 2 + (3.0 * (a[:, 1] - b[:, 1])) ** 2
                   + (a[:, 2] - b[:, 2]) ** 2)


def compute_reward(state, action):
    start = scaled_error(state.obj_init_pos, state.hand_init_pos)
    caging = 5.0 * tolerance(scaled_error(state.obj_pos, state.hand_pos), -np.inf, 0.01, start, "long_tail")
    opening = 5.0 * tolerance(state.goal_error, -np.inf, 0.02, 0.2, "long_tail")
    return caging + opening, {"caging": caging, "opening": opening}
