"""PPO's hyper-parameters (:class:`PPOConfig`): defaults, types, ranges, and sizes bounded by
what a run can be, checked before anything is allocated. The algorithm is in
:mod:`rewardgym.learners.ppo`; the rules for reading settings (unknown keys, types, file lines)
are :mod:`rewardgym.envs.config`'s, shared with every other config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import gymnasium as gym
import numpy as np

from rewardgym.envs.config import from_dict as _from_dict
from rewardgym.envs.config import locate as _locate
from rewardgym.learners.policies import ACTIVATIONS, policy_defaults

# What a run can be: a config (often a received file: --hyperparams, a run's config.json) that
# asks for more is an error naming its key before anything is allocated (PPOConfig.check_sizes).
MAX_POLICY_PARAMETERS = 50_000_000
"""Parameters of the actor and critic MLPs together (200 MB of float32, ~800 MB with gradients
and Adam's state; the default (64, 64) network has ~10,000, a (1024, 1024) one ~2.5 million)."""
MAX_ROLLOUT_BYTES = 4 * 2**30
"""Rollout storage of one update: the buffer plus the epoch's shuffled copy of it (4 GiB; the
defaults use ~1 MB, 4096 GPU envs x 24 steps of 348 observations ~0.3 GB)."""
MAX_ACTIVATION_BYTES = 4 * 2**30
"""Activations of one minibatch (or one rollout step of all envs) through the networks, with
their gradients (4 GiB)."""
_TRANSITION_OVERHEAD_BYTES = 80
"""Rollout bytes per transition besides observation and action: log-prob, value, reward, discounted
return, flags, episode return and length, then advantages, returns and weights in the update."""


class ConfigError(ValueError):
    """A PPO configuration key is unknown or has a value of the wrong type."""



@dataclass
class PPOConfig:
    """PPO hyper-parameters. Field defaults: CleanRL's ``ppo_continuous_action.py`` (= SB3's PPO
    defaults) with 8 environments: batch ``num_envs * num_steps = 2048``, 32 minibatches of 64,
    10 epochs, lr 3e-4 annealed, observation and reward normalisation on.

    Networks bring their own starting point (``PPO_DEFAULTS`` of the policy class): for the
    NetHack/MiniHack network it is CleanRL's ``ppo_atari.py`` (128 steps per env, 4
    minibatches, 4 epochs, lr 2.5e-4, entropy bonus 0.01). :meth:`for_space` applies it,
    and so do ``PPO(env)`` / ``PPO(env, {...})`` and ``rewardgym train``; a ``PPOConfig``
    built directly is used exactly as given."""

    # rollout
    num_envs: int = 8
    """Parallel environments ``B``; must equal the env's ``num_envs`` (detail 1)."""
    num_steps: int = 256
    """Steps per environment per rollout ``T``; batch = ``num_envs * num_steps``."""
    # returns
    gamma: float = 0.99
    gae_lambda: float = 0.95
    """GAE's lambda (detail 5)."""
    # optimisation
    num_minibatches: int = 32
    update_epochs: int = 10
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    """Linearly anneal the learning rate to 0 over the run (detail 4)."""
    adam_eps: float = 1e-5
    """Adam's epsilon (detail 3)."""
    clip_coef: float = 0.2
    clip_vloss: bool = True
    """Clip the value loss like the policy ratio (detail 9)."""
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (detail 11)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch (detail 7)."""
    target_kl: float | None = None
    """Stop the epochs of an update early when the approximate KL exceeds this."""
    # normalisation (continuous details c6-c9)
    norm_obs: bool = True
    """Running mean/std observation normalisation (Box observations only)."""
    norm_reward: bool = True
    """Scale rewards by the running std of the discounted return."""
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    # networks
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: Literal["tanh", "relu", "elu", "gelu"] = "tanh"
    init_log_std: float = 0.0
    # runtime
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: the env's device for torch-batched envs, else CUDA (when available) for the
    NetHack CNN policy and the CPU for MLP policies (small MLPs are faster on the CPU)."""
    num_threads: int = 0
    """Intra-op threads of the learner (``torch.set_num_threads``); 0 = auto: 1 on the CPU
    (simulators, reward workers and ONI's threads need the other cores; on a shared machine a
    second OpenMP thread waiting for a busy core makes the small ops of an update many times
    slower), torch's own setting on CUDA. See :mod:`rewardgym.threads` for every knob."""
    reset_interval: int = 0
    """Re-seed and reset all envs every this many updates (0: only when ``learn`` starts)."""
    stats_window: int = 100
    """Finished episodes averaged in the logged episode statistics."""
    compile: bool | Literal["auto"] = "auto"
    """``torch.compile`` the minibatch update (forward, backward, clipping and Adam as one graph):
    about 3x faster updates for small MLPs on the CPU, after a one-off compilation on the first
    update (10-20 s the first time on a machine, ~3 s once torch's on-disk compile cache holds
    the graph); needs a C++ compiler (CPU) or Triton (CUDA), else training warns and stays eager.
    ``"auto"``: on for MLP policies when :meth:`PPO.learn` trains to at least
    ``COMPILE_AUTO_MIN_STEPS`` steps (where the compilation pays for itself), off for shorter
    runs and for the NetHack network (its update is convolutions, which compiling does not
    speed up)."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def for_space(cls, observation_space: gym.Space, data: Mapping[str, Any] | None = None,
                  source: str = "<dict>") -> "PPOConfig":
        """:meth:`from_dict` of ``data`` over the defaults of the network that
        ``observation_space`` gets (``PPO_DEFAULTS`` of its policy class; see the class docstring)."""
        config = cls.from_dict({**policy_defaults(observation_space), **(data or {})}, source)
        config.check_sizes(observation_space, source=source)
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "PPOConfig":
        """Build a config from ``data``, rejecting unknown keys and ill-typed values.

        Args:
            data: hyper-parameter name -> value (e.g. parsed from YAML/TOML/JSON or the CLI).
            source: where ``data`` came from, used in error messages. When it names an
                existing file, errors cite ``file:line`` of the offending key.

        Raises:
            ConfigError: naming the key, the source and, for an unknown key, the closest
                valid key.
        """
        config = _from_dict(cls, data, source, ConfigError, "PPO config key")
        config.validate(source)
        return config

    def validate(self, source: str = "<config>") -> None:
        """Check value ranges (called by :meth:`from_dict` and by :class:`PPO`).

        Besides what the algorithm needs, sizes are bounded by what fits a machine (a
        rollout buffer of 1e8 transitions or a layer of 1e6 units is a typo, not a setting),
        so an absurd file fails here with its key instead of deep inside an allocation."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{_locate(source, f.name)}: PPO config value {f.name}={value!r} is not finite")
        checks = [
            ("num_envs", self.num_envs <= 65_536), ("num_steps", self.num_steps <= 1_000_000),
            ("batch size num_envs * num_steps", self.batch_size <= 50_000_000),
            ("update_epochs", self.update_epochs <= 10_000),
            ("hidden_sizes", len(self.hidden_sizes) <= 64 and all(h <= 65_536 for h in self.hidden_sizes)),
            ("stats_window", self.stats_window <= 1_000_000), ("num_threads", self.num_threads <= 4096),
            ("num_envs", self.num_envs >= 1), ("num_steps", self.num_steps >= 1),
            ("num_minibatches", 1 <= self.num_minibatches <= self.batch_size),
            ("update_epochs", self.update_epochs >= 1), ("gamma", 0.0 <= self.gamma <= 1.0),
            ("gae_lambda", 0.0 <= self.gae_lambda <= 1.0), ("learning_rate", self.learning_rate > 0),
            ("clip_coef", self.clip_coef > 0), ("max_grad_norm", self.max_grad_norm > 0),
            ("obs_clip", self.obs_clip > 0), ("reward_clip", self.reward_clip > 0),
            ("num_threads", self.num_threads >= 0), ("reset_interval", self.reset_interval >= 0),
            ("stats_window", self.stats_window >= 1), ("hidden_sizes", all(h >= 1 for h in self.hidden_sizes)),
            ("target_kl", self.target_kl is None or self.target_kl > 0),
            ("activation", self.activation in ACTIVATIONS), ("device", self.device in ("auto", "cpu", "cuda")),
            ("compile", self.compile in (True, False, "auto")),
        ]
        for key, ok in checks:
            if not ok:
                derived = " " in key  # the batch size: reported at its num_steps line
                value = self.batch_size if derived else getattr(self, key)
                raise ConfigError(f"{_locate(source, 'num_steps' if derived else key)}: PPO config value "
                                  f"{key}={value!r} is out of range")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(f"{_locate(source, 'num_minibatches')}: PPO config num_minibatches="
                              f"{self.num_minibatches} must divide the batch num_envs * num_steps = {self.batch_size}")
        self.check_sizes(source=source)

    def check_sizes(self, observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                    source: str = "<config>") -> None:
        """Refuse a config whose run would allocate more than a run can be: actor-critic
        parameters (:data:`MAX_POLICY_PARAMETERS`), rollout storage (:data:`MAX_ROLLOUT_BYTES`)
        and minibatch activations (:data:`MAX_ACTIVATION_BYTES`). Without spaces (``validate``)
        the observation and the action count as one float each, a lower bound; ``for_space``
        and :class:`PPO` check again with the task's spaces, before building anything.

        Raises:
            ConfigError: one line naming the source (``file:line``) and the key.
        """
        obs_elems, obs_bytes = _space_size(observation_space)
        act_elems, act_bytes = _space_size(action_space)
        hidden = list(self.hidden_sizes)
        mlp_in = obs_elems if observation_space is None or isinstance(observation_space, gym.spaces.Box) else 1
        params = sum(a * b + b for a, b in zip([mlp_in, *hidden], [*hidden, act_elems]))  # actor
        params += sum(a * b + b for a, b in zip([mlp_in, *hidden], [*hidden, 1]))  # critic
        inputs = f" for {obs_elems:,} observations" if observation_space is not None else ""
        if params > MAX_POLICY_PARAMETERS:
            raise ConfigError(f"{_locate(source, 'hidden_sizes')}: PPO config value hidden_sizes={hidden!r} makes an "
                              f"actor-critic of {params:,} parameters{inputs}, more than a run trains "
                              f"({MAX_POLICY_PARAMETERS:,})")
        per_transition = 2 * (obs_bytes + act_bytes) + _TRANSITION_OVERHEAD_BYTES
        rollout = self.batch_size * per_transition
        if rollout > MAX_ROLLOUT_BYTES:
            raise ConfigError(f"{_locate(source, 'num_steps')}: PPO config value num_envs * num_steps = "
                              f"{self.batch_size:,} transitions of {per_transition:,} bytes{inputs} need "
                              f"{rollout / 2**30:.1f} GiB of rollout storage, more than a run allocates "
                              f"({MAX_ROLLOUT_BYTES / 2**30:g} GiB)")
        rows = max(self.minibatch_size, self.num_envs)
        activations = rows * (obs_elems + act_elems + 2 * sum(hidden)) * 4 * 4  # values, saved, grads, slack
        if activations > MAX_ACTIVATION_BYTES:
            raise ConfigError(f"{_locate(source, 'num_minibatches')}: PPO config value num_minibatches="
                              f"{self.num_minibatches} gives minibatches of {rows:,} transitions that need "
                              f"{activations / 2**30:.1f} GiB of activations through hidden_sizes={hidden!r}"
                              f"{inputs}, more than a run allocates ({MAX_ACTIVATION_BYTES / 2**30:g} GiB)")


def _space_size(space: gym.Space | None) -> tuple[int, int]:
    """``(elements, bytes)`` one transition stores of ``space`` (float32 Box observations and
    actions, int64 Discrete actions, a Dict's arrays as they are); ``(1, 4)`` for None."""
    if space is None:
        return 1, 4
    if isinstance(space, gym.spaces.Dict):  # stored per key with the key's own dtype
        sizes = [(math.prod(int(d) for d in (sub.shape or (1,))), np.dtype(sub.dtype or np.int64).itemsize)
                 for sub in space.spaces.values()]
        return sum(e for e, _ in sizes), sum(e * b for e, b in sizes)
    if isinstance(space, gym.spaces.Discrete):
        return 1, 8
    elements = math.prod(int(d) for d in (getattr(space, "shape", None) or (1,)))
    return elements, 4 * elements  # Box observations and actions are stored as float32
