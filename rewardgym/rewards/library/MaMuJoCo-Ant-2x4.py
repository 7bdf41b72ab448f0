"""Expert team reward for MaMuJoCo-Ant-2x4: rewardgym/Ant-Run-v0's expert, as a team reward.

  * ``forward``  +1.0 x forward velocity of the torso (m/s).
  * ``healthy``  +1.0 while the torso is between 0.2 and 1.0 m high and the state finite.
  * ``ctrl``     -0.5 x sum of squared actions of all agents (action is (B, N, J)).
A team reward (B,) that every agent receives. Ant-v5's contact cost is left out, as in
Ant-Run's expert (the view has no contact forces). The library holds one expert per task,
so MaMuJoCo-Ant-2x4 and MaMuJoCo-Ant-4x2 have the same program under two names.
"""


def compute_reward(state, action):
    forward = 1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    healthy = np.where(state.healthy, 1.0, 0.0)
    ctrl = -0.5 * np.sum(action * action, axis=(1, 2))
    return forward + healthy + ctrl, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
