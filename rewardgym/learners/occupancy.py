"""Occupancy-regularised PPO (ORPO; Laidlaw et al., "Correlated Proxies: A New Definition and
Improved Mitigation for Reward Hacking"): keep the agent's state-action occupancy measure close
to a reference policy's, so that a proxy reward that is correlated with the true objective only
where the reference goes cannot be hacked far from there.

What is estimated
-----------------
A discriminator ``d(s, a)`` (an MLP giving one logit) is trained by logistic regression to tell
the agent's state-action pairs (label 1) from the reference policy's (label 0), with equally many
of each per update. Its optimum is ``d*(s, a) = log(mu_agent(s, a) / mu_ref(s, a))``, the
log-ratio of the two occupancy measures, so one discriminator gives both divergences:

* ``divergence="chi2"`` (default): the per-transition penalty is ``exp(d) - 1 = r - 1`` with
  ``r = mu_agent / mu_ref``. ``chi2(mu_agent || mu_ref) = E_agent[r] - 1`` is the mean penalty
  over the agent's transitions, and ``r - 1`` is (half) the gradient of the chi-squared
  divergence with respect to ``mu_agent``, i.e. the reward change whose policy gradient
  descends it. The paper's bound on how far the true reward can drop while the proxy rises
  is in terms of this chi-squared divergence of occupancy measures, which is why it is the
  default.
* ``divergence="kl"``: the penalty is ``d = log r``; ``KL(mu_agent || mu_ref) = E_agent[log r]``
  is its mean, and ``log r`` (+ 1) its gradient. This is what the authors' ORPO code
  (``om_divergence_type="kl"``) subtracts from the reward, and it is gentler than chi2 far
  from the reference (log instead of exp).

Both are zero in expectation, and zero per transition at the optimum, when the agent *is* the
reference policy, and grow as the agent's occupancy departs from it. The reward the agent
optimises is ``proxy - coef * clip(penalty, max=penalty_clip)`` (``coef`` is the paper's
lambda; the clip bounds what a confidently separating discriminator hands PPO, as the authors'
``discriminator_reward_clip`` does). A small L2 term on the logits (``logit_reg``) keeps an
unbeatable discriminator's logits finite.

How it runs inside PPO
----------------------
``PPO(env, config, regularizer=OccupancyRegularizer(ref_obs, ref_actions, OccupancyConfig(...)))``.
During a rollout the discriminator is frozen: each vector step's ``(raw observation, env
action)`` pairs get their penalty, which PPO subtracts from the reward *before* reward
normalisation and GAE (autoreset transitions get none). After PPO's update the discriminator
takes ``epochs`` passes over that rollout's real transitions against as many reference pairs
drawn from the bank, with its own Adam optimiser and its own seeded ``torch.Generator``.
Observations are the env's raw observations (not PPO's running normalisation, which moves) and
actions are what the env received (clipped to the bounds; one-hot for ``Discrete``); both are
standardised with the reference bank's fixed mean and std.

The reference is *data*: ``(observations, actions)`` arrays given by the caller
(``rewardgym train`` rolls out a reference run's policy; :mod:`rewardgym.runs.occupancy`).
They are part of :meth:`OccupancyRegularizer.state_dict`, so a checkpoint resumes without the
reference run, bit-identically (the discriminator, its optimiser, its generator and the window
of episode penalties are all in the state; see :mod:`rewardgym.learners.ppo`, *Exact resume*).
A bank read back from a checkpoint is checked (shapes, finiteness, size) before use.

Logged (merged into PPO's metrics each update): ``terms/occupancy_penalty`` (mean over the
window of finished episodes of the episode sum of ``-coef * penalty``, what was added to the
reward; ``episode_return`` excludes it), ``occupancy/penalty`` (mean per-transition
``coef * penalty`` of the rollout), ``occupancy/divergence`` (the rollout's estimate of the
chosen divergence), ``occupancy/disc_loss`` and ``occupancy/disc_accuracy``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rewardgym.envs.config import from_dict as _from_dict
from rewardgym.learners.tensors import cpu_copy

MAX_REFERENCE_TRANSITIONS = 1_000_000
"""Most reference state-action pairs a regulariser holds (a checkpoint asking for more is refused)."""
MAX_INPUT_DIM = 100_000
"""Most elements of one ``(observation, action)`` input of the discriminator."""


class OccupancyError(ValueError):
    """An occupancy-regulariser setting, or the reference data, is not usable."""


@dataclass
class OccupancyConfig:
    """Settings of the occupancy regulariser (module docstring). ``coef`` is ``--reg-coef``."""

    coef: float = 1.0
    """lambda: the reward becomes ``proxy - coef * penalty``; > 0."""
    divergence: Literal["chi2", "kl"] = "chi2"
    """``chi2``: penalty ``r - 1``; ``kl``: penalty ``log r`` (``r`` the occupancy ratio)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    epochs: int = 2
    """Passes of the discriminator over each rollout (and as many reference pairs)."""
    minibatch_size: int = 256
    logit_reg: float = 0.01
    """Weight of the mean squared logit in the discriminator loss (keeps it finite)."""
    penalty_clip: float = 10.0
    """Upper bound of the per-transition penalty before ``coef``."""
    reference_transitions: int = 20_000
    """Reference state-action pairs rolled out from the reference run (``rewardgym train``)."""
    reference_policy: Literal["stochastic", "deterministic"] = "stochastic"
    """How the reference run's policy acts while its pairs are collected: ``stochastic`` samples
    its Gaussian (the occupancy of the policy as trained; an agent can match it), ``deterministic``
    takes its mean action (a degenerate action distribution a stochastic agent never matches)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "occupancy options") -> "OccupancyConfig":
        config = _from_dict(cls, dict(data), source, OccupancyError, "occupancy option")
        config.validate(source)
        return config

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def validate(self, source: str = "occupancy options") -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise OccupancyError(f"{source}: occupancy option {f.name}={value!r} is not finite")
        checks = [("coef", self.coef > 0), ("divergence", self.divergence in ("chi2", "kl")),
                  ("hidden_sizes", 1 <= len(self.hidden_sizes) <= 8 and all(1 <= h <= 4096 for h in self.hidden_sizes)),
                  ("learning_rate", 0 < self.learning_rate <= 1), ("epochs", 1 <= self.epochs <= 100),
                  ("minibatch_size", 1 <= self.minibatch_size <= 1_000_000), ("logit_reg", self.logit_reg >= 0),
                  ("penalty_clip", self.penalty_clip > 0),
                  ("reference_transitions", 1 <= self.reference_transitions <= MAX_REFERENCE_TRANSITIONS),
                  ("reference_policy", self.reference_policy in ("stochastic", "deterministic"))]
        for key, ok in checks:
            if not ok:
                raise OccupancyError(f"{source}: occupancy option {key}={getattr(self, key)!r} is out of range")


def action_features(action_space: gym.Space) -> int:
    """Discriminator input width of one action: the flat ``Box`` size, or ``n`` (one-hot) for ``Discrete``."""
    if isinstance(action_space, gym.spaces.Box):
        return int(np.prod(action_space.shape))
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    raise OccupancyError(f"occupancy regularisation supports Box and Discrete actions, not {action_space}")


class Discriminator(nn.Module):
    """``d(s, a)``: an MLP from the standardised ``[obs, action]`` to one logit (tanh hidden layers)."""

    def __init__(self, in_dim: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for h in hidden_sizes:
            layers += [nn.Linear(last, h), nn.Tanh()]
            last = h
        layers.append(nn.Linear(last, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class OccupancyRegularizer:
    """The discriminator, its optimiser and the reference bank (module docstring).

    Args:
        reference_obs: ``(N, obs_dim)`` raw observations of the reference policy's transitions.
        reference_actions: ``(N, act_dim)`` the actions the env received (``Discrete``: one-hot
            rows, ``act_dim = n``).
        config: an :class:`OccupancyConfig` (or a dict of its fields).
        seed: seeds the discriminator's initial weights and its sampling generator.

    Raises:
        OccupancyError: the bank is empty, too large, not finite or not 2-D.
    """

    def __init__(self, reference_obs: Any, reference_actions: Any, config: OccupancyConfig | Mapping[str, Any],
                 seed: int = 0):
        self.config = config if isinstance(config, OccupancyConfig) else OccupancyConfig.from_dict(config)
        self.config.validate()
        obs = _as_matrix(reference_obs, "reference observations")
        actions = _as_matrix(reference_actions, "reference actions")
        if len(obs) != len(actions):
            raise OccupancyError(f"reference data: {len(obs)} observations but {len(actions)} actions")
        if not 1 <= len(obs) <= MAX_REFERENCE_TRANSITIONS:
            raise OccupancyError(f"reference data: {len(obs):,} transitions; 1 to {MAX_REFERENCE_TRANSITIONS:,} "
                                 f"are accepted")
        if obs.shape[1] + actions.shape[1] > MAX_INPUT_DIM:
            raise OccupancyError(f"reference data: {obs.shape[1] + actions.shape[1]:,} features per transition; at "
                                 f"most {MAX_INPUT_DIM:,}")
        self.seed = int(seed)
        self.ref_obs, self.ref_actions = obs, actions
        self.obs_dim, self.act_dim = obs.shape[1], actions.shape[1]
        bank = torch.cat([obs, actions], dim=1)
        self._mean = bank.mean(0)
        self._std = bank.std(0, unbiased=False).clamp_min(1e-3)  # constant features (a locked gripper) stay 0
        seed_state = np.random.SeedSequence([self.seed, 0x0CC0]).generate_state(2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed_state[0]))
            self.discriminator = Discriminator(bank.shape[1], self.config.hidden_sizes)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.config.learning_rate)
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed_state[1]))
        self.device = torch.device("cpu")
        self.updates = 0
        self.window: deque[float] = deque(maxlen=100)
        self._last: dict[str, float] = {}
        self._bound = False

    # ------------------------------------------------------------------ binding to a learner
    def bind(self, observation_space: gym.Space, action_space: gym.Space, num_steps: int, num_envs: int,
             device: torch.device, stats_window: int = 100) -> None:
        """Check the spaces against the bank and allocate the rollout storage (``PPO`` calls this)."""
        if not isinstance(observation_space, gym.spaces.Box):
            raise OccupancyError(f"occupancy regularisation supports Box observations, not {observation_space}")
        obs_dim, act_dim = int(np.prod(observation_space.shape)), action_features(action_space)
        if (obs_dim, act_dim) != (self.obs_dim, self.act_dim):
            raise OccupancyError(f"reference data has {self.obs_dim} observation and {self.act_dim} action features "
                                 f"per transition; this env has {obs_dim} and {act_dim}: the reference is of "
                                 f"another task")
        self._discrete = isinstance(action_space, gym.spaces.Discrete)
        self.device = torch.device(device)
        for name in ("ref_obs", "ref_actions", "_mean", "_std"):
            setattr(self, name, getattr(self, name).to(self.device))
        self.discriminator.to(self.device)
        _optimizer_to(self.optimizer, self.device)
        self._inputs = torch.zeros((num_steps, num_envs, obs_dim + act_dim), device=self.device)
        self._valid = torch.zeros((num_steps, num_envs), dtype=torch.bool, device=self.device)
        self._penalty = torch.zeros((num_steps, num_envs), device=self.device)
        self._episode = torch.zeros(num_envs, dtype=torch.float64, device=self.device)
        self.window = deque(self.window, maxlen=stats_window)
        self._bound = True

    def reset(self) -> None:
        """Forget the episodes in progress (PPO resets every env at the start of a segment)."""
        if self._bound:
            self._episode.zero_()

    def episode_window(self) -> list[float]:
        """The finished episodes' penalties, to restore if a rollout is cut short."""
        return list(self.window)

    def restore_episode_window(self, values: list[float]) -> None:
        self.window = deque(values, maxlen=self.window.maxlen)

    # ------------------------------------------------------------------ rollout
    def _features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._discrete and actions.dim() == 1:
            actions = F.one_hot(actions.long(), self.act_dim)
        x = torch.cat([obs.reshape(obs.shape[0], -1).float(), actions.reshape(actions.shape[0], -1).float()], dim=1)
        return (x - self._mean) / self._std

    def _penalty_of(self, logits: torch.Tensor) -> torch.Tensor:
        clip = self.config.penalty_clip
        if self.config.divergence == "kl":
            return logits.clamp(max=clip)
        return torch.expm1(logits.clamp(max=math.log1p(clip)))  # r - 1, at most clip

    @torch.no_grad()
    def penalty(self, t: int, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor,
                done: torch.Tensor) -> torch.Tensor:
        """``coef * penalty(s_t, a_t)`` per env ``(B,)`` (0 where ``valid`` is False), recorded for
        the discriminator's next update and summed into the episodes that ``done`` ends.

        Args:
            t: the rollout step.
            obs: ``(B, *obs_shape)`` raw observations ``s_t``.
            actions: ``(B, act_dim)`` (or ``(B,)`` Discrete) actions the env received.
            valid: ``(B,)`` bool, False on autoreset transitions.
            done: ``(B,)`` bool, the step ended its episode.
        """
        x = self._features(obs.to(self.device), actions.to(self.device))
        self._inputs[t] = x
        self._valid[t] = valid
        p = self._penalty_of(self.discriminator(x)) * self.config.coef
        p = p.masked_fill(~valid, 0.0)
        self._penalty[t] = p
        self._episode -= p.double()
        if bool(done.any()):
            self.window.extend(self._episode[done].cpu().tolist())
            self._episode.masked_fill_(done, 0.0)
        return p

    # ------------------------------------------------------------------ training
    def update(self) -> dict[str, float]:
        """Train the discriminator on the last rollout against the reference bank; returns its metrics."""
        cfg = self.config
        valid = self._valid.reshape(-1)
        agent = self._inputs.reshape(-1, self._inputs.shape[-1])[valid]
        n = agent.shape[0]
        penalty = self._penalty.reshape(-1)[valid]
        rollout = {"occupancy/penalty": float(penalty.mean()) if n else 0.0,
                   "occupancy/divergence": float(penalty.mean()) / cfg.coef if n else 0.0}
        if n == 0:
            self._last = rollout
            return rollout
        ref_all = self._features(self.ref_obs, self.ref_actions)
        loss_sum, correct, seen = 0.0, 0.0, 0
        for _ in range(cfg.epochs):
            # indices drawn on the CPU generator (its state is checkpointed), used on the device
            perm = torch.randperm(n, generator=self.generator).to(self.device)
            ref_idx = torch.randint(len(ref_all), (n,), generator=self.generator).to(self.device)
            for start in range(0, n, cfg.minibatch_size):
                a = agent[perm[start:start + cfg.minibatch_size]]
                r = ref_all[ref_idx[start:start + cfg.minibatch_size]]
                la, lr = self.discriminator(a), self.discriminator(r)
                loss = F.softplus(-la).mean() + F.softplus(lr).mean()  # agent -> 1, reference -> 0
                loss = loss + cfg.logit_reg * 0.5 * (la.square().mean() + lr.square().mean())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                with torch.no_grad():
                    loss_sum += float(loss) * len(a)
                    correct += float((la > 0).float().sum() + (lr < 0).float().sum())
                    seen += len(a)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"the occupancy discriminator's loss became non-finite at its update "
                                     f"{self.updates}: lower its learning_rate (now {cfg.learning_rate})")
        self.updates += 1
        self._last = {**rollout, "occupancy/disc_loss": loss_sum / seen, "occupancy/disc_accuracy": correct / (2 * seen)}
        return self._last

    def metrics(self) -> dict[str, float]:
        """What PPO logs each update (module docstring)."""
        out = dict(self._last)
        if self.window:
            out["terms/occupancy_penalty"] = float(np.mean(self.window))
        return out

    @torch.no_grad()
    def penalties(self, obs: Any, actions: Any) -> np.ndarray:
        """``coef * penalty`` of a batch of ``(raw observation, env action)`` pairs (analysis, tests)."""
        x = self._features(torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device),
                           torch.as_tensor(np.asarray(actions), device=self.device))
        return (self._penalty_of(self.discriminator(x)) * self.config.coef).cpu().numpy()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers: the reference bank, the discriminator, its optimiser and
        generator, the update count and the window of episode penalties."""
        return {"config": self.config.to_dict(), "seed": self.seed, "updates": self.updates,
                "reference_obs": self.ref_obs.cpu().clone(), "reference_actions": self.ref_actions.cpu().clone(),
                "discriminator": {k: v.detach().cpu().clone() for k, v in self.discriminator.state_dict().items()},
                "optimizer": cpu_copy(self.optimizer.state_dict()),
                "generator": self.generator.get_state().clone(),
                "window": list(self.window), "last": dict(self._last)}

    @classmethod
    def from_state_dict(cls, state: Any, config: OccupancyConfig | Mapping[str, Any] | None = None,
                        seed: int | None = None) -> "OccupancyRegularizer":
        """A regulariser rebuilt from :meth:`state_dict` (a checkpoint: data, checked before use).
        ``config``/``seed`` default to the state's; they must agree with it."""
        if not isinstance(state, Mapping):
            raise OccupancyError("checkpoint occupancy state is not a table")
        try:
            saved = OccupancyConfig.from_dict(state.get("config", {}), "checkpoint occupancy config")
        except OccupancyError as exc:
            raise OccupancyError(str(exc)) from None
        config = saved if config is None else (
            config if isinstance(config, OccupancyConfig) else OccupancyConfig.from_dict(config))
        if config.to_dict() != saved.to_dict():
            diff = sorted(k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v)
            raise OccupancyError(f"checkpoint occupancy options differ from this run's ({', '.join(diff)})")
        reg = cls(state.get("reference_obs"), state.get("reference_actions"), config,
                  seed=int(state.get("seed", 0)) if seed is None else seed)
        reg.load_state_dict(state)
        return reg

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a regulariser built on the same bank and config."""
        for name, mine in (("reference_obs", self.ref_obs), ("reference_actions", self.ref_actions)):
            theirs = state.get(name)
            if not isinstance(theirs, torch.Tensor) or theirs.shape != mine.shape or \
                    not torch.equal(theirs.to(mine.device, mine.dtype), mine):
                raise OccupancyError(f"checkpoint occupancy {name} differ from this regulariser's reference data")
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        _optimizer_to(self.optimizer, self.device)
        self.generator.set_state(state["generator"])
        self.updates = int(state.get("updates", 0))
        self.window = deque((float(v) for v in state.get("window", [])), maxlen=self.window.maxlen)
        self._last = {str(k): float(v) for k, v in dict(state.get("last", {})).items()}


def _as_matrix(values: Any, what: str) -> torch.Tensor:
    """``values`` as a finite float32 ``(N, D)`` CPU tensor (a ``(N,)`` vector becomes ``(N, 1)``)."""
    if values is None:
        raise OccupancyError(f"{what}: missing")
    try:
        x = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise OccupancyError(f"{what}: not an array ({exc})") from None
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise OccupancyError(f"{what}: expected a non-empty (N, D) array, got shape {tuple(x.shape)}")
    if x.numel() > MAX_REFERENCE_TRANSITIONS * 1000:
        raise OccupancyError(f"{what}: {x.numel():,} values; too large")
    x = x.detach().to("cpu", torch.float32).clone()
    if not torch.isfinite(x).all():
        raise OccupancyError(f"{what}: holds non-finite values")
    return x


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)
