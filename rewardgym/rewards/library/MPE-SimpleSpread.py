"""Expert team reward for MPE-SimpleSpread: cover every landmark without collisions.

A team reward (B,): every agent receives it, so no agent is paid for covering a landmark
alone (the credit-assignment problem is left to the learner, as in MPE's global reward).
  * ``coverage``    -sum over landmarks of the distance to the nearest agent (u): MPE's own
                    global reward; 0 when every landmark has an agent on it.
  * ``collisions``  -1 per pair of overlapping agents (MPE charges both agents of a pair in
                    their local rewards; a team pays once per pair).
``compute_potential`` is the coverage term, a potential for shaping (``shaping="expert"``).
"""


def compute_reward(state, action):
    coverage = -np.sum(state.landmark_min_dist, axis=1)
    collisions = -0.5 * np.sum(state.agent_collisions, axis=1)
    return coverage + collisions, {"coverage": coverage, "collisions": collisions}


def compute_potential(state):
    return -np.sum(state.landmark_min_dist, axis=1)
