"""Expert reward for ManiSkill-StackCube: pick up cube A, set it on cube B, let go.

Written from the task's physics. Cube A (4 cm) rests on cube B only when its centre is one
cube height (0.04 m) above B's centre and within 3.3 cm of it in x-y (``goal_pos`` is that
point); the success test then asks that it lie still and that the gripper no longer hold
it, so after placing, the fingers must open. Episodes end on success: shaping terms are
costs (<= 0), success adds a bonus.
  * ``reach``    -|tcp - cube A| until A is placed;
  * ``grasp``    -0.5 while A is neither held nor placed;
  * ``place``    -3 |A - goal| (3-D);
  * ``release``  once A is within the success tolerance: -0.5 (1 - gripper_width / 0.08)
                 (open the fingers) and -0.5 while A is still held;
  * ``success``  +10 on the step A rests on B, static and released.
"""


def compute_reward(state, action):
    offset = state.obj_pos - state.goal_pos
    placed = (np.sqrt(offset[:, 0] ** 2 + offset[:, 1] ** 2) <= state.goal_radius) & \
        (np.abs(offset[:, 2]) <= 0.005)
    held = state.is_grasped
    reach = np.where(placed, 0.0, -state.tcp_to_obj)
    grasp = np.where(held | placed, 0.0, -0.5)
    place = -3.0 * state.obj_to_goal
    release = np.where(placed, -0.5 * (1.0 - state.gripper_width / 0.08) - 0.5 * held, 0.0)
    bonus = np.where(state.success, 10.0, 0.0)
    return reach + grasp + place + release + bonus, {"reach": reach, "grasp": grasp, "place": place,
                                                     "release": release, "success": bonus}
