"""Expert reward for Walker2d-Walk: Walker2d-v5's own reward, written as named terms.

Gymnasium's Walker2d-v5 reward (Erez, Tassa and Todorov, 2011):
  * ``forward``  +1.0 x forward velocity, the torso's x displacement over this step divided
                 by the step duration (m/s): walking forward is the task.
  * ``healthy``  +1.0 while the walker is "healthy" (torso between 0.8 and 2 m high,
                 tilted less than 1 rad): a survival bonus that keeps it upright.
  * ``ctrl``     -0.001 x sum of squared actions: discourages wasteful torques.
The sum equals the base env's reward (``env_reward``) up to floating-point rounding.
"""


def compute_reward(state, action):
    forward = 1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    healthy = np.where(state.healthy, 1.0, 0.0)
    ctrl = -1e-3 * np.sum(action * action, axis=-1)
    return forward + healthy + ctrl, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
