"""Expert reward for Fetch-PickAndPlace: reach, grasp, carry the cube to the goal.

Staged shaping (reach -> grasp -> place), as in Meta-World's pick-place reward and the
Text2Reward manipulation templates (Xie et al., 2024):
  * ``reach``    1 - tanh(|grip - cube| / 0.1): bring the open gripper to the cube.
  * ``grasp``    +1 while the cube is held: gripper centre within 3 cm of the cube centre
                 and the fingers closed on it (opening between 2 and 7 cm; the cube is 5 cm
                 wide, fully open is 10 cm).
  * ``place``    (1 + 2 * held) * (1 - tanh(|cube - goal| / 0.1)): the cube's distance to the
                 goal, worth three times as much while it is held (goals may be in the air).
  * ``success``  +2 while the cube is within the env's 0.05 m threshold.
"""


def compute_reward(state, action):
    reach = 1.0 - np.tanh(state.grip_to_obj / 0.1)
    held = (state.grip_to_obj < 0.03) & (state.gripper_opening > 0.02) & (state.gripper_opening < 0.07)
    grasp = np.where(held, 1.0, 0.0)
    place = (1.0 + 2.0 * grasp) * (1.0 - np.tanh(state.obj_to_goal / 0.1))
    bonus = np.where(state.success, 2.0, 0.0)
    return reach + grasp + place + bonus, {"reach": reach, "grasp": grasp, "place": place,
                                           "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: gripper near the object, object near the goal, in [0, 3]."""
    return (1.0 - np.tanh(state.grip_to_obj / 0.1)) + 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
