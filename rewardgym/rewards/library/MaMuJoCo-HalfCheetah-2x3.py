"""Expert team reward for MaMuJoCo-HalfCheetah-2x3: HalfCheetah-v5's reward, as a team reward.

The same reward as rewardgym/HalfCheetah-Run-v0's expert, for the robot both agents move:
  * ``forward``  +1.0 x forward velocity, the torso's x displacement over this step divided
                 by the step duration (m/s).
  * ``ctrl``     -0.1 x sum of squared actions of both agents (action is (B, N, 3)).
A team reward (B,) that every agent receives: MaMuJoCo's own reward (``env_reward``, the
same for both agents) up to floating-point rounding.
"""


def compute_reward(state, action):
    forward = 1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    ctrl = -0.1 * np.sum(action * action, axis=(1, 2))
    return forward + ctrl, {"forward": forward, "ctrl": ctrl}
