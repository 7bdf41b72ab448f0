"""Running observation and reward normalisers for PPO, batch-first, in torch.

Both normalisers follow Stable-Baselines3's ``VecNormalize`` / Gymnasium's
``NormalizeObservation`` and ``NormalizeReward`` (the "37 implementation details of PPO",
continuous details 6-9: observation normalisation, observation clipping, reward scaling,
reward clipping), but work on a whole batch ``(B, ...)`` of tensors at once, on whatever
device the tensors live on, with no per-environment Python loop.

Statistics are kept in float64 and are part of :meth:`state_dict`, so a checkpoint restores
them exactly.
"""

from __future__ import annotations

from typing import Any

import torch


class RunningMeanStd:
    """Running mean and variance over the leading (batch) axis, merged with Chan et al.'s
    parallel algorithm (as ``stable_baselines3.common.running_mean_std.RunningMeanStd``).

    Args:
        shape: shape of one sample, e.g. ``(17,)`` for observations or ``()`` for returns.
        device: where the statistics live.
        epsilon: initial pseudo-count (avoids division by zero before the first update).
    """

    def __init__(self, shape: tuple[int, ...] = (), device: torch.device | str = "cpu", epsilon: float = 1e-4):
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = torch.tensor(epsilon, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Merge a batch ``x`` of shape ``(N, *shape)``; rows where ``mask`` (N,) is False are ignored.

        The update stays on the device (no host synchronisation); with a mask the batch
        statistics are masked sums, and an all-False mask leaves the statistics unchanged.
        """
        x = x.to(torch.float64)
        if mask is None:
            batch_var, batch_mean = torch.var_mean(x, 0, correction=0)
            n: torch.Tensor | float = float(x.shape[0])
        else:
            w = mask.to(torch.float64).reshape((-1,) + (1,) * (x.dim() - 1))
            n = w.sum()
            batch_mean = (x * w).sum(0) / n.clamp_min(1.0)
            batch_var = ((x - batch_mean).square() * w).sum(0) / n.clamp_min(1.0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.var = (self.var * self.count + batch_var * n + delta.square() * (self.count * n / total)) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.cpu().clone(), "var": self.var.cpu().clone(), "count": self.count.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.mean.device
        self.mean = state["mean"].to(device=device, dtype=torch.float64).clone()
        self.var = state["var"].to(device=device, dtype=torch.float64).clone()
        self.count = state["count"].to(device=device, dtype=torch.float64).clone()


class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics.

    Args:
        shape: shape of one observation, e.g. ``(17,)``.
        clip: observations are clipped to ``[-clip, clip]`` after normalising (detail c7).
        device: where statistics and outputs live.
        epsilon: added to the variance.

    Calls take a batch ``(B, *shape)`` and return float32 ``(B, *shape)``.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, device: torch.device | str = "cpu",
                 epsilon: float = 1e-8):
        self.rms = RunningMeanStd(shape, device=device)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self._refresh()

    def _refresh(self) -> None:
        # float32 copies used on the hot path (one subtraction + one multiplication per call)
        self._mean32 = self.rms.mean.to(torch.float32)
        self._inv_std32 = (self.rms.var + self.epsilon).rsqrt().to(torch.float32)

    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch of raw observations ``(B, *shape)`` into the statistics."""
        self.rms.update(obs)
        self._refresh()

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalise a batch ``(B, *shape)`` with the current statistics (no update)."""
        out = (obs.to(torch.float32) - self._mean32) * self._inv_std32
        return out.clamp_(-self.clip, self.clip)

    def __call__(self, obs: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Update with ``obs`` (when ``update``), then normalise it (VecNormalize's order)."""
        if update:
            self.update(obs)
        return self.normalize(obs)

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "clip": self.clip, "epsilon": self.epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state["rms"])
        self.clip = float(state["clip"])
        self.epsilon = float(state["epsilon"])
        self._refresh()


class RewardNormalizer:
    """Scale rewards by the running standard deviation of the discounted return (detail c8),
    then clip (detail c9) — Gymnasium's ``NormalizeReward`` / SB3's ``VecNormalize``.

    Per environment it keeps the discounted return ``G <- gamma * G + r`` of the current
    episode (:meth:`step`, zeroed where an episode ended). Once per rollout,
    :meth:`normalize_rollout` merges the rollout's ``G`` values into the running statistics
    and returns ``clip(r / sqrt(var(G) + eps))`` for the whole ``(T, B)`` block. (SB3 merges
    every step; merging per rollout gives the same statistics up to the order of updates,
    with ``T`` times fewer small ops on the rollout's hot path.) Autoreset transitions
    (``valid = False``) neither enter the return nor the statistics.

    The normaliser only changes the rewards the learner trains on; it never touches the
    environment's ``info`` (episode statistics report the injected reward).

    Args:
        num_envs: ``B``.
        gamma: discount of the return whose spread is normalised (PPO's gamma).
        clip: normalised rewards are clipped to ``[-clip, clip]``.
        device: where statistics and outputs live.
        epsilon: added to the variance.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, device: torch.device | str = "cpu",
                 epsilon: float = 1e-8):
        self.rms = RunningMeanStd((), device=device)
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    def step(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Advance the running returns by one step.

        Args:
            reward: ``(B,)`` rewards of this step (0 on autoreset transitions).
            done: ``(B,)`` bool, the episode ended with this step (terminated | truncated).

        Returns:
            ``(B,)`` float64 discounted returns including this step (before the reset at ``done``).
        """
        self.returns = self.returns * self.gamma + reward
        out = self.returns
        self.returns = self.returns.masked_fill(done, 0.0)
        return out

    def normalize_rollout(self, rewards: torch.Tensor, returns: torch.Tensor, valid: torch.Tensor,
                          update: bool = True) -> torch.Tensor:
        """Merge ``returns[valid]`` into the statistics (when ``update``) and scale ``rewards``.

        Args:
            rewards: ``(T, B)`` rewards.
            returns: ``(T, B)`` the values :meth:`step` returned.
            valid: ``(T, B)`` bool, False for autoreset transitions.

        Returns:
            ``(T, B)`` float32 ``clip(rewards / sqrt(var + eps))``.
        """
        if update:
            self.rms.update(returns.reshape(-1), valid.reshape(-1))
        scale = torch.rsqrt(self.rms.var + self.epsilon)
        return (rewards.to(torch.float64) * scale).clamp_(-self.clip, self.clip).to(torch.float32)

    def reset(self) -> None:
        """Forget the running returns (all envs were reset); statistics are kept."""
        self.returns = torch.zeros_like(self.returns)

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "returns": self.returns.cpu().clone(), "gamma": self.gamma,
                "clip": self.clip, "epsilon": self.epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state["rms"])
        self.returns = state["returns"].to(device=self.returns.device, dtype=torch.float64).clone()
        self.gamma = float(state["gamma"])
        self.clip = float(state["clip"])
        self.epsilon = float(state["epsilon"])
