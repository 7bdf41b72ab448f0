"""Proximal Policy Optimization (Schulman et al., 2017, arXiv:1707.06347) in one file.

Modelled on CleanRL's ``ppo_continuous_action.py``: every step of the algorithm is here,
in order, and comments cite Huang et al., *The 37 Implementation Details of Proximal
Policy Optimization* (ICLR blog track 2022): "detail N" is its core list (1-13),
"detail cN" its continuous-action list (c1-c9). Hyper-parameters are in
:mod:`rewardgym.learners.config`, networks in :mod:`rewardgym.learners.policies`,
normalisers in :mod:`rewardgym.learners.normalize`. Read top to bottom: GAE
(:func:`compute_gae`), the clipped loss (:func:`ppo_loss`), then :class:`PPO` (rollout,
update); the compiled update (``_compiled_step``: the minibatch step as one ``torch.compile``
graph with Adam written out, measured in docs/PERFORMANCE.md) sits beside the eager one.

Environments
------------
``PPO`` trains on a Gymnasium 1.x vector env (``gym.make_vec("rewardgym/...")``,
``SyncVectorEnv``, ``AsyncVectorEnv``; a single ``gym.Env`` is wrapped in a one-env
``SyncVectorEnv``) or on a *torch-batched* env: one whose ``reset``/``step`` return
``torch.Tensor`` s (observations, rewards, ``terminated``, ``truncated``, e.g. a GPU
simulator). The protocol check is ``isinstance(obs, torch.Tensor)`` on the observation
from ``reset``; such an env receives actions as tensors on the policy's device, and the
rollout then never leaves torch (no host round trip per step).

Autoreset. Gymnasium 1.x vector envs reset *on the next step* (``AutoresetMode.NEXT_STEP``):
after a step where env ``i`` returned ``terminated | truncated``, the following ``step``
ignores env ``i``'s action and returns its reset observation with reward 0. That
transition is not an environment transition: it is stored with ``valid = False`` and
excluded from the loss, the advantage normalisation, the statistics and the episode
returns. It also gives us the episode's final observation for free: it is the stored
observation of the autoreset step, so a *truncated* episode is bootstrapped with
``V(final obs)`` while a *terminated* one is not (see :func:`compute_gae`). Torch-batched
envs must follow the same convention.

Exact resume
------------
A :meth:`PPO.learn` call is a *segment*. Every segment starts by resetting all envs with a
seed derived from ``(config.seed, update index)`` (``config.seed`` itself at update 0),
and with ``config.reset_interval = k > 0`` the envs are also re-seeded and reset every
``k`` updates. :meth:`PPO.state_dict` holds everything else the learner's future depends
on: the policy, the optimizer, both normalisers (with the running discounted returns),
the torch generator that draws actions and minibatch permutations, ``global_step``, the
update index and the episode-statistics windows. Hence, on the same device and torch
build with the same config and freshly built envs:

* ``state_dict`` -> fresh ``PPO`` -> ``load_state_dict`` -> ``learn(T)`` gives
  bit-identical parameters to continuing ``learn(T)`` in the original process;
* a checkpoint taken at an update index that is a multiple of ``reset_interval`` resumes
  bit-identically to the uninterrupted run (``tests/test_ppo.py::test_exact_resume``).

With an occupancy regulariser (``PPO(..., regularizer=...)``, ORPO:
:mod:`rewardgym.learners.occupancy`) its state (discriminator, optimiser, generator, reference
data) is part of the state dict too, and the same guarantees hold
(``tests/test_occupancy.py``).

Env states (simulator internals, partial episodes) are *not* in a checkpoint: at any
other update index the resumed run differs from the uninterrupted one only in that the
envs were reset at the resume point. Exactness is a CPU guarantee; CUDA kernels may be
non-deterministic.

Size: above 600 lines because the algorithm in one file, CleanRL-style, by design (its
hyper-parameters are in learners/config.py).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewardgym.learners.config import ConfigError, PPOConfig  # noqa: F401 (ConfigError: this module's API too)
from rewardgym.learners.episodes import EpisodeWindow
from rewardgym.learners.normalize import ObsNormalizer, RewardNormalizer
from rewardgym.learners.occupancy import OccupancyRegularizer
from rewardgym.learners.policies import ActorCritic, MLPActorCritic, make_policy
from rewardgym.learners.tensors import cpu_copy
from rewardgym.rewards.shaping import check_agent_gamma

CHECKPOINT_FORMAT = 1
COMPILE_AUTO_MIN_STEPS = 100_000
"""``compile="auto"`` compiles the update of a ``learn`` call with at least this many steps to go."""

class TrainingDiverged(FloatingPointError):
    """The losses or the policy's actions stopped being finite; training stops before NaNs
    reach a simulator or a checkpoint."""


# ----------------------------------------------------------------------------- GAE
def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor,
                dones: torch.Tensor, valid: torch.Tensor, gamma: float, gae_lambda: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al., 2016; detail 5) with next-step autoreset.

    Args:
        rewards: ``(T, B)`` reward of step ``t`` (already normalised, 0 where invalid).
        values: ``(T, B)`` ``V(obs_t)``.
        next_value: ``(B,)`` ``V`` of the observation after the last step.
        terminated: ``(T, B)`` bool, step ``t`` ended its episode in a terminal state.
        dones: ``(T, B)`` bool, step ``t`` ended its episode (terminated or truncated).
        valid: ``(T, B)`` bool, False for autoreset transitions (``obs_t`` is the final
            observation of the previous episode and the action was ignored).
        gamma, gae_lambda: discount and GAE's lambda.

    Returns:
        ``(advantages, returns)``, both ``(T, B)``; 0 advantage and ``return = V`` where invalid.

    With next-step autoreset ``obs_{t+1}`` is always the true successor of ``obs_t`` (on
    a done step it is the final observation, stored at the autoreset step ``t + 1``), so::

        delta_t = r_t + gamma * V(obs_{t+1}) * (1 - terminated_t) - V(obs_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    i.e. time-limit truncation bootstraps from the final observation (Pardo et al., 2018),
    termination does not, and no advantage flows across an episode boundary.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    not_terminal = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - dones.to(rewards.dtype)
    valid_f = valid.to(rewards.dtype)
    last = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        following = next_value if t == num_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * following * not_terminal[t] - values[t]
        last = (delta + gamma * gae_lambda * not_done[t] * last) * valid_f[t]
        advantages[t] = last
    return advantages, advantages + values


# ----------------------------------------------------------------------------- loss
def ppo_loss(newlogprob: torch.Tensor, entropy: torch.Tensor, newvalue: torch.Tensor, mb: Mapping[str, torch.Tensor],
             cfg: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's loss on one minibatch (Schulman et al., 2017, eq. 9), masked by ``mb["weights"]``.

    Args:
        newlogprob, entropy, newvalue: ``(M,)`` from the current policy.
        mb: ``(M,)`` tensors ``logprobs`` (behaviour policy), ``advantages``, ``returns``,
            ``values`` (rollout value estimates) and ``weights`` (1 real transition, 0 autoreset).
        cfg: coefficients.

    Returns:
        ``(loss, stats)`` with ``stats = [pg_loss, v_loss, entropy, old_approx_kl, approx_kl,
        clipfrac]`` (detached, means over real transitions).
    """
    w = mb["weights"]
    n = w.sum().clamp_min(1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum() / n

    logratio = newlogprob - mb["logprobs"]
    ratio = logratio.exp()
    adv = mb["advantages"]
    if cfg.norm_adv:  # detail 7: per-minibatch advantage normalisation
        mu = mean(adv)
        adv = (adv - mu) / (torch.sqrt(mean((adv - mu).square())) + 1e-8)
    # detail 8: clipped surrogate objective
    pg_loss = mean(torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)))
    # detail 9: value loss, clipped around the rollout's value estimate
    if cfg.clip_vloss:
        v_clipped = mb["values"] + torch.clamp(newvalue - mb["values"], -cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * mean(torch.max((newvalue - mb["returns"]).square(), (v_clipped - mb["returns"]).square()))
    else:
        v_loss = 0.5 * mean((newvalue - mb["returns"]).square())
    entropy_loss = mean(entropy)
    # detail 10: one loss for actor and critic with an entropy bonus
    loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss
    with torch.no_grad():  # detail 12: debug variables; approx_kl is Schulman's k3 estimator
        stats = torch.stack([pg_loss, v_loss, entropy_loss, mean(-logratio), mean((ratio - 1) - logratio),
                             mean(((ratio - 1.0).abs() > cfg.clip_coef).float())]).detach()
    return loss, stats


# ----------------------------------------------------------------------------- helpers
def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


class _Buffer:
    """Preallocated rollout storage ``(T, B, ...)`` on the training device."""

    def __init__(self, num_steps: int, num_envs: int, obs_spec: dict[str, tuple[tuple[int, ...], torch.dtype]] | tuple,
                 action_shape: tuple[int, ...], action_dtype: torch.dtype, device: torch.device):
        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((num_steps, num_envs, *shape), dtype=dtype, device=device)

        if isinstance(obs_spec, dict):
            self.obs: torch.Tensor | dict[str, torch.Tensor] = {k: zeros(*s, dtype=d) for k, (s, d) in obs_spec.items()}
        else:
            self.obs = zeros(*obs_spec[0], dtype=obs_spec[1])
        self.actions = zeros(*action_shape, dtype=action_dtype)
        self.logprobs = zeros()
        self.values = zeros()
        self.rewards = zeros()  # raw during the rollout, normalised in place at its end
        self.disc_returns = zeros(dtype=torch.float64)  # reward normaliser's running returns
        self.terminated = zeros(dtype=torch.bool)
        self.dones = zeros(dtype=torch.bool)
        self.valid = zeros(dtype=torch.bool)
        self.episode_return = zeros(dtype=torch.float64)  # return so far of the episode of (t, env); read where dones
        self.episode_length = zeros(dtype=torch.int64)


class PPO:
    """PPO learner for a vector env (see the module docstring for envs, autoreset, resume).

    Args:
        env: a Gymnasium vector env, a single ``gym.Env`` (wrapped), or a torch-batched env.
        config: a :class:`PPOConfig` (used as given), or a dict / ``None`` for
            :meth:`PPOConfig.for_space` (the network's defaults, overridden by the dict).
        policy: builds the actor-critic from ``(observation_space, action_space, config)``
            (default :func:`~rewardgym.learners.policies.make_policy`), under the seeded RNG; e.g.
            MAPPO's centralised critic (:func:`rewardgym.learners.mappo.mappo_policy`) or a network
            class of your own. Its ``ARCH`` is what checkpoints record.
        regularizer: an :class:`~rewardgym.learners.occupancy.OccupancyRegularizer` (ORPO): its
            per-transition penalty is subtracted from the reward before normalisation and GAE,
            its discriminator trains after every update, and its state is in :meth:`state_dict`.

    Example::

        envs = gym.make_vec("rewardgym/HalfCheetah-Run-v0", num_envs=8, reward="expert")
        agent = PPO(envs, PPOConfig(seed=0)).learn(1_000_000, callback=print)
        action, _ = agent.predict(obs, deterministic=True)
    """

    def __init__(self, env: Any, config: PPOConfig | Mapping[str, Any] | None = None,
                 policy: Callable[[gym.Space, gym.Space, PPOConfig], ActorCritic] | None = None,
                 regularizer: OccupancyRegularizer | None = None):
        if isinstance(env, gym.Env):  # a single env: a one-env vector env (next-step autoreset)
            single = env
            env = gym.vector.SyncVectorEnv([lambda: single])
        cfg = config if isinstance(config, PPOConfig) else PPOConfig.for_space(
            env.single_observation_space, config, source="PPO(config=...)")
        cfg.validate()
        cfg.check_sizes(env.single_observation_space, env.single_action_space, source="PPO config")
        mode = getattr(env, "metadata", {}).get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if str(getattr(mode, "value", mode)) != gym.vector.AutoresetMode.NEXT_STEP.value:
            raise ValueError(f"PPO needs a vector env with next-step autoreset (Gymnasium's default), got {mode}")
        if env.num_envs != cfg.num_envs:
            raise ConfigError(f"config num_envs={cfg.num_envs} but the env has num_envs={env.num_envs}")
        self.env = env
        self.config = cfg
        # Potential-based shaping is policy-invariant only with the learner's own discount.
        check_agent_gamma(env, self.config.gamma)
        self.observation_space: gym.Space = env.single_observation_space
        self.action_space: gym.Space = env.single_action_space
        self.device = self._resolve_device(cfg.device, env)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        elif self.device.type == "cpu":
            torch.set_num_threads(1)

        # detail 2: orthogonal init drawn from the seed, without touching the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            built = (policy or make_policy)(self.observation_space, self.action_space, cfg)
        self.policy: ActorCritic = built.to(self.device)
        # detail 3: Adam with eps 1e-5
        self._params = list(self.policy.parameters())
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self._params, lr=cfg.learning_rate, eps=cfg.adam_eps, fused=fused)
        self._compiled: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor] | None = None
        self._compile_checked = False
        self._compile_now = cfg.compile is True  # decided per learn() call for compile="auto"
        # all learner randomness (action samples, minibatch permutations) comes from here
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)

        self._dict_obs = isinstance(self.observation_space, gym.spaces.Dict)
        self.obs_normalizer: ObsNormalizer | None = None
        if cfg.norm_obs and isinstance(self.observation_space, gym.spaces.Box):  # details c6, c7
            self.obs_normalizer = ObsNormalizer(self.observation_space.shape, cfg.obs_clip, self.device)
        self.reward_normalizer: RewardNormalizer | None = None
        if cfg.norm_reward:  # details c8, c9
            self.reward_normalizer = RewardNormalizer(cfg.num_envs, cfg.gamma, cfg.reward_clip, self.device)

        if self._dict_obs:
            keys = [k for k in ("glyphs", "glyphs_crop", "blstats", "message") if k in self.observation_space.spaces]
            obs_spec: Any = {k: (tuple(self.observation_space[k].shape), _torch_dtype(self.observation_space[k].dtype))
                             for k in keys}
        else:
            obs_spec = (tuple(self.observation_space.shape), torch.float32)
        if isinstance(self.action_space, gym.spaces.Box):
            action_shape, action_dtype = (int(np.prod(self.action_space.shape)),), torch.float32
        else:
            action_shape, action_dtype = (), torch.int64
        self.buffer = _Buffer(cfg.num_steps, cfg.num_envs, obs_spec, action_shape, action_dtype, self.device)

        self.global_step = 0
        self.update = 0
        self.episodes: deque[dict[str, float]] = deque(maxlen=cfg.stats_window)
        """Finished episodes (oldest first): ``return`` (injected reward, before normalisation), ``length``."""
        self.episode_stats = EpisodeWindow(cfg.stats_window)
        """rewardgym ``info["episode_stats"]`` of finished episodes: env return, success, terms."""
        self.torch_env: bool | None = None
        self._next_obs: Any = None
        self._next_done: torch.Tensor | None = None
        self._ep_return = torch.zeros(cfg.num_envs, dtype=torch.float64, device=self.device)
        self._ep_length = torch.zeros(cfg.num_envs, dtype=torch.int64, device=self.device)
        self.regularizer = regularizer
        self._next_raw_obs: torch.Tensor | None = None  # the env's own observation, for the regulariser
        if regularizer is not None:
            regularizer.bind(self.observation_space, self.action_space, cfg.num_steps, cfg.num_envs, self.device,
                             cfg.stats_window)

    # ------------------------------------------------------------------ setup
    def _resolve_device(self, device: str, env: Any) -> torch.device:
        if device != "auto":
            if device == "cuda" and not torch.cuda.is_available():
                raise ConfigError("config device='cuda' but CUDA is not available")
            return torch.device(device)
        env_device = getattr(env, "device", None)
        if isinstance(env_device, (str, torch.device)):
            return torch.device(env_device)
        if isinstance(self.observation_space, gym.spaces.Dict) and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def env_seed(self, update: int) -> int:
        """Seed of the env reset at update ``update``: ``config.seed`` at 0, else derived."""
        if update == 0:
            return self.config.seed
        return int(np.random.SeedSequence([self.config.seed, update]).generate_state(1)[0] % (2**31 - 2**16))

    def _obs_to_tensor(self, obs: Any, update_stats: bool) -> Any:
        """Env observation (numpy or torch, batch-first) -> tensors on the device, normalised."""
        if self._dict_obs:
            return {k: torch.as_tensor(obs[k]).to(self.device) for k in self.buffer.obs}
        x = torch.as_tensor(obs).to(self.device, torch.float32)
        if self.obs_normalizer is not None:
            x = self.obs_normalizer(x, update=update_stats)
        return x

    def _reset_envs(self) -> None:
        """Seed and reset every env (start of a segment, see the module docstring)."""
        obs, _ = self.env.reset(seed=self.env_seed(self.update))
        first = obs["glyphs"] if isinstance(obs, Mapping) else obs
        self.torch_env = isinstance(first, torch.Tensor)
        with torch.inference_mode():
            self._next_obs = self._obs_to_tensor(obs, update_stats=True)
            if self.regularizer is not None:
                self._next_raw_obs = torch.as_tensor(obs).to(self.device, torch.float32)
                self.regularizer.reset()
        self._next_done = torch.zeros(self.config.num_envs, dtype=torch.bool, device=self.device)
        self._ep_return.zero_()
        self._ep_length.zero_()
        if self.reward_normalizer is not None:
            self.reward_normalizer.reset()

    # ------------------------------------------------------------------ training
    def learn(self, total_timesteps: int, callback: Callable[[dict[str, Any]], bool | None] | None = None) -> "PPO":
        """Train until ``global_step >= total_timesteps`` (an absolute target, so a resumed
        run given the same ``total_timesteps`` finishes the original budget and anneals the
        learning rate on the same schedule).

        Args:
            total_timesteps: env steps of the whole run (``num_envs`` per vector step,
                autoreset steps included, as CleanRL and SB3 count).
            callback: called after every update with the metrics dict (see :meth:`_metrics`);
                returning ``False`` stops training (the update just done is kept).

        Returns:
            ``self``.
        """
        cfg = self.config
        num_updates = math.ceil(total_timesteps / cfg.batch_size)
        if cfg.compile == "auto":  # decided by the run's target, so a resumed run decides the same
            self._compile_now = isinstance(self.policy, MLPActorCritic) and total_timesteps >= COMPILE_AUTO_MIN_STEPS
        self._reset_envs()
        start_update, start_step, start_time = self.update, self.global_step, time.perf_counter()
        while self.update < num_updates:
            if cfg.reset_interval and self.update % cfg.reset_interval == 0 and self.update != start_update:
                self._reset_envs()
            # detail 4: linear learning-rate annealing to 0 at the end of the run
            lr = cfg.learning_rate * (1.0 - self.update / num_updates) if cfg.anneal_lr else cfg.learning_rate
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            rng = self.generator.get_state()
            penalties = self.regularizer.episode_window() if self.regularizer is not None else None
            try:
                self._collect_rollout()
            except BaseException:  # a reward error, Ctrl-C: the checkpoint then resumes at this update
                self.generator.set_state(rng)
                if penalties is not None:
                    self.regularizer.restore_episode_window(penalties)
                raise
            t1 = time.perf_counter()
            stats = self._train()
            if self.regularizer is not None:  # the discriminator learns from the rollout PPO just used
                self.regularizer.update()
            t2 = time.perf_counter()
            self.update += 1
            metrics = self._metrics(stats, lr)
            elapsed = time.perf_counter() - start_time
            metrics.update(fps=(self.global_step - start_step) / max(elapsed, 1e-9), time_elapsed=elapsed,
                           time_rollout=t1 - t0, time_update=t2 - t1)
            if callback is not None and callback(metrics) is False:
                break
        return self

    @torch.inference_mode()
    def _collect_rollout(self) -> None:
        """Fill the buffer with ``num_steps`` vector steps (detail 1)."""
        cfg, buf, policy, gen = self.config, self.buffer, self.policy, self.generator
        torch_env = self.torch_env
        device = self.device
        norm_r = self.reward_normalizer
        obs, next_done = self._next_obs, self._next_done
        ep_return, ep_length = self._ep_return, self._ep_length
        reg, raw_obs = self.regularizer, self._next_raw_obs
        for t in range(cfg.num_steps):
            if self._dict_obs:
                for k, v in obs.items():
                    buf.obs[k][t] = v
            else:
                buf.obs[t] = obs
            # the step after a done is the autoreset transition: not a real transition
            valid = ~next_done
            buf.valid[t] = valid
            action, logprob, value = policy.act(obs, gen)
            buf.actions[t] = action
            buf.logprobs[t] = logprob
            buf.values[t] = value
            env_action = policy.env_action(action)  # clipped to the bounds (detail c5)
            if torch_env:
                next_obs, reward, terminated, truncated, info = self.env.step(env_action)
                reward = reward.to(device, torch.float32)
                terminated = terminated.to(device, torch.bool)
                truncated = truncated.to(device, torch.bool)
            else:
                np_action = env_action.cpu().numpy()
                if np_action.dtype.kind == "f" and not np.isfinite(np_action).all():
                    raise TrainingDiverged(f"the policy produced non-finite actions at update {self.update}: its "
                                           f"parameters are no longer finite; nothing was sent to the environment")
                next_obs, reward, terminated, truncated, info = self.env.step(np_action)
                reward = torch.from_numpy(np.asarray(reward, dtype=np.float32)).to(device)
                terminated = torch.from_numpy(np.asarray(terminated, dtype=np.bool_)).to(device)
                truncated = torch.from_numpy(np.asarray(truncated, dtype=np.bool_)).to(device)
                if "episode_stats" in info:
                    self._add_episode_stats(info)
            next_done = terminated | truncated
            reward = reward.masked_fill(~valid, 0.0)  # autoreset step: no reward
            # the agent optimises the injected reward minus the occupancy penalty (ORPO); the
            # logged episode return stays the injected reward's (the penalty is its own term)
            trained = reward if reg is None else reward - reg.penalty(t, raw_obs, env_action, valid, next_done)
            buf.rewards[t] = trained
            if norm_r is not None:  # details c8-c9 (scaled after the rollout; info is never touched)
                buf.disc_returns[t] = norm_r.step(trained, next_done)
            # episode bookkeeping on the raw (injected) reward, without host synchronisation
            ep_return += reward
            ep_length += valid
            buf.episode_return[t] = ep_return
            buf.episode_length[t] = ep_length
            ep_return.masked_fill_(next_done, 0.0)
            ep_length.masked_fill_(next_done, 0)
            buf.terminated[t] = terminated
            buf.dones[t] = next_done
            obs = self._obs_to_tensor(next_obs, update_stats=True)  # details c6-c7
            if reg is not None:
                raw_obs = torch.as_tensor(next_obs).to(device, torch.float32)
        self.global_step += cfg.num_steps * cfg.num_envs
        self._next_obs, self._next_done, self._next_raw_obs = obs, next_done, raw_obs
        self._next_value = policy.value(obs)
        if norm_r is not None:
            buf.rewards.copy_(norm_r.normalize_rollout(buf.rewards, buf.disc_returns, buf.valid))
        # one host transfer per rollout for the finished episodes (time-major order)
        ended = buf.dones.reshape(-1)
        returns = buf.episode_return.reshape(-1)[ended].cpu().tolist()
        lengths = buf.episode_length.reshape(-1)[ended].cpu().tolist()
        for ret, length in zip(returns, lengths):
            self.episodes.append({"return": ret, "length": length})

    def _add_episode_stats(self, info: Mapping[str, Any]) -> None:
        self.episode_stats.add(info["episode_stats"], info["_episode_stats"])

    def _train(self) -> dict[str, float]:
        """GAE, then ``update_epochs`` epochs of minibatch updates (detail 6).

        Autoreset transitions stay in the batch with weight 0 (``valid``), so every
        minibatch has the same shape (what ``torch.compile`` and CUDA want) and contributes
        only real transitions to the loss, the advantage statistics and the debug variables.
        """
        cfg, buf = self.config, self.buffer
        with torch.no_grad():
            advantages, returns = compute_gae(buf.rewards, buf.values, self._next_value, buf.terminated, buf.dones,
                                              buf.valid, cfg.gamma, cfg.gae_lambda)

        def flat(x: torch.Tensor) -> torch.Tensor:
            return x.reshape((-1,) + x.shape[2:])

        batch = {"actions": flat(buf.actions), "logprobs": flat(buf.logprobs), "advantages": flat(advantages),
                 "returns": flat(returns), "values": flat(buf.values), "weights": flat(buf.valid).float()}
        b_obs = {k: flat(v) for k, v in buf.obs.items()} if self._dict_obs else flat(buf.obs)
        step = self._compiled_step() if self._compile_now else self._eager_step
        totals = torch.zeros(6, device=self.device)  # pg loss, v loss, entropy, old kl, kl, clipfrac
        count, epochs_done = 0, 0
        for _ in range(cfg.update_epochs):
            # a fresh permutation of the whole batch every epoch, gathered once, sliced into minibatches
            perm = torch.randperm(cfg.batch_size, generator=self.generator, device=self.device)
            p_obs = {k: v[perm] for k, v in b_obs.items()} if self._dict_obs else b_obs[perm]
            p_batch = {k: v[perm] for k, v in batch.items()}
            epoch_stats = torch.zeros(6, device=self.device)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                sl = slice(start, start + cfg.minibatch_size)
                mb_obs = {k: v[sl] for k, v in p_obs.items()} if self._dict_obs else p_obs[sl]
                epoch_stats += step(mb_obs, {k: v[sl] for k, v in p_batch.items()})
                count += 1
            totals += epoch_stats
            epochs_done += 1
            # early stopping on the approximate KL of the epoch (CleanRL checks it after each epoch)
            if cfg.target_kl is not None and float(epoch_stats[4]) / cfg.num_minibatches > cfg.target_kl:
                break
        means = (totals / max(count, 1)).tolist()
        if not all(math.isfinite(m) for m in means[:3]):
            raise TrainingDiverged(
                f"PPO losses became non-finite at update {self.update} (policy loss {means[0]}, value loss {means[1]}, "
                f"entropy {means[2]}): lower learning_rate (now {cfg.learning_rate}) or bound the reward's scale "
                f"(norm_reward={cfg.norm_reward})")
        valid = buf.valid.reshape(-1)
        y_pred, y_true = batch["values"][valid], batch["returns"][valid]
        var_y = float(y_true.var()) if y_true.numel() > 1 else float("nan")
        explained = float("nan") if not var_y or math.isnan(var_y) else 1.0 - float((y_true - y_pred).var()) / var_y
        return {"policy_loss": means[0], "value_loss": means[1], "entropy": means[2], "old_approx_kl": means[3],
                "approx_kl": means[4], "clipfrac": means[5], "explained_variance": explained,
                "epochs": epochs_done, "valid_fraction": float(valid.float().mean())}

    def _eager_step(self, obs: Any, mb: dict[str, torch.Tensor]) -> torch.Tensor:
        """One minibatch update with autograd and ``torch.optim.Adam``; returns the 6 debug values."""
        newlogprob, entropy, newvalue = self.policy.evaluate(obs, mb["actions"])
        loss, stats = ppo_loss(newlogprob, entropy, newvalue, mb, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self._params, self.config.max_grad_norm, foreach=True)  # detail 11
        self.optimizer.step()
        return stats

    def _compiled_step(self) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
        """The same update as :meth:`_eager_step` as one ``torch.compile`` d graph.

        Gradients come from ``torch.func.grad_and_value`` and Adam is written out with
        ``torch._foreach_*`` ops (the formula of ``torch.optim.Adam``, on the optimizer's own
        ``exp_avg``/``exp_avg_sq``/``step`` state), so that forward, backward, gradient
        clipping and the parameter update fuse into a few kernels.
        """
        if getattr(self, "_compiled", None) is not None:
            return self._compiled
        cfg, policy, opt = self.config, self.policy, self.optimizer
        names = [n for n, _ in policy.named_parameters()]
        params = [p for _, p in policy.named_parameters()]
        for p in params:  # materialise torch.optim.Adam's state so that both paths share it
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        group = opt.param_groups[0]
        beta1, beta2 = group["betas"]
        eps = group["eps"]

        def loss_fn(param_dict: dict[str, torch.Tensor], obs: Any, mb: dict[str, torch.Tensor]):
            newlogprob, entropy, newvalue = torch.func.functional_call(policy, param_dict, (obs, mb["actions"]))
            return ppo_loss(newlogprob, entropy, newvalue, mb, cfg)

        def step(obs: Any, mb: dict[str, torch.Tensor], lr: torch.Tensor, data: list[torch.Tensor],
                 exp_avg: list[torch.Tensor], exp_avg_sq: list[torch.Tensor], steps: list[torch.Tensor]):
            grads, (_, stats) = torch.func.grad_and_value(loss_fn, has_aux=True)(dict(zip(names, data)), obs, mb)
            g = [grads[n] for n in names]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g)))  # detail 11
            torch._foreach_mul_(g, torch.clamp(cfg.max_grad_norm / (norm + 1e-6), max=1.0))
            torch._foreach_add_(steps, 1.0)
            t = steps[0]
            torch._foreach_lerp_(exp_avg, g, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, g, g, 1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, torch.sqrt(1 - beta2 ** t))
            torch._foreach_add_(denom, eps)
            update = torch._foreach_div(exp_avg, denom)
            torch._foreach_mul_(update, lr / (1 - beta1 ** t))
            torch._foreach_sub_(data, update)
            return stats

        compiled = torch.compile(step, dynamic=False)

        def run(obs: Any, mb: dict[str, torch.Tensor]) -> torch.Tensor:
            states = [opt.state[p] for p in params]
            lr = torch.tensor(float(group["lr"]), device=self.device)
            args = (obs, mb, lr, [p.detach() for p in params], [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states], [s["step"] for s in states])
            if self._compile_checked:
                return compiled(*args)
            try:  # compilation happens on this first call, before anything is updated
                out = compiled(*args)
            except Exception as exc:  # noqa: BLE001 - no C++ compiler / Triton, unsupported op ...
                warnings.warn(f"compiling the PPO update failed ({type(exc).__name__}: {str(exc)[:200]}); "
                              "training continues with the eager update (set compile: false to skip the attempt)",
                              RuntimeWarning, stacklevel=2)
                self._compiled = self._eager_step
                return self._eager_step(obs, mb)
            self._compile_checked = True
            return out

        self._compiled = run
        return run

    def _metrics(self, stats: dict[str, float], lr: float) -> dict[str, Any]:
        """Per-update metrics: steps, episode statistics (windowed means), losses."""
        out: dict[str, Any] = {"global_step": self.global_step, "update": self.update, "learning_rate": lr}
        eps = list(self.episodes)
        out["episodes"] = len(eps)
        out["episode_return"] = float(np.mean([e["return"] for e in eps])) if eps else None
        out["episode_length"] = float(np.mean([e["length"] for e in eps])) if eps else None
        if len(self.episode_stats):
            window = self.episode_stats.summary()
            out.update({k: v for k, v in window.items() if k in ("env_return", "success_rate") or k.startswith("terms/")})
        if self.regularizer is not None:
            out.update(self.regularizer.metrics())
        out.update(stats)
        return out

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def value(self, obs: Any) -> Any:
        """The critic's estimate ``V(obs)`` for a batch ``(N, *obs_shape)`` -> ``(N,)``.

        Observations are normalised with the frozen running statistics. numpy in, numpy out
        (float32); a tensor in gives a tensor on the policy's device. V is in the units of the
        (possibly normalised, ``norm_reward``) return the agent was trained on.
        """
        is_tensor = isinstance(obs["glyphs"] if isinstance(obs, Mapping) else obs, torch.Tensor)
        v = self.policy.value(self._obs_to_tensor(obs, update_stats=False)).reshape(-1)
        return v if is_tensor else v.cpu().numpy()

    @torch.inference_mode()
    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[Any, None]:
        """``(actions, None)`` for a batch ``(N, *obs_shape)`` (or one unbatched observation).

        Same signature and return as Stable-Baselines3's ``predict`` (``state`` and
        ``episode_start`` exist for recurrent policies and are ignored here), so code written
        for one works with the other.

        Observations are normalised with the frozen running statistics. Returns what the
        env takes (clipped for ``Box``), as numpy for numpy input and as a tensor (on the
        policy's device) for tensor input. ``deterministic=False`` samples with torch's
        global RNG (never the training generator).
        """
        first = obs["glyphs"] if isinstance(obs, Mapping) else obs
        is_tensor = isinstance(first, torch.Tensor)
        single_shape = self.observation_space["glyphs"].shape if self._dict_obs else self.observation_space.shape
        unbatched = tuple(np.shape(first) if not is_tensor else first.shape) == tuple(single_shape)
        if unbatched:
            obs = {k: v[None] for k, v in obs.items()} if isinstance(obs, Mapping) else obs[None]
        x = self._obs_to_tensor(obs, update_stats=False)
        action = self.policy.mode(x) if deterministic else self.policy.act(x, None)[0]
        action = self.policy.env_action(action)
        if unbatched:
            action = action[0]
        return (action if is_tensor else action.cpu().numpy()), None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the learner's future depends on except the env (module docstring, *Exact resume*)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "algo": "ppo",
            "policy_arch": self.policy.ARCH,
            "config": self.config.to_dict(),
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": cpu_copy(self.optimizer.state_dict()),
            "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer else None,
            "reward_normalizer": self.reward_normalizer.state_dict() if self.reward_normalizer else None,
            "rng": {"torch_generator": self.generator.get_state().clone(), "device": str(self.device.type)},
            "global_step": self.global_step,
            "update": self.update,
            "episodes": list(self.episodes),
            "episode_stats": self.episode_stats.state_dict(),
            **({"occupancy": self.regularizer.state_dict()} if self.regularizer is not None else {}),
        }

    def load_policy(self, state: Mapping[str, Any]) -> None:
        """Restore only the policy and observation statistics of :meth:`state_dict` (for
        evaluation or deployment: any number of envs, no optimiser or rollout state)."""
        self._check_checkpoint(state, ("hidden_sizes", "activation", "norm_obs"))
        self.policy.load_state_dict(state["policy"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])

    def _check_checkpoint(self, state: Mapping[str, Any], keys: tuple[str, ...]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("algo") != "ppo":
            raise ValueError(f"not a PPO checkpoint of format {CHECKPOINT_FORMAT}: "
                             f"format={state.get('format')!r} algo={state.get('algo')!r}")
        # checkpoints from before the key existed hold version 1 of their network
        arch = state.get("policy_arch") or ("nethack-1" if any(k.startswith("encoder.") for k in state["policy"])
                                            else "mlp-1")
        if arch != self.policy.ARCH:
            raise ValueError(f"checkpoint holds a {arch!r} policy network, but this rewardgym builds {self.policy.ARCH!r} "
                             f"for these observations (the network's design or observation encoding changed): "
                             f"it cannot be loaded; retrain, or use the rewardgym version that wrote it")
        saved = state["config"]
        for key in keys:
            mine = self.config.to_dict()[key]
            if saved.get(key) != mine:
                raise ValueError(f"checkpoint config {key}={saved.get(key)!r} differs from this PPO's {mine!r}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (into a PPO built with the same config on equivalent envs)."""
        self._check_checkpoint(state, ("num_envs", "num_steps", "hidden_sizes", "activation", "norm_obs",
                                       "norm_reward"))
        if (self.regularizer is None) != (state.get("occupancy") is None):
            raise ValueError("checkpoint was written " + ("without" if self.regularizer is not None else "with") +
                             " an occupancy regulariser; this PPO has " +
                             ("one" if self.regularizer is not None else "none"))
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
        if state["rng"]["device"] == self.device.type:
            self.generator.set_state(state["rng"]["torch_generator"])
        else:  # moving between CPU and CUDA: generator states are not interchangeable
            self.generator.manual_seed(self.env_seed(int(state["update"])))
        self.global_step = int(state["global_step"])
        self.update = int(state["update"])
        self.episodes = deque(state.get("episodes", []), maxlen=self.config.stats_window)
        self.episode_stats = EpisodeWindow(self.config.stats_window)
        self.episode_stats.load_state_dict(state.get("episode_stats", []))
        if self.regularizer is not None:
            self.regularizer.load_state_dict(state["occupancy"])
