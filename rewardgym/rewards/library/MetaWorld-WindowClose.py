"""Expert reward for MetaWorld-WindowClose: Meta-World's v2 window-close reward, batched.

Terms (Meta-World v2 ``window-close``):
  * ``slide``    9 * hamacher(reach, in_place): ``reach`` = tolerance of the hand's distance
                 to the window handle (within 2 cm, margin = initial distance - 2 cm) and
                 ``in_place`` = tolerance of goal_error, the handle's x distance to the goal
                 (within 5 cm, margin = initial goal_error - 5 cm). The Hamacher product pays for
                 moving the window only while the hand is at its handle.
  * ``reach``    1 * reach, a small term drawing the hand to the handle from the start.
  * ``success``  tops the reward up to 10 when goal_error <= 0.05 m.
Long-tail tolerances (0.1 at the margin), as in Meta-World.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    start = np.abs(distance(state.obj_init_pos, state.hand_init_pos) - 0.02)
    reach = tolerance(state.hand_to_obj, -np.inf, 0.02, start, "long_tail")
    in_place = tolerance(state.goal_error, -np.inf, 0.05, np.abs(state.goal_error_init - 0.05), "long_tail")
    slide = 9.0 * hamacher(reach, in_place)
    shaped = slide + reach
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"slide": slide, "reach": reach, "success": bonus}
