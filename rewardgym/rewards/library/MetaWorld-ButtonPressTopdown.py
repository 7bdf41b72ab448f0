"""Expert reward for MetaWorld-ButtonPressTopdown: Meta-World's v2 button-press-topdown reward, batched.

Terms (Meta-World v2 ``button-press-topdown``):
  * ``near``     5 * hamacher(1 - gripper_opening, near_button): a closed fist (a closed
                 gripper presses with a flat surface) within 1 cm of the button top, with a
                 long-tail tolerance whose margin is the initial hand-button distance.
  * ``press``    5 * tolerance(goal_error, (0, 0.005), margin = initial goal_error) while the
                 hand is within 3 cm of the button: push the button top down to the goal height.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    start = distance(state.obj_pos, state.hand_init_pos)
    near_button = tolerance(state.hand_to_obj, -np.inf, 0.01, start, "long_tail")
    near = 5.0 * hamacher(1.0 - state.gripper_opening, near_button)
    pressed = tolerance(state.goal_error, -np.inf, 0.005, state.goal_error_init, "long_tail")
    press = np.where(state.hand_to_obj <= 0.03, 5.0 * pressed, 0.0)
    return near + press, {"near": near, "press": press}
