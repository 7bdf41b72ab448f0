"""Expert reward for Walker2d-Backward: Walker2d-v5's reward with the direction reversed.

The standard locomotion structure (Erez, Tassa and Todorov, 2011), as Text2Reward's
"move backward" tasks write it (Xie et al., 2024):
  * ``backward`` +1.0 x backward velocity, minus the torso's x displacement over this step
                 divided by the step duration (m/s): moving in -x is the task.
  * ``healthy``  +1.0 while the walker is upright (torso 0.8-2 m high, tilted < 1 rad);
                 falling also ends the episode.
  * ``ctrl``     -0.001 x sum of squared actions: discourages wasteful torques.
"""


def compute_reward(state, action):
    backward = -1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    healthy = np.where(state.healthy, 1.0, 0.0)
    ctrl = -1e-3 * np.sum(action * action, axis=-1)
    return backward + healthy + ctrl, {"backward": backward, "healthy": healthy, "ctrl": ctrl}
