"""Expert reward for MetaWorld-Push, in the structure of Meta-World's v2 push reward.

Terms (Meta-World v2 ``push``, batched; its pad-caging term is replaced by a reach term):
  * ``reach``    2 * tolerance(|hand - block|, (0, 0.02), margin = initial hand-block distance):
                 bring the closed hand to the block.
  * ``push``     only while the hand is within 5 cm of the block: 1 + 6 * in_place, where
                 in_place = tolerance(|block - goal|, (0, 0.05), margin = initial block-goal
                 distance) rewards moving the block toward the goal while in contact.
  * ``success``  tops the reward up to 10 when the block is within 0.05 m of the goal.
All tolerances are dm_control's long-tail sigmoid (0.1 at the margin), as in Meta-World.
"""


def compute_reward(state, action):
    start = distance(state.obj_init_pos, state.hand_init_pos)
    reach = 2.0 * tolerance(state.hand_to_obj, -np.inf, 0.02, start, "long_tail")
    in_place = tolerance(state.obj_to_goal, -np.inf, 0.05, distance(state.obj_init_pos, state.goal_pos),
                         "long_tail")
    near = np.where(state.hand_to_obj < 0.05, 1.0, 0.0)
    push = near * (1.0 + 6.0 * in_place)
    shaped = reach + push
    bonus = np.where(state.success, 10.0 - shaped, 0.0)
    return shaped + bonus, {"reach": reach, "push": push, "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: hand near the object, object near the goal, in [0, 3]."""
    return (1.0 - np.tanh(state.hand_to_obj / 0.1)) + 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
