"""NetHack and MiniHack's network: the family's observations (``glyphs``, ``blstats``,
``message``) encoded for PPO on a CPU core. Registered for those observations by the
package (``rewardgym/__init__``: :func:`~rewardgym.learners.registry.register_policy`), so
the learner's core (:mod:`~rewardgym.learners.policies`, :mod:`~rewardgym.learners.ppo`)
knows no family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewardgym.envs.families.nethack import GLYPH_CATEGORIES, glyph_categories
from rewardgym.learners.policies import ActorCritic, layer_init, make_head

if TYPE_CHECKING:  # pragma: no cover
    from rewardgym.learners.config import PPOConfig


def is_nethack_observation(space: gym.Space) -> bool:
    """Whether ``space`` is a NetHack/MiniHack ``Dict`` observation (it has ``glyphs``)."""
    return isinstance(space, gym.spaces.Dict) and "glyphs" in space.spaces


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
