"""Reach reward for PlanarArm-Reach: get close, then stay still on the target."""


def compute_reward(state, action):
    d = distance(state.hand_pos, state.target_pos)
    reach = 1.0 - np.tanh(10.0 * d)
    on_target = tolerance(d, 0.0, 0.02)
    still = -0.01 * sum_sq(state.joint_vel) * on_target
    ctrl = -0.01 * sum_sq(action)
    return reach + on_target + still + ctrl, {"reach": reach, "on_target": on_target, "still": still, "ctrl": ctrl}


def compute_potential(state):
    return -distance(state.hand_pos, state.target_pos)
