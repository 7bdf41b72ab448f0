"""Expert reward for rewardgym/ManiSkill-PickCube-v0, after ManiSkill's own dense reward:
reach the cube, grasp it, carry it to the goal; a bonus on success."""


def compute_reward(state, action):
    reach = 1.0 - np.tanh(5.0 * state.tcp_to_obj)
    grasped = state.is_grasped * 1.0
    place = grasped * (1.0 - np.tanh(5.0 * state.obj_to_goal))
    bonus = state.task_success * 2.0
    return reach + grasped + place + bonus, {"reach": reach, "grasp": grasped, "place": place,
                                             "success": bonus}
