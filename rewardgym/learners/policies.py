"""Actor-critic networks for PPO, chosen from the spaces by :func:`make_policy`.

=====================================  ==========================================
observation space                      network
=====================================  ==========================================
``Box`` (any shape, flattened)         two separate MLPs, actor and critic
                                       (detail 13 / continuous detail 4)
a registered family's observations     the family's network (:func:`register_policy`), e.g.
                                       NetHack/MiniHack's ``Dict`` with ``glyphs`` +
                                       ``blstats``: :mod:`rewardgym.learners.nethack`
=====================================  ==========================================

=====================  =========================================================
action space           head
=====================  =========================================================
``Box``                :class:`GaussianHead`: independent Gaussian, state-independent
                       log-std (continuous details 1-3); the env receives the sample
                       clipped to the bounds, the learner the unclipped sample (detail c5)
``Discrete``           :class:`CategoricalHead`
=====================  =========================================================

"Detail N" refers to Huang et al., *The 37 Implementation Details of Proximal Policy
Optimization* (ICLR blog track 2022); "detail cN" to its continuous-action list.

Every policy implements the same four calls, all batch-first:

* ``act(obs, generator)`` -> ``(action, log_prob (B,), value (B,))`` sampled with ``generator``;
* ``evaluate(obs, action)`` -> ``(log_prob (B,), entropy (B,), value (B,))`` (the update);
* ``value(obs)`` -> ``(B,)``; ``mode(obs)`` -> the deterministic action;
* ``env_action(action)`` -> the action the environment receives (clipped for ``Box``).

Sampling uses an explicit :class:`torch.Generator` (never the global RNG), so a PPO run is
reproducible and its RNG state can be checkpointed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewardgym.learners.registry import policy_for, register_policy, registered_policies  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from rewardgym.learners.config import PPOConfig

Obs = torch.Tensor | dict[str, torch.Tensor]

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def layer_init(layer: nn.Module, std: float = math.sqrt(2.0), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain ``std`` and constant bias (detail 2)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], activation: str, out_std: float | None = None) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``; the last layer gets gain ``out_std`` (no activation)
    when given, else every layer is followed by the activation."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        if last and out_std is not None:
            layers.append(layer_init(nn.Linear(sizes[i], sizes[i + 1]), std=out_std))
        else:
            layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), act()]
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- action heads
class GaussianHead(nn.Module):
    """Diagonal Gaussian over ``Box`` actions with a state-independent log-std parameter.

    Args:
        in_dim: features in.
        action_space: the ``Box`` action space (bounds used by :meth:`env_action`).
        init_log_std: initial log standard deviation (0 -> std 1, as CleanRL/SB3).
        hidden: hidden sizes of the mean network (empty: a single linear layer).
        activation: hidden activation.
    """

    def __init__(self, in_dim: int, action_space: gym.spaces.Box, init_log_std: float, hidden: tuple[int, ...] = (),
                 activation: str = "tanh"):
        super().__init__()
        self.act_dim = int(np.prod(action_space.shape))
        self.action_shape = tuple(action_space.shape)
        # detail c1-c3: mean from a network, log-std a free parameter, independent components;
        # output layer gain 0.01 so that the initial policy is nearly state-independent (detail 2)
        self.mean = mlp([in_dim, *hidden, self.act_dim], activation, out_std=0.01)
        self.log_std = nn.Parameter(torch.full((1, self.act_dim), float(init_log_std)))
        low = torch.tensor(np.broadcast_to(action_space.low, action_space.shape).reshape(-1), dtype=torch.float32)
        high = torch.tensor(np.broadcast_to(action_space.high, action_space.shape).reshape(-1), dtype=torch.float32)
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)
        self.bounded = bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))

    def _log_prob(self, mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)

    def sample(self, feat: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(feat)
        log_std = self.log_std.expand_as(mean)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        action = mean + noise * torch.exp(log_std)
        logp = (-0.5 * noise.square() - log_std - _LOG_SQRT_2PI).sum(-1)
        return action, logp

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mean(feat)

    def log_prob_entropy(self, feat: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(feat)
        log_std = self.log_std.expand_as(mean)
        entropy = (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)
        return self._log_prob(mean, log_std, action), entropy

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """Clip to the bounds (detail c5); the unclipped sample is what the learner stores."""
        if self.bounded:
            action = torch.clamp(action, self.low, self.high)
        return action.reshape(action.shape[:-1] + self.action_shape) if len(self.action_shape) != 1 else action


class CategoricalHead(nn.Module):
    """Categorical distribution over ``Discrete(n)`` actions (``start`` is honoured)."""

    def __init__(self, in_dim: int, action_space: gym.spaces.Discrete, hidden: tuple[int, ...] = (),
                 activation: str = "tanh"):
        super().__init__()
        self.n = int(action_space.n)
        self.start = int(action_space.start)
        self.logits = mlp([in_dim, *hidden, self.n], activation, out_std=0.01)

    def sample(self, feat: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.log_softmax(self.logits(feat), -1)
        # Gumbel-max trick: exact categorical sample, drawn from the explicit generator
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        action = torch.argmax(logits - torch.log(-torch.log(u.clamp_min(1e-20))), -1)
        return action, logits.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.argmax(self.logits(feat), -1)

    def log_prob_entropy(self, feat: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.log_softmax(self.logits(feat), -1)
        entropy = -(logits.exp() * logits).sum(-1)
        return logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1), entropy

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        return action + self.start if self.start else action


def make_head(in_dim: int, action_space: gym.Space, config: "PPOConfig", hidden: tuple[int, ...] = ()) -> nn.Module:
    if isinstance(action_space, gym.spaces.Box):
        return GaussianHead(in_dim, action_space, config.init_log_std, hidden, config.activation)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_dim, action_space, hidden, config.activation)
    raise ValueError(f"PPO cannot handle action space {action_space!r} ({type(action_space).__name__}); "
                     "supported: Box (Gaussian policy) and Discrete (categorical policy)")


# ----------------------------------------------------------------------------- policies
class ActorCritic(nn.Module):
    """Base class: an action head and a value function over (possibly shared) features.

    ``ARCH`` names the network design; checkpoints store it, and a checkpoint of another
    design is refused with a clear error instead of loading into a network it does not fit.
    """

    ARCH = "base"
    head: nn.Module

    def forward(self, obs: Obs, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same as :meth:`evaluate` (so that ``torch.func.functional_call`` can run the update)."""
        return self.evaluate(obs, action)

    def act(self, obs: Obs, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def evaluate(self, obs: Obs, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def value(self, obs: Obs) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, obs: Obs) -> torch.Tensor:
        raise NotImplementedError

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.head.env_action(action)


class MLPActorCritic(ActorCritic):
    """Separate actor and critic MLPs over a flat ``Box`` observation (detail 13 / c4).

    ``PPO_DEFAULTS`` is empty: :class:`~rewardgym.learners.ppo.PPOConfig`'s field defaults are
    the continuous-control settings this network was made for.

    Args:
        obs_dim: flattened observation size.
        action_space: ``Box`` or ``Discrete``.
        config: uses ``hidden_sizes``, ``activation``, ``init_log_std``.
    """

    ARCH = "mlp-1"
    PPO_DEFAULTS: dict[str, Any] = {}

    def __init__(self, obs_dim: int, action_space: gym.Space, config: "PPOConfig"):
        super().__init__()
        hidden = tuple(config.hidden_sizes)
        self.obs_dim = obs_dim
        self.critic = mlp([obs_dim, *hidden, 1], config.activation, out_std=1.0)  # value head gain 1 (detail 2)
        # the head's own MLP is the actor: obs -> hidden -> action parameters
        self.head = make_head(obs_dim, action_space, config, hidden)

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs if obs.dim() == 2 and obs.shape[1] == self.obs_dim else obs.reshape(obs.shape[0], -1)

    def act(self, obs, generator=None):
        obs = self._flat(obs)
        action, logp = self.head.sample(obs, generator)
        return action, logp, self.critic(obs).squeeze(-1)

    def evaluate(self, obs, action):
        obs = self._flat(obs)
        logp, entropy = self.head.log_prob_entropy(obs, action)
        return logp, entropy, self.critic(obs).squeeze(-1)

    def value(self, obs):
        return self.critic(self._flat(obs)).squeeze(-1)

    def mode(self, obs):
        return self.head.mode(self._flat(obs))


def _policy_class(observation_space: gym.Space) -> type[ActorCritic] | None:
    """The network class for these observations: a registered family network
    (:func:`~rewardgym.learners.registry.register_policy`) if one matches, else an MLP for ``Box``."""
    registered = policy_for(observation_space)
    if registered is not None:
        return registered
    if isinstance(observation_space, gym.spaces.Box):
        return MLPActorCritic
    return None


def policy_defaults(observation_space: gym.Space) -> dict[str, Any]:
    """PPO hyper-parameters recommended for the network these observations get (``{}`` for
    MLPs and unsupported spaces)."""
    cls = _policy_class(observation_space)
    return dict(getattr(cls, "PPO_DEFAULTS", {}))


def make_policy(observation_space: gym.Space, action_space: gym.Space, config: "PPOConfig") -> ActorCritic:
    """The actor-critic for these (single-env) spaces; see the module docstring's tables.

    Raises:
        ValueError: the action or observation space is not supported (the message names it).
    """
    if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ValueError(f"PPO cannot handle action space {action_space!r} ({type(action_space).__name__}); "
                         "supported: Box (Gaussian policy) and Discrete (categorical policy)")
    cls = _policy_class(observation_space)
    if cls is MLPActorCritic:
        return MLPActorCritic(int(np.prod(observation_space.shape)), action_space, config)
    if cls is not None:
        return cls(observation_space, action_space, config)
    raise ValueError(f"PPO cannot handle observation space {observation_space!r} "
                     f"({type(observation_space).__name__}); supported: Box (MLP) and {registered_policies()}")


def policy_summary(policy: nn.Module) -> dict[str, Any]:
    """Class name and parameter count (for logs and run configs)."""
    return {"class": type(policy).__name__, "parameters": sum(p.numel() for p in policy.parameters())}
