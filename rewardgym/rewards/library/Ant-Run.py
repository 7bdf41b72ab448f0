"""Expert reward for Ant-Run: Ant-v5's own reward structure, written as named terms.

Gymnasium's Ant-v5 reward (Schulman et al., 2016):
  * ``forward``  +1.0 x forward velocity, the torso's x displacement over this step divided
                 by the step duration (m/s): running forward is the task.
  * ``healthy``  +1.0 while the torso is between 0.2 and 1.0 m high and the state finite.
  * ``ctrl``     -0.5 x sum of squared actions: discourages wasteful torques.
Ant-v5 also subtracts a contact cost (5e-4 x squared, clipped external forces), which is
left out (Ant-v4 left it out by default too): the view has no contact forces. Ant-v5
measures x on ``data.xpos``, one physics substep older than ``qpos``, so ``forward``
differs slightly from the base env's on individual steps.
"""


def compute_reward(state, action):
    forward = 1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    healthy = np.where(state.healthy, 1.0, 0.0)
    ctrl = -0.5 * np.sum(action * action, axis=-1)
    return forward + healthy + ctrl, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
