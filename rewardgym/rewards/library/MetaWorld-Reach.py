"""Expert reward for MetaWorld-Reach: Meta-World's own v2 reach reward, batched.

Meta-World v2/v3 ``reach`` (Yu et al., 2019; reward v2 of the v2 release) rewards the
tool centre point for being within 5 cm of the goal, with a long-tailed tolerance whose
margin is the hand's initial distance to the goal, so the gradient never vanishes:

    reward = 10 * tolerance(|hand - goal|, bounds=(0, 0.05), margin=|hand_init - goal|, long_tail)

The reward is 10 exactly when the success test holds (hand within 0.05 m of the goal).
"""


def compute_reward(state, action):
    margin = distance(state.hand_init_pos, state.goal_pos)
    in_place = tolerance(state.hand_to_goal, -np.inf, 0.05, margin, "long_tail")
    reward = 10.0 * in_place
    return reward, {"in_place": reward}


def compute_potential(state):
    """Φ(s) for potential-based shaping: the dense reach term, in [0, 10]."""
    margin = distance(state.hand_init_pos, state.goal_pos)
    return 10.0 * tolerance(state.hand_to_goal, -np.inf, 0.05, margin, "long_tail")
