"""Expert reward for Hopper-Backflip: jump and rotate backwards through a full turn.

Flip shaping in the style of Text2Reward's Hopper flips (Xie et al., 2024), on the
accumulated (unwrapped) pitch, where negative = nose-up/backwards:
  * ``spin``     backward pitch rate in turns per second (from pitch_unwrapped's change
                 over the step), capped at 10 rad/s: rotating the right way, until the
                 turn is complete. Summed over an episode it telescopes to the net turn,
                 so spinning back and forth earns nothing.
  * ``height``   torso height above its standing height (1.25 m), capped at 1 m, until the
                 turn is complete: a flip needs air time.
  * ``landed``   after a full turn (the success test): 2 + torso_up (1 upright, -1 upside
                 down), a per-step bonus for finishing the flip and landing on the foot.
  * ``ctrl``     -0.001 x sum of squared actions (Hopper-v5's control cost).
"""


def compute_reward(state, action):
    rate = -(state.pitch_unwrapped - state.prev.pitch_unwrapped) / state.dt
    done = state.success
    spin = np.where(done, 0.0, np.clip(rate, -10.0, 10.0) / (2.0 * np.pi))
    height = np.where(done, 0.0, np.clip(state.torso_height - 1.25, 0.0, 1.0))
    landed = np.where(done, 2.0 + state.torso_up, 0.0)
    ctrl = -1e-3 * np.sum(action * action, axis=-1)
    return spin + height + landed + ctrl, {"spin": spin, "height": height, "landed": landed,
                                           "ctrl": ctrl}
