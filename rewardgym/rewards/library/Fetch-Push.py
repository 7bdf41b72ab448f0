"""Expert reward for Fetch-Push: approach the cube from behind, then push it to the goal.

Staged shaping in the style of the Fetch dense rewards (Plappert et al., 2018) and of
manipulation reward templates (Text2Reward, Xie et al., 2024):
  * ``approach``  0.5 * (1 - tanh(|grip - p| / 0.1)), p the pushing point 6 cm behind the cube
                  on the line goal -> cube (at the cube's height), so the locked gripper
                  arrives on the side from which pushing moves the cube toward the goal.
  * ``push``      2 * (1 - tanh(|cube - goal| / 0.1)): the cube's distance to the goal.
  * ``success``   +1 while the cube is within the env's 0.05 m threshold.
"""


def compute_reward(state, action):
    obj = state.obj_pos
    gx = state.goal_pos[:, 0] - obj[:, 0]
    gy = state.goal_pos[:, 1] - obj[:, 1]
    gn = np.maximum(np.sqrt(gx ** 2 + gy ** 2), 1e-6)
    px = obj[:, 0] - 0.06 * gx / gn
    py = obj[:, 1] - 0.06 * gy / gn
    grip = state.grip_pos
    d_push = np.sqrt((grip[:, 0] - px) ** 2 + (grip[:, 1] - py) ** 2 + (grip[:, 2] - obj[:, 2]) ** 2)
    approach = 0.5 * (1.0 - np.tanh(d_push / 0.1))
    push = 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
    bonus = np.where(state.success, 1.0, 0.0)
    return approach + push + bonus, {"approach": approach, "push": push, "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: gripper near the object, object near the goal, in [0, 3]."""
    return (1.0 - np.tanh(state.grip_to_obj / 0.1)) + 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
