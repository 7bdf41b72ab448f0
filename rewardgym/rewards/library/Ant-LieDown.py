"""Expert reward for Ant-LieDown: lower the body, belly down, and rest.

Pose-and-stillness shaping (dm_control-style bounded terms; Tassa et al., 2018), gated on
staying belly-down, because a flailing Ant usually ends on its back:
  * ``low``      level x how far the torso has come down from its spawn height (0.75 m)
                 to the lowest upright resting height (0.38 m), in [0, 1].
  * ``still``    level x 0.5 / (1 + (speed / 0.1 m/s)^2): resting, not sliding or bouncing.
  * ``level``    is clip(torso_up, 0, 1): 1 belly-down and level, 0 on its side or back.
  * ``success``  +2 while the success test holds (low, level and at rest).
  * ``ctrl``     -0.05 x sum of squared actions: lying still needs little torque.
"""


def compute_reward(state, action):
    level = np.clip(state.torso_up, 0.0, 1.0)
    low = level * np.clip((0.75 - state.torso_height) / (0.75 - 0.38), 0.0, 1.0)
    speed = np.sqrt(np.sum(state.torso_lin_vel * state.torso_lin_vel, axis=-1))
    still = level * 0.5 / (1.0 + (speed / 0.1) ** 2)
    bonus = np.where(state.success, 2.0, 0.0)
    ctrl = -0.05 * np.sum(action * action, axis=-1)
    return low + still + bonus + ctrl, {"low": low, "still": still, "success": bonus, "ctrl": ctrl}
