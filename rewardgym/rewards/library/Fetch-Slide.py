"""Expert reward for Fetch-Slide: strike the puck from behind so it slides to the goal.

  * ``approach``  0.5 * (1 - tanh(|grip - p| / 0.1)), p the striking point 5 cm behind the
                  puck on the line goal -> puck (at the puck's height); only while the puck is
                  still more than 10 cm from the goal.
  * ``launch``    0.5 * clip(v . u, 0, 1): the puck's velocity (m/s) toward the goal (u the
                  unit vector puck -> goal in the table plane), only while the puck is more
                  than 10 cm from the goal so that it is not rewarded for overshooting.
  * ``slide``     3 * (1 - tanh(|puck - goal| / 0.15)): the puck's distance to the goal.
  * ``success``   +1 while the puck is within the env's 0.05 m threshold.
"""


def compute_reward(state, action):
    obj = state.obj_pos
    gx = state.goal_pos[:, 0] - obj[:, 0]
    gy = state.goal_pos[:, 1] - obj[:, 1]
    gn = np.maximum(np.sqrt(gx ** 2 + gy ** 2), 1e-6)
    ux = gx / gn
    uy = gy / gn
    grip = state.grip_pos
    d_strike = np.sqrt((grip[:, 0] - obj[:, 0] + 0.05 * ux) ** 2
                       + (grip[:, 1] - obj[:, 1] + 0.05 * uy) ** 2 + (grip[:, 2] - obj[:, 2]) ** 2)
    far = state.obj_to_goal > 0.1
    approach = np.where(far, 0.5 * (1.0 - np.tanh(d_strike / 0.1)), 0.0)
    v_goal = state.obj_vel[:, 0] * ux + state.obj_vel[:, 1] * uy
    launch = np.where(far, 0.5 * np.clip(v_goal, 0.0, 1.0), 0.0)
    slide = 3.0 * (1.0 - np.tanh(state.obj_to_goal / 0.15))
    bonus = np.where(state.success, 1.0, 0.0)
    return approach + launch + slide + bonus, {"approach": approach, "launch": launch,
                                               "slide": slide, "success": bonus}


def compute_potential(state):
    """Φ(s) for potential-based shaping: gripper near the object, object near the goal, in [0, 3]."""
    return (1.0 - np.tanh(state.grip_to_obj / 0.1)) + 2.0 * (1.0 - np.tanh(state.obj_to_goal / 0.1))
