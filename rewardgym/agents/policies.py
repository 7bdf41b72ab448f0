"""Actor-critic networks for PPO, chosen from the spaces by :func:`make_policy`.

=====================================  ==========================================
observation space                      network
=====================================  ==========================================
``Box`` (any shape, flattened)         two separate MLPs, actor and critic
                                       (detail 13 / continuous detail 4)
``Dict`` with ``glyphs`` + ``blstats``  :class:`NetHackEncoder` shared by actor and
(NetHack, MiniHack)                    critic: egocentric crop CNN, glyph-category
                                       minimap, ``blstats`` MLP, message byte encoder
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

if TYPE_CHECKING:  # pragma: no cover
    from rewardgym.agents.ppo import PPOConfig

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

    ``PPO_DEFAULTS`` is empty: :class:`~rewardgym.agents.ppo.PPOConfig`'s field defaults are
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


class NetHackEncoder(nn.Module):
    """Features of a NetHack/MiniHack ``Dict`` observation, ``(B, out_dim)``, sized for a CPU core.

    * egocentric crop ``(B, C, C)``: ``glyphs_crop`` when the space has it, else cut from
      ``glyphs`` around the hero's ``(x, y) = blstats[:, 0:2]`` (cells outside the map get
      a dedicated "outside" embedding, index 0; glyph ``g`` is index ``g + 1``) -> learned
      glyph embedding (``embed_dim``) -> conv 3x3 -> conv 3x3 stride 2 -> linear 128: the
      fine detail next to the hero (which monster, which object);
    * minimap ``(B, 18, ceil(H / 3), ceil(W / 4))`` = ``(B, 18, 7, 20)``: every map cell's
      glyph as one of the 17 fixed categories of
      :data:`~rewardgym.envs.families.nethack.GLYPH_CATEGORIES` (walls, doors, stairs,
      monsters, pet, gold, food ...), averaged over blocks of 3 x 4 cells, plus a channel
      with the hero's block -> linear 128: where things are on the level;
    * ``blstats`` ``(B, 27)`` -> ``sign(x) log(1 + |x|)`` (hit points, gold, depth span
      orders of magnitude) -> MLP 64-64;
    * ``message`` ``(B, 256)`` bytes (when present) -> byte embedding (byte 0, the padding,
      is a zero vector) -> 1-D conv k3 over the longest message of the batch -> max over
      each message's non-zero bytes -> linear 32.

    ReLU everywhere, and a linear 256 over the concatenation. Speed comes from the map:
    version 1 embedded all 21 x 79 glyphs and ran two convolutions over them, which was 80 %
    of the compute of a PPO update (the embedding's backward pass alone a quarter); the
    minimap is a fixed encoding, so no gradient flows into it, and costs one scatter-add.
    ``ARCH`` names this design in checkpoints (version 1 checkpoints are refused).

    Args:
        space: the ``Dict`` observation space (must contain ``glyphs`` and ``blstats``).
        embed_dim: glyph embedding size (crop).
        crop_size: side of the egocentric crop when it is cut from ``glyphs``.
        out_dim: output feature size.
    """

    ARCH = "nethack-2"
    BLOCK = (3, 4)
    """Minimap block (rows, columns) of map cells."""

    def __init__(self, space: gym.spaces.Dict, embed_dim: int = 16, crop_size: int = 9, out_dim: int = 256,
                 crop_channels: int = 16, map_dim: int = 64):
        super().__init__()
        from rewardgym.envs.families.nethack import GLYPH_CATEGORIES, glyph_categories

        missing = [k for k in ("glyphs", "blstats") if k not in space.spaces]
        if missing:
            raise ValueError(f"NetHack policy needs Dict observation keys 'glyphs' and 'blstats'; "
                             f"missing {missing} in {sorted(space.spaces)}")
        glyphs = space["glyphs"]
        self.num_glyphs = int(np.max(glyphs.high)) + 1
        self.map_shape = tuple(glyphs.shape)
        self.use_crop_key = "glyphs_crop" in space.spaces
        self.crop_size = int(space["glyphs_crop"].shape[0]) if self.use_crop_key else int(crop_size)
        self.use_message = "message" in space.spaces
        self.blstats_dim = int(space["blstats"].shape[0])
        # minimap: cell (r, c) adds 1 / |block| to channel category(glyph) of block (r // 3, c // 4)
        categories = torch.as_tensor(glyph_categories().astype(np.int64))
        if len(categories) < self.num_glyphs:
            raise ValueError(f"glyph ids up to {self.num_glyphs - 1} but NLE defines {len(categories)} glyphs")
        rows, cols = self.map_shape
        bh, bw = self.BLOCK
        self.grid = (-(-rows // bh), -(-cols // bw))
        self.num_channels = len(GLYPH_CATEGORIES) + 1  # + the hero's block
        cells = self.grid[0] * self.grid[1]
        block = (torch.arange(rows).unsqueeze(1) // bh * self.grid[1] + torch.arange(cols) // bw).reshape(-1)
        self.register_buffer("cell_category", categories * cells, persistent=False)  # channel offset per glyph
        self.register_buffer("cell_block", block, persistent=False)
        self.register_buffer("cell_weight", 1.0 / torch.bincount(block, minlength=cells)[block].float(),
                             persistent=False)
        self.embed = nn.Embedding(self.num_glyphs + 1, embed_dim)
        self.map_fc = nn.Sequential(layer_init(nn.Linear(self.num_channels * cells, map_dim)), nn.ReLU())
        half = (self.crop_size + 1) // 2
        c = crop_channels
        self.crop_cnn = nn.Sequential(
            layer_init(nn.Conv2d(embed_dim, c, 3, padding=1)), nn.ReLU(),
            layer_init(nn.Conv2d(c, c, 3, stride=2, padding=1)), nn.ReLU(), nn.Flatten(),
            layer_init(nn.Linear(c * half * half, 128)), nn.ReLU())
        self.blstats_mlp = nn.Sequential(layer_init(nn.Linear(self.blstats_dim, 64)), nn.ReLU(),
                                         layer_init(nn.Linear(64, 64)), nn.ReLU())
        feat = 128 + map_dim + 64
        if self.use_message:
            self.msg_embed = nn.Embedding(256, 16, padding_idx=0)
            self.msg_conv = nn.Sequential(layer_init(nn.Linear(3 * 16, 32)), nn.ReLU())  # a k=3 conv as a linear map of 3-grams
            self.msg_fc = nn.Sequential(layer_init(nn.Linear(32, 32)), nn.ReLU())
            feat += 32
        self.fc = nn.Sequential(layer_init(nn.Linear(feat, out_dim)), nn.ReLU())
        self.out_dim = out_dim

    def crop(self, glyphs: torch.Tensor, blstats: torch.Tensor) -> torch.Tensor:
        """Egocentric ``(B, C, C)`` crop of ``glyphs + 1`` around ``blstats[:, :2] = (x, y)``; 0 outside."""
        n, rows, cols = glyphs.shape
        offs = torch.arange(self.crop_size, device=glyphs.device) - self.crop_size // 2
        yy = blstats[:, 1:2].long().clamp(0, rows - 1) + offs  # (B, C) map rows of the crop's rows
        xx = blstats[:, 0:1].long().clamp(0, cols - 1) + offs  # (B, C)
        inside = ((yy >= 0) & (yy < rows)).unsqueeze(2) & ((xx >= 0) & (xx < cols)).unsqueeze(1)
        cells = (yy.clamp(0, rows - 1) * cols).unsqueeze(2) + xx.clamp(0, cols - 1).unsqueeze(1)  # (B, C, C)
        ids = torch.gather(glyphs.reshape(n, -1), 1, cells.reshape(n, -1)).view(cells.shape)
        return torch.where(inside, ids.long() + 1, 0)

    def minimap(self, glyphs: torch.Tensor, blstats: torch.Tensor) -> torch.Tensor:
        """``(B, 18, 7, 20)``: per block of 3 x 4 cells, the fraction of cells of each glyph
        category (channels 0-16), and 1 in the hero's block (channel 17)."""
        n = glyphs.shape[0]
        gh, gw = self.grid
        bh, bw = self.BLOCK
        index = self.cell_category.index_select(0, glyphs.reshape(-1).long()).view(n, -1) + self.cell_block
        x = blstats[:, 0].long().clamp(0, self.map_shape[1] - 1)
        y = blstats[:, 1].long().clamp(0, self.map_shape[0] - 1)
        hero = (self.num_channels - 1) * gh * gw + y // bh * gw + x // bw
        index = torch.cat([index, hero.unsqueeze(1)], 1)
        weight = torch.cat([self.cell_weight.expand(n, -1), torch.ones(n, 1, device=glyphs.device)], 1)
        out = torch.zeros(n, self.num_channels * gh * gw, device=glyphs.device)
        return out.scatter_add_(1, index, weight).view(n, self.num_channels, gh, gw)

    def message(self, message: torch.Tensor) -> torch.Tensor:
        """``(B, 32)`` features of ``(B, L)`` 0-padded message bytes (0 for an empty message)."""
        present = message != 0
        if not torch.compiler.is_compiling():  # convolve up to the longest message only (most are short)
            used = torch.nonzero(present.any(0))
            message = message[:, :int(used[-1]) + 1 if len(used) else 1]
            present = present[:, :message.shape[1]]
        x = nn.functional.pad(self.msg_embed(message.long()), (0, 0, 1, 1))  # (B, L + 2, 16), zero ends
        h = self.msg_conv(torch.cat([x[:, :-2], x[:, 1:-1], x[:, 2:]], -1))  # (B, L, 32)
        present = present.unsqueeze(-1)
        pooled = torch.where(present, h, -1e4).amax(1)
        return self.msg_fc(torch.where(present.any(1), pooled, 0.0))  # an empty message pools to 0

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        glyphs = obs["glyphs"]
        blstats = obs["blstats"]
        crop_ids = obs["glyphs_crop"].long() + 1 if self.use_crop_key else self.crop(glyphs, blstats)
        stats = blstats.to(torch.float32)
        stats = torch.sign(stats) * torch.log1p(stats.abs())
        parts = [self.crop_cnn(self.embed(crop_ids).permute(0, 3, 1, 2)),
                 self.map_fc(self.minimap(glyphs, blstats).flatten(1)), self.blstats_mlp(stats)]
        if self.use_message:
            parts.append(self.message(obs["message"]))
        return self.fc(torch.cat(parts, -1))


class NetHackActorCritic(ActorCritic):
    """:class:`NetHackEncoder` shared by a policy head and a value head (Atari-style sharing, detail 13)."""

    ARCH = NetHackEncoder.ARCH
    PPO_DEFAULTS: dict[str, Any] = {"num_steps": 128, "num_minibatches": 4, "update_epochs": 4,
                                    "learning_rate": 2.5e-4, "ent_coef": 0.01}
    """CleanRL's ``ppo_atari.py`` (Huang et al., 2022): a shared CNN over a discrete-action
    game; 4 epochs of 4 minibatches is also what keeps an update cheap on a CPU core."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, config: "PPOConfig",
                 encoder: nn.Module | None = None):
        """``encoder``: a feature module with an ``out_dim`` attribute (default :class:`NetHackEncoder`)."""
        super().__init__()
        self.encoder = NetHackEncoder(observation_space) if encoder is None else encoder
        self.head = make_head(self.encoder.out_dim, action_space, config)
        self.critic = layer_init(nn.Linear(self.encoder.out_dim, 1), std=1.0)

    def act(self, obs, generator=None):
        feat = self.encoder(obs)
        action, logp = self.head.sample(feat, generator)
        return action, logp, self.critic(feat).squeeze(-1)

    def evaluate(self, obs, action):
        feat = self.encoder(obs)
        logp, entropy = self.head.log_prob_entropy(feat, action)
        return logp, entropy, self.critic(feat).squeeze(-1)

    def value(self, obs):
        return self.critic(self.encoder(obs)).squeeze(-1)

    def mode(self, obs):
        return self.head.mode(self.encoder(obs))


def _policy_class(observation_space: gym.Space) -> type[ActorCritic] | None:
    if isinstance(observation_space, gym.spaces.Box):
        return MLPActorCritic
    if isinstance(observation_space, gym.spaces.Dict) and "glyphs" in observation_space.spaces:
        return NetHackActorCritic
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
    if cls is NetHackActorCritic:
        return NetHackActorCritic(observation_space, action_space, config)
    raise ValueError(f"PPO cannot handle observation space {observation_space!r} "
                     f"({type(observation_space).__name__}); supported: Box (MLP) and NetHack/MiniHack Dict "
                     "observations with 'glyphs' and 'blstats'")


def policy_summary(policy: nn.Module) -> dict[str, Any]:
    """Class name and parameter count (for logs and run configs)."""
    return {"class": type(policy).__name__, "parameters": sum(p.numel() for p in policy.parameters())}
