"""Expert reward for MetaWorld-PickPlace, in the structure of Meta-World's v2 pick-place reward.

Terms (Meta-World v2 ``pick-place``, batched):
  * ``grasp_place``  hamacher(grasp, in_place): ``grasp`` averages a reach tolerance
                     (|hand - block| within 2 cm, margin = initial distance) with the same
                     reach gated by the closing command (action[3] > 0 once the hand cages the
                     block), as Meta-World's caging-and-gripping term; ``in_place`` =
                     tolerance(|block - goal|, (0, 0.05), margin = initial block-goal distance).
  * ``carry``        1 + 5 * in_place while the block is held: hand within 2 cm of the block,
                     gripper not fully closed (closed on the block), block lifted > 1 cm.
  * ``success``      tops the reward up to 10 when the block is within 0.07 m of the goal.
The Hamacher product (t-norm a*b / (a + b - a*b)) rewards placing only with a grasp.
"""


def hamacher(a, b):
    denom = a + b - a * b
    return np.where(denom > 0.0, a * b / np.maximum(denom, 1e-12), 0.0)


def compute_reward(state, action):
    reach = tolerance(state.hand_to_obj, -np.inf, 0.02, distance(state.obj_init_pos, state.hand_init_pos),
                      "long_tail")
    closing = np.clip(action[:, 3], 0.0, 1.0)
    gripping = np.where(reach > 0.97, closing, 0.0)
    grasp = 0.5 * (reach + hamacher(reach, gripping))
    in_place = tolerance(state.obj_to_goal, -np.inf, 0.05, distance(state.obj_init_pos, state.goal_pos),
                         "long_tail")
    grasp_place = hamacher(grasp, in_place)
    lifted = state.obj_pos[:, 2] - state.obj_init_pos[:, 2] > 0.01
    held = (state.hand_to_obj < 0.02) & (state.gripper_opening > 0.0) & lifted
    carry = np.where(held, 1.0 + 5.0 * in_place, 0.0)
    shaped = grasp_place + carry
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"grasp_place": grasp_place, "carry": carry, "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: hand near the object, object near the goal, in [0, 3]."""
    return (1.0 - np.tanh(state.hand_to_obj / 0.1)) + 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
