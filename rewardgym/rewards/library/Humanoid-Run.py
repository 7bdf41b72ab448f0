"""Expert reward for Humanoid-Run: Humanoid-v5's own reward structure, written as named terms.

Gymnasium's Humanoid-v5 reward (Tassa, Erez and Todorov, 2012):
  * ``forward``  +1.25 x forward velocity of the whole-body centre of mass (its x
                 displacement over this step divided by the step duration, m/s), as
                 Humanoid-v5 measures it: the torso alone could lean without progressing.
  * ``healthy``  +5.0 while the torso is between 1 and 2 m high: a large survival bonus,
                 because standing up is the hard part of learning to run.
  * ``ctrl``     -0.1 x sum of squared actions: discourages wasteful torques.
Humanoid-v5 also subtracts a contact cost (5e-7 x squared external forces, at most 10),
left out here as the view has no contact forces; otherwise the sum equals the base env's
reward.
"""


def compute_reward(state, action):
    forward = 1.25 * (state.com_pos[:, 0] - state.prev.com_pos[:, 0]) / state.dt
    healthy = np.where(state.healthy, 5.0, 0.0)
    ctrl = -0.1 * np.sum(action * action, axis=-1)
    return forward + healthy + ctrl, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
