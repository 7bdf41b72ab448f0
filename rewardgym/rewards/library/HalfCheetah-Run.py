"""Expert reward for HalfCheetah-Run: HalfCheetah-v5's own reward, written as named terms.

Gymnasium's HalfCheetah-v5 reward (Wawrzynski, 2009; Todorov et al., 2012):
  * ``forward``  +1.0 x forward velocity, the torso's x displacement over this step divided
                 by the step duration (m/s): running forward is the task.
  * ``ctrl``     -0.1 x sum of squared actions: discourages wasteful, jerky torques.
The sum equals the base env's reward (``env_reward``) up to floating-point rounding.
"""


def compute_reward(state, action):
    forward = 1.0 * (state.torso_pos[:, 0] - state.prev.torso_pos[:, 0]) / state.dt
    ctrl = -0.1 * np.sum(action * action, axis=-1)
    return forward + ctrl, {"forward": forward, "ctrl": ctrl}
