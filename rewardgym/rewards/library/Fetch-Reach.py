"""Expert reward for Fetch-Reach: a bounded dense distance reward plus a success bonus.

The dense variant of the Fetch tasks (Plappert et al., 2018) is the negative goal distance;
here the distance is squashed, 1 - tanh(d / 0.1), so the reward is bounded in [0, 1], is
steepest near the goal (precise final approach) and still informative 0.3 m away:
  * ``reach``    1 - tanh(|grip - goal| / 0.1)
  * ``success``  +1 while the gripper is within the env's 0.05 m threshold.
"""


def compute_reward(state, action):
    reach = 1.0 - np.tanh(state.grip_to_goal / 0.1)
    bonus = np.where(state.success, 1.0, 0.0)
    return reach + bonus, {"reach": reach, "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: closeness of the gripper to the goal, in [0, 1]."""
    return 1.0 - np.tanh(state.grip_to_goal / 0.1)
