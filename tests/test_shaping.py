"""Potential-based shaping (Ng, Harada & Russell 1999) preserves optimal policies — checked
on tabular MDPs with value iteration using rewardgym's own shaping formula — and the
deliberately wrong variants (ignoring termination, another gamma) are shown to break it.
The wrappers apply it with Φ(terminal) = 0, keep Φ on truncation, and refuse a gamma
other than the agent's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rewardgym.rewards.shaping import shaping_term

GAMMA = 0.9


def random_mdp(rng, n_states=8, n_actions=3, n_terminal=2):
    """Random episodic MDP: P (S, A, S), R (S, A, S), the last ``n_terminal`` states terminal."""
    P = rng.dirichlet(np.ones(n_states) * 0.3, size=(n_states, n_actions))
    R = rng.normal(size=(n_states, n_actions, n_states))
    terminal = np.zeros(n_states, dtype=bool)
    terminal[-n_terminal:] = True
    return P, R, terminal


def optimal_policy(P, R, terminal, gamma, F=None, iters=2000):
    """Greedy policy of value iteration on non-terminal states; ``F`` (S, A, S) is added to R."""
    S, A, _ = P.shape
    reward = R + (F if F is not None else 0.0)
    V = np.zeros(S)
    for _ in range(iters):
        Q = np.einsum("sat,sat->sa", P, reward + gamma * np.where(terminal, 0.0, V)[None, None, :])
        V_new = np.where(terminal, 0.0, Q.max(axis=1))
        if np.max(np.abs(V_new - V)) < 1e-12:
            break
        V = V_new
    return Q.argmax(axis=1)[~terminal], Q


def shaping_matrix(phi, terminal, gamma, *, ignore_termination=False):
    """F(s, a, s') from rewardgym's shaping_term, for every transition."""
    S = len(phi)
    phi_s = np.broadcast_to(phi[:, None, None], (S, 1, S))
    phi_next = np.broadcast_to(phi[None, None, :], (S, 1, S))
    term = np.broadcast_to(terminal[None, None, :], (S, 1, S))
    if ignore_termination:
        term = np.zeros_like(term)
    return shaping_term(phi_s.reshape(-1), phi_next.reshape(-1), gamma, term.reshape(-1)).reshape(S, 1, S)


def test_shaping_preserves_the_optimal_policy_on_random_mdps_for_arbitrary_potentials():
    rng = np.random.default_rng(0)
    for _ in range(30):
        P, R, terminal = random_mdp(rng)
        base, _ = optimal_policy(P, R, terminal, GAMMA)
        for scale in (0.1, 1.0, 10.0, 100.0):
            phi = rng.normal(scale=scale, size=len(terminal))
            shaped, _ = optimal_policy(P, R, terminal, GAMMA, shaping_matrix(phi, terminal, GAMMA))
            np.testing.assert_array_equal(shaped, base)


def test_shaping_preserves_the_policy_on_a_hand_made_chain():
    # 0 -> 1 -> 2 -> 3(goal, terminal); action 0 moves right, action 1 stays; reaching the goal pays 1.
    S, A = 4, 2
    P = np.zeros((S, A, S))
    for s in range(3):
        P[s, 0, s + 1] = 1.0
        P[s, 1, s] = 1.0
    P[3, :, 3] = 1.0
    R = np.zeros((S, A, S))
    R[2, 0, 3] = 1.0
    terminal = np.array([False, False, False, True])
    base, _ = optimal_policy(P, R, terminal, GAMMA)
    assert base.tolist() == [0, 0, 0]
    phi = np.array([0.0, -5.0, -10.0, 50.0])  # a potential that "discourages" moving right
    shaped, _ = optimal_policy(P, R, terminal, GAMMA, shaping_matrix(phi, terminal, GAMMA))
    assert shaped.tolist() == base.tolist()
    # Ignoring termination makes Φ(goal) = 50 a bonus for entering the goal: harmless here, but
    # a negative terminal potential turns "never reach the goal" optimal.
    phi_bad = np.array([0.0, 0.0, 0.0, -50.0])
    wrong, _ = optimal_policy(P, R, terminal, GAMMA, shaping_matrix(phi_bad, terminal, GAMMA,
                                                                   ignore_termination=True))
    assert wrong.tolist() != base.tolist()


@pytest.mark.parametrize("variant", ["ignore_termination", "other_gamma"])
def test_wrong_variants_change_the_optimal_policy(variant):
    rng = np.random.default_rng(1)
    changed = 0
    trials = 30
    for _ in range(trials):
        P, R, terminal = random_mdp(rng)
        base, _ = optimal_policy(P, R, terminal, GAMMA)
        phi = rng.normal(scale=10.0, size=len(terminal))
        if variant == "ignore_termination":
            F = shaping_matrix(phi, terminal, GAMMA, ignore_termination=True)
        else:
            F = shaping_matrix(phi, terminal, 0.5 * GAMMA)  # shaped with one gamma, learned with another
        shaped, _ = optimal_policy(P, R, terminal, GAMMA, F)
        changed += not np.array_equal(shaped, base)
    assert changed >= trials // 3, f"the wrong variant changed the policy in only {changed}/{trials} MDPs"


def test_env_shaping_term_uses_zero_potential_on_termination_and_keeps_it_on_truncation(tmp_path):
    program = tmp_path / "phi.py"
    program.write_text("def compute_reward(state, action):\n    return state.torso_height * 0.0\n\n"
                       "def compute_potential(state):\n    return state.torso_height\n")
    gamma = 0.9
    env = gym.make("rewardgym/Hopper-Hop-v0", reward="env", shaping=str(program), gamma=gamma)
    env.reset(seed=0)
    height = env.unwrapped.data.qpos[1]
    terminated_seen = False
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(np.array([1.0, -1.0, 1.0], dtype=np.float32))
        new_height = env.unwrapped.data.qpos[1]
        expected = (0.0 if terminated else gamma * new_height) - height
        assert info["reward_terms"]["shaping"] == pytest.approx(expected, abs=1e-9)
        height = new_height
        if terminated:
            terminated_seen = True
            break
    assert terminated_seen, "the test wanted a terminal step (Hopper falls under this action)"


def test_shaping_needs_gamma_and_refuses_another_agent_gamma(tmp_path):
    with pytest.raises(ValueError, match="needs gamma"):
        gym.make("rewardgym/MetaWorld-Reach-v0", reward="sparse", shaping="expert")
    from rewardgym.learners.ppo import PPO, PPOConfig

    env = gym.make_vec("rewardgym/MetaWorld-Reach-v0", num_envs=1, reward="sparse", shaping="expert", gamma=0.9)
    with pytest.raises(ValueError, match="gamma=0.9 but the agent discounts with gamma=0.99"):
        PPO(env, PPOConfig(num_envs=1, gamma=0.99))
    env.close()
    with pytest.raises(ValueError, match="defines no compute_potential"):
        gym.make("rewardgym/Hopper-Hop-v0", reward="env", shaping="expert", gamma=0.99)
