"""Expert reward for rewardgym/ManiSkill-PushCube-v0, after ManiSkill's own dense reward:
bring the gripper behind the cube, then push the cube to the goal region."""


def compute_reward(state, action):
    behind = state.obj_pos - np.stack([state.obj_pos[:, 0] * 0.0 + 0.03, state.obj_pos[:, 1] * 0.0,
                                       state.obj_pos[:, 2] * 0.0], axis=-1)
    reach = 1.0 - np.tanh(5.0 * distance(state.tcp_pos, behind))
    push = 1.0 - np.tanh(5.0 * distance(state.obj_pos[:, :2], state.goal_pos[:, :2]))
    bonus = state.task_success * 2.0
    return reach + push + bonus, {"reach": reach, "push": push, "success": bonus}
