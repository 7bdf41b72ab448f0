"""Expert reward for ManiSkill-PegInsertionSide: grasp the peg, line it up with the hole, push it in.

Written from the task's physics, in the hole's frame (``head_in_goal``: x along the hole's
axis, 0 at its mouth; the peg is in once x >= -0.015 m with |y|, |z| within the hole radius,
which leaves 3 mm of clearance). A peg enters a hole with 3 mm clearance only when it is
held (``is_grasped``), parallel to the hole's axis, and its head is on that axis before it
moves along it; pushing while off-axis jams the head against the box. The peg's own axis is
its local x axis (the head is at +x). Episodes end on success: terms are costs (<= 0).
  * ``reach``    -|tcp - peg centre| (the fingers close around the peg's middle);
  * ``grasp``    -0.5 while the peg is not held;
  * ``align``    -(1 - cos angle(peg axis, hole axis)), while held;
  * ``centre``   -3 sqrt(y^2 + z^2) of the head in the hole frame, while held;
  * ``insert``   -3 max(0, -0.015 - x) of the head (distance still to go along the axis), only
                 once the head is within one hole radius of the axis (else it would jam);
  * ``success``  +10 on the step the peg is in.
"""


def peg_axis(q):
    """(B, 3) the object's local x axis in the world frame, from quaternions (w, x, y, z)."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)], axis=-1)


def compute_reward(state, action):
    held = state.is_grasped
    reach = -state.tcp_to_obj
    grasp = np.where(held, 0.0, -0.5)
    cos = np.sum(peg_axis(state.obj_quat) * peg_axis(state.goal_quat), axis=-1)
    align = np.where(held, -(1.0 - cos), -2.0)
    h = state.head_in_goal
    off_axis = np.sqrt(h[:, 1] ** 2 + h[:, 2] ** 2)
    centre = np.where(held, -3.0 * off_axis, -3.0 * 0.3)
    to_go = np.maximum(-0.015 - h[:, 0], 0.0)
    insert = np.where(held & (off_axis < state.goal_radius), -3.0 * to_go, -3.0 * 0.3)
    bonus = np.where(state.success, 10.0, 0.0)
    return reach + grasp + align + centre + insert + bonus, {
        "reach": reach, "grasp": grasp, "align": align, "centre": centre, "insert": insert, "success": bonus}


def compute_success(state):
    h = state.head_in_goal
    return (h[:, 0] >= -0.015) & (np.abs(h[:, 1]) <= state.goal_radius) & (np.abs(h[:, 2]) <= state.goal_radius)
