"""Expert reward for MetaWorld-PegInsertSide, in the structure of Meta-World's v2 peg-insert-side reward.

Terms (Meta-World v2 ``peg-insert-side``, batched):
  * ``grasp_insert``  hamacher(grasp, in_place): ``grasp`` averages a reach tolerance
                      (|hand - peg grasp point| within 2 cm, margin = initial distance) with the
                      same reach gated by the closing command (action[3] > 0), and is 1 while the
                      peg is held; ``in_place`` = tolerance(goal_error, (0, 0.07), margin =
                      initial goal_error), goal_error weighting the peg head's y/z error to the
                      hole 2x so the peg is aligned with the hole before it is pushed in.
  * ``carry``         1 + 5 * in_place while the peg is held: hand within 8 cm of the grasp
                      point, gripper not fully closed, peg lifted > 1 cm (Meta-World's test).
  * ``success``       tops the reward up to 10 when goal_error <= 0.07 m.
Meta-World additionally multiplies in_place by a box-collision tolerance; it is omitted here.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    reach = tolerance(state.hand_to_obj, -np.inf, 0.02, distance(state.obj_init_pos, state.hand_init_pos),
                      "long_tail")
    closing = np.clip(action[:, 3], 0.0, 1.0)
    gripping = np.where(reach > 0.97, closing, 0.0)
    lifted = state.obj_pos[:, 2] - state.obj_init_pos[:, 2] > 0.01
    held = (state.hand_to_obj < 0.08) & (state.gripper_opening > 0.0) & lifted
    grasp = np.where(held, 1.0, 0.5 * (reach + hamacher(reach, gripping)))
    in_place = tolerance(state.goal_error, -np.inf, 0.07, state.goal_error_init, "long_tail")
    grasp_insert = hamacher(grasp, in_place)
    carry = np.where(held, 1.0 + 5.0 * in_place, 0.0)
    shaped = grasp_insert + carry
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"grasp_insert": grasp_insert, "carry": carry, "success": bonus}
