"""IPPO and MAPPO: the project's PPO with one policy shared by every agent of a multi-agent task.

Both train on the parameter-sharing vector env that ``gym.make_vec`` returns for a
multi-agent id (:class:`rewardgym.multiagent.vector.AgentVectorEnv`): ``B`` copies of the
task with ``N`` agents each are ``B x N`` sub-envs, and each agent's observation is its own
observation followed by its one-hot id (so the shared policy can still act differently per
agent). Every agent-step is one PPO transition with its own reward, value and advantage
(GAE per agent; an episode ends for all agents of a copy together). Nothing else changes in
:class:`~rewardgym.learners.ppo.PPO`: its normalisers, ``compile=True``, checkpoints, exact
resume and ``predict`` work as for one agent.

* **IPPO** (independent PPO with parameter sharing; de Witt et al., 2020, *Is Independent
  Learning All You Need in the StarCraft Multi-Agent Challenge?*, arXiv:2011.09533): PPO
  unchanged; actor and critic both see the agent's observation and id.
* **MAPPO** (Yu et al., 2022, *The Surprising Effectiveness of PPO in Cooperative Multi-Agent
  Games*, NeurIPS Datasets and Benchmarks, arXiv:2103.01955): PPO with
  :class:`MAPPOActorCritic`, a *centralised critic* ``V(s, i)`` on the copy's global state
  ``s`` (PettingZoo's ``state()``) and the agent's id, and a decentralised actor
  ``pi(a | o_i, i)``: training uses what no single agent observes, execution does not.

Where this follows the papers and where it does not: parameter sharing with agent ids, GAE
(λ 0.95), clipped surrogate and value losses, advantage normalisation over all agents'
transitions, and the agent-specific global state of the value input (the MAPPO paper's
"EP" state plus the agent id) follow them. Policies are MLPs (MAPPO's recurrent policies
are not implemented); MAPPO's value normalisation (PopArt/ValueNorm) and Huber value loss are replaced by PPO's
return-based reward scaling (``norm_reward``) and clipped squared value loss; there is no
"death masking" since agents never leave an episode early. Hyper-parameters are
:class:`~rewardgym.learners.ppo.PPOConfig`'s; ``rewardgym train`` counts ``--steps`` in env
steps (each one is ``N`` agent transitions).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import torch

from rewardgym.learners.policies import ActorCritic, make_head, mlp
from rewardgym.learners.ppo import PPOConfig

class MAPPOActorCritic(ActorCritic):
    """MAPPO's networks: a shared actor on ``[agent obs, agent id]`` and a centralised critic on
    ``[agent id, global state]`` (separate MLPs, as :class:`~rewardgym.learners.policies.MLPActorCritic`).

    Args:
        layout: the observation's column ranges, ``{"obs": (a, b), "agent_id": (b, c),
            "state": (c, d)}`` (:attr:`rewardgym.multiagent.vector.AgentVectorEnv.obs_layout`).
        action_space: one agent's action space (``Box`` or ``Discrete``).
        config: uses ``hidden_sizes``, ``activation``, ``init_log_std``.

    Observations ``(M, d)`` in, ``(M,)`` values and log-probabilities out.
    """

    def __init__(self, layout: dict[str, tuple[int, int]], action_space: gym.Space, config: PPOConfig):
        super().__init__()
        if layout["state"][1] <= layout["state"][0]:
            raise ValueError("MAPPO's critic needs the global state in the observation (global_state=True)")
        self.actor_cols = (layout["obs"][0], layout["agent_id"][1])
        self.critic_cols = (layout["agent_id"][0], layout["state"][1])
        self.obs_dim = layout["state"][1]
        hidden = tuple(config.hidden_sizes)
        self.critic = mlp([self.critic_cols[1] - self.critic_cols[0], *hidden, 1], config.activation, out_std=1.0)
        self.head = make_head(self.actor_cols[1] - self.actor_cols[0], action_space, config, hidden)

    def _actor_in(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, self.actor_cols[0]:self.actor_cols[1]]

    def _value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs[:, self.critic_cols[0]:self.critic_cols[1]]).squeeze(-1)

    def act(self, obs, generator=None):
        action, logp = self.head.sample(self._actor_in(obs), generator)
        return action, logp, self._value(obs)

    def evaluate(self, obs, action):
        logp, entropy = self.head.log_prob_entropy(self._actor_in(obs), action)
        return logp, entropy, self._value(obs)

    def value(self, obs):
        return self._value(obs)

    def mode(self, obs):
        return self.head.mode(self._actor_in(obs))


def mappo_policy(layout: dict[str, tuple[int, int]]) -> Callable[[gym.Space, gym.Space, PPOConfig], ActorCritic]:
    """The ``policy=`` factory of :class:`~rewardgym.learners.ppo.PPO` that builds :class:`MAPPOActorCritic`."""
    def build(observation_space: gym.Space, action_space: gym.Space, config: PPOConfig) -> ActorCritic:
        width = int(observation_space.shape[0])
        if width != layout["state"][1]:
            raise ValueError(f"observation width {width} does not match the layout {layout}")
        return MAPPOActorCritic(layout, action_space, config)

    return build


def marl_policy(algo: str, env: Any) -> Callable[[gym.Space, gym.Space, PPOConfig], ActorCritic] | None:
    """PPO's ``policy=`` for ``algo`` on the agent vector env ``env``: MAPPO's networks, or None
    (PPO's own MLPs: IPPO)."""
    if algo == "mappo":
        return mappo_policy(env.obs_layout)
    if algo == "ippo":
        return None
    raise ValueError(f"unknown multi-agent algorithm {algo!r}; use ippo or mappo")
