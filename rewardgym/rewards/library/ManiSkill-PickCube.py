"""Expert reward for ManiSkill-PickCube: grasp the cube, carry it to the goal, hold still.

Written from the task's physics. The cube can only follow the goal (which may be in the air)
while both fingers squeeze it (``is_grasped``), and the success test also asks the arm to be
still (every joint < 0.2 rad/s), so a policy must slow down once the cube is there. The
episode ends on success, so the shaping terms are costs (<= 0) and success adds a bonus.
  * ``reach``    -|tcp - cube|: bring the fingers around the cube;
  * ``grasp``    -0.5 while the cube is not held, and -0.5 * gripper_width / 0.08 near the
                 cube (within 2 cm) to close the fingers on it;
  * ``carry``    -3 |cube - goal| (3-D; the test: <= 0.025 m);
  * ``still``    -0.1 |arm joint velocities| once the cube is within 5 cm of the goal;
  * ``success``  +10 on the step the cube is at the goal with the arm still.
"""


def compute_reward(state, action):
    reach = -state.tcp_to_obj
    held = state.is_grasped
    close = np.where(state.tcp_to_obj < 0.02, state.gripper_width / 0.08, 0.0)
    grasp = np.where(held, 0.0, -0.5 - 0.5 * close)
    carry = -3.0 * state.obj_to_goal
    near = state.obj_to_goal < 0.05
    still = np.where(near, -0.1 * norm(state.qvel[:, :7]), 0.0)
    bonus = np.where(state.success, 10.0, 0.0)
    return reach + grasp + carry + still + bonus, {"reach": reach, "grasp": grasp, "carry": carry,
                                                   "still": still, "success": bonus}


def compute_potential(state):
    """Φ(s) <= 0: fingers at the cube, cube held, cube at the goal."""
    return -state.tcp_to_obj - 0.5 * (1.0 - state.is_grasped) - 3.0 * state.obj_to_goal
