"""rewardgym's PPO: GAE and autoreset, learning, determinism, exact resume, configs,
policies (Gaussian, categorical, NetHack), reward normalisation, torch-batched envs."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rewardgym  # noqa: F401  (registers ids)
from rewardgym.learners.nethack import NetHackActorCritic
from rewardgym.learners.policies import make_policy
from rewardgym.learners.ppo import PPO, ConfigError, PPOConfig, compute_gae


def params_of(agent: PPO) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- GAE
def reference_gae(rewards, values, next_value, terminated, dones, valid, gamma, lam):
    """Straightforward O(T^2) GAE: per env, per real step, sum (gamma lam)^l delta_{t+l}
    over the rest of the episode inside the rollout (next-step autoreset layout)."""
    T, B = rewards.shape
    values_ext = np.concatenate([values, next_value[None]], 0)
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            if not valid[t, b]:
                continue
            total, k = 0.0, t
            while k < T:
                bootstrap = 0.0 if terminated[k, b] else gamma * values_ext[k + 1, b]
                delta = rewards[k, b] + bootstrap - values_ext[k, b]
                total += (gamma * lam) ** (k - t) * delta
                if dones[k, b]:
                    break
                k += 1
            adv[t, b] = total
    return adv


def random_rollout(T=40, B=3, seed=0):
    """A (T, B) rollout with next-step autoreset: the step after every done is invalid."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, B)) < 0.08
    truncated = (rng.random((T, B)) < 0.08) & ~terminated
    valid = np.ones((T, B), dtype=bool)
    for t in range(1, T):
        valid[t] = ~(terminated[t - 1] | truncated[t - 1])
    terminated &= valid  # an autoreset step never ends an episode
    truncated &= valid
    rewards = rng.normal(size=(T, B)) * valid
    values = rng.normal(size=(T, B))
    return rewards, values, rng.normal(size=B), terminated, terminated | truncated, valid


def test_gae_matches_reference_implementation():
    rewards, values, next_value, terminated, dones, valid = random_rollout()
    assert (~valid).sum() > 3 and terminated.sum() > 2 and (dones & ~terminated).sum() > 2
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    adv, ret = compute_gae(t(rewards), t(values), t(next_value), torch.as_tensor(terminated),
                           torch.as_tensor(dones), torch.as_tensor(valid), 0.99, 0.95)
    expected = reference_gae(rewards, values, next_value, terminated, dones, valid, 0.99, 0.95)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10, atol=1e-10)


def test_gae_handles_next_step_autoreset_by_hand():
    """One env: episode A ends by termination at t=1, t=2 is the autoreset step (obs = A's
    final obs), episode B is truncated at t=4, t=5 is its autoreset step (obs = B's final
    obs, value 7), episode C runs from t=6 to the end."""
    g, lam = 0.9, 0.5
    r = torch.tensor([1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 5.0, 6.0]).unsqueeze(1)
    v = torch.tensor([0.5, 0.25, 99.0, 1.0, 2.0, 7.0, 3.0, 4.0]).unsqueeze(1)
    nv = torch.tensor([10.0])
    term = torch.tensor([0, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool).unsqueeze(1)
    done = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool).unsqueeze(1)
    valid = torch.tensor([1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.bool).unsqueeze(1)
    adv, _ = compute_gae(r, v, nv, term, done, valid, g, lam)
    a = adv[:, 0]
    assert a[2] == 0 and a[5] == 0  # autoreset transitions carry no advantage
    assert a[1] == pytest.approx(2.0 - 0.25)  # terminated: no bootstrap (the 99 is never used)
    assert a[0] == pytest.approx((1.0 + g * 0.25 - 0.5) + g * lam * a[1])
    assert a[4] == pytest.approx(4.0 + g * 7.0 - 2.0)  # truncated: bootstrap from the final obs
    assert a[3] == pytest.approx((3.0 + g * 2.0 - 1.0) + g * lam * a[4])
    assert a[7] == pytest.approx(6.0 + g * 10.0 - 4.0)  # rollout end: bootstrap from next_value
    # nothing leaks across a boundary: changing episode C changes neither A nor B
    r2 = r.clone()
    r2[6:] += 100.0
    adv2, _ = compute_gae(r2, v, nv, term, done, valid, g, lam)
    assert torch.equal(adv2[:6], adv[:6])


# ----------------------------------------------------------------------------- learning
def cartpole_config(**overrides) -> PPOConfig:
    base = dict(num_envs=4, num_steps=128, num_minibatches=4, update_epochs=4, learning_rate=2.5e-3,
                ent_coef=0.01, norm_obs=False, norm_reward=False, seed=0)
    base.update(overrides)
    return PPOConfig(**base)


def test_ppo_learns_cartpole():
    env = gym.make_vec("CartPole-v1", num_envs=4)
    curve: list[tuple[int, float]] = []
    PPO(env, cartpole_config()).learn(
        30_000, callback=lambda m: curve.append((m["global_step"], m["episode_return"] or 0.0)))
    early = np.mean([r for _, r in curve[:5]])
    late = np.mean([r for _, r in curve[-5:]])
    # a random policy averages ~22 steps; the learning curve must rise well above it
    assert early < 60
    assert late > 120 and late > 3 * early, curve


def test_continuous_rewardgym_task_end_to_end():
    env = gym.make_vec("rewardgym/Fetch-Reach-v0", num_envs=4, reward="expert")
    cfg = PPOConfig(num_envs=4, num_steps=64, num_minibatches=4, update_epochs=2, seed=0)
    seen: list[dict] = []
    agent = PPO(env, cfg).learn(3 * 4 * 64, callback=seen.append)
    assert [m["update"] for m in seen] == [1, 2, 3]
    last = seen[-1]
    for key in ("global_step", "fps", "episode_return", "env_return", "success_rate", "policy_loss",
                "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance", "learning_rate"):
        assert key in last and last[key] is not None, key
    assert any(k.startswith("terms/") for k in last)
    assert last["global_step"] == 3 * 4 * 64 and last["episodes"] >= 8  # 50-step episodes
    assert seen[0]["learning_rate"] > seen[-1]["learning_rate"]  # annealed
    obs, _ = env.reset(seed=5)
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (4, 4) and np.all(np.abs(action) <= 1.0)
    assert agent.predict(obs[0], deterministic=True)[0].shape == (4,)


def test_pendulum_runs_a_few_updates_and_clips_actions():
    env = gym.make_vec("Pendulum-v1", num_envs=2)
    agent = PPO(env, PPOConfig(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=1, seed=0,
                               init_log_std=1.0))
    agent.learn(2 * 64 * 2)
    stored = agent.buffer.actions
    assert stored.abs().max() > 2.0  # the learner keeps the unclipped Gaussian samples ...
    assert np.all(np.abs(agent.predict(np.zeros((3, 3)), deterministic=False)[0]) <= 2.0)  # ... the env gets clipped ones


# ----------------------------------------------------------------------------- determinism & resume
def test_same_seed_gives_identical_parameters():
    runs = []
    for _ in range(2):
        env = gym.make_vec("CartPole-v1", num_envs=4)
        runs.append(params_of(PPO(env, cartpole_config(num_steps=32)).learn(4 * 32 * 3)))
    assert_same_params(runs[0], runs[1])
    env = gym.make_vec("CartPole-v1", num_envs=4)
    other = params_of(PPO(env, cartpole_config(num_steps=32, seed=1)).learn(4 * 32 * 3))
    assert any(not torch.equal(runs[0][k], other[k]) for k in other)


def test_exact_resume():
    """N updates straight == N/2, checkpoint, fresh PPO and envs, resume to N (CPU, fixed seed).

    Pendulum episodes (200 steps) straddle the checkpoint; both normalisers, annealing and
    value clipping are on. ``reset_interval = N/2`` makes the uninterrupted run re-seed its
    envs at the same update index where the resumed run must (env state is not checkpointed).
    """
    total_updates, half = 6, 3
    cfg = PPOConfig(num_envs=2, num_steps=64, num_minibatches=4, update_epochs=2, seed=3, reset_interval=half)
    total = total_updates * cfg.batch_size

    straight = PPO(gym.make_vec("Pendulum-v1", num_envs=2), cfg).learn(total)

    first = PPO(gym.make_vec("Pendulum-v1", num_envs=2), cfg)
    first.learn(total, callback=lambda m: m["update"] < half)
    assert first.update == half
    blob = io.BytesIO()
    torch.save(first.state_dict(), blob)
    blob.seek(0)
    resumed = PPO(gym.make_vec("Pendulum-v1", num_envs=2), PPOConfig.from_dict(torch.load(blob)["config"]))
    blob.seek(0)
    resumed.load_state_dict(torch.load(blob))
    resumed.learn(total)

    assert resumed.update == straight.update == total_updates
    assert resumed.global_step == straight.global_step
    assert_same_params(params_of(resumed), params_of(straight))
    assert torch.equal(resumed.obs_normalizer.rms.var, straight.obs_normalizer.rms.var)
    assert torch.equal(resumed.reward_normalizer.rms.var, straight.reward_normalizer.rms.var)
    s_opt, r_opt = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(s_opt[i]["exp_avg_sq"], r_opt[i]["exp_avg_sq"]) for i in s_opt)
    # continuing in the original process is the same as resuming from its checkpoint
    first.learn(total)
    assert_same_params(params_of(first), params_of(straight))


# ----------------------------------------------------------------------------- configuration
def test_unknown_config_key_names_key_source_line_and_closest(tmp_path):
    path = tmp_path / "ppo.yaml"
    path.write_text("num_envs: 8\nlearning_rat: 0.001\n")
    with pytest.raises(ConfigError) as err:
        PPOConfig.from_dict({"num_envs": 8, "learning_rat": 1e-3}, source=str(path))
    message = str(err.value)
    assert "'learning_rat'" in message and f"{path}:2" in message and "'learning_rate'" in message


def test_config_types_are_checked():
    cfg = PPOConfig.from_dict({"hidden_sizes": [32, 32], "learning_rate": 1, "target_kl": None})
    assert cfg.hidden_sizes == (32, 32) and isinstance(cfg.learning_rate, float)
    for bad in ({"num_envs": "8"}, {"num_envs": 8.5}, {"norm_obs": 1}, {"hidden_sizes": [64, "x"]},
                {"device": "gpu"}, {"num_minibatches": 3}):  # 3 does not divide 8 * 256
        with pytest.raises(ConfigError, match=list(bad)[0]):
            PPOConfig.from_dict(bad, source="cli")
    assert PPOConfig.from_dict(PPOConfig().to_dict()) == PPOConfig()


@pytest.mark.parametrize("space", [gym.spaces.MultiBinary(3), gym.spaces.Tuple((gym.spaces.Discrete(2),) * 2),
                                   gym.spaces.MultiDiscrete([2, 3])])
def test_unsupported_action_space_is_a_clear_error(space):
    with pytest.raises(ValueError, match=type(space).__name__):
        make_policy(gym.spaces.Box(-1, 1, (3,)), space, PPOConfig())


# ----------------------------------------------------------------------------- reward normalisation
class RecordRewards(gym.vector.VectorWrapper):
    """Keeps what the env reported: rewards and finished episodes' ``episode_stats``."""

    def __init__(self, env):
        super().__init__(env)
        self.rewards, self.stats_returns = [], []

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.rewards.append(np.array(reward, copy=True))
        if "episode_stats" in info:
            self.stats_returns += list(info["episode_stats"]["return"][info["_episode_stats"]])
        return obs, reward, terminated, truncated, info


def test_reward_normalisation_changes_only_what_the_learner_sees():
    env = RecordRewards(gym.make_vec("rewardgym/Fetch-Reach-v0", num_envs=2, reward="expert"))
    cfg = PPOConfig(num_envs=2, num_steps=128, num_minibatches=2, update_epochs=1, seed=0, norm_reward=True)
    agent = PPO(env, cfg).learn(cfg.batch_size)
    raw = np.stack(env.rewards)  # (T, B) what the env (and its info) reported
    learner = agent.buffer.rewards.numpy()
    valid = agent.buffer.valid.numpy()
    scale = 1 / math.sqrt(float(agent.reward_normalizer.rms.var) + 1e-8)
    np.testing.assert_allclose(learner[valid], np.clip(raw[valid] * scale, -10, 10), rtol=1e-5, atol=1e-6)
    assert abs(scale - 1.0) > 0.1  # the learner's rewards really are rescaled
    # episode statistics report the injected reward, unscaled, and agree with the env's info
    assert len(agent.episodes) == len(env.stats_returns) >= 4
    np.testing.assert_allclose([e["return"] for e in agent.episodes], env.stats_returns, rtol=1e-6)


# ----------------------------------------------------------------------------- NetHack / MiniHack
def test_minihack_dict_policy_forward_and_updates():
    keys = ("glyphs", "glyphs_crop", "blstats", "message")  # MiniHack's own crop, to compare with
    env = gym.make_vec("rewardgym/MiniHack-Room-5x5-v0", num_envs=2, reward="expert", observation_keys=keys)
    obs, _ = env.reset(seed=3)
    cfg = PPOConfig(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2, seed=0, ent_coef=0.01)
    agent = PPO(env, cfg)
    assert isinstance(agent.policy, NetHackActorCritic)
    batch = {k: torch.as_tensor(v) for k, v in obs.items()}
    action, logp, value = agent.policy.act(batch, torch.Generator().manual_seed(0))
    assert action.shape == (2,) and logp.shape == (2,) and value.shape == (2,)
    assert torch.all((action >= 0) & (action < env.single_action_space.n))
    # the crop cut from the full map around blstats (x, y) is the simulator's own glyphs_crop
    crop = agent.policy.encoder.crop(batch["glyphs"], batch["blstats"]) - 1
    assert torch.equal(crop, batch["glyphs_crop"].long())
    # the policy without glyphs_crop/message (crop cut from the map) runs too
    small = gym.spaces.Dict({k: env.single_observation_space[k] for k in ("glyphs", "blstats")})
    other = make_policy(small, env.single_action_space, cfg)
    assert other.value({k: batch[k] for k in ("glyphs", "blstats")}).shape == (2,)
    before = params_of(agent)
    seen: list[dict] = []
    agent.learn(2 * cfg.batch_size, callback=seen.append)
    assert len(seen) == 2 and all(math.isfinite(m["policy_loss"]) for m in seen)
    assert any(not torch.equal(before[k], v) for k, v in params_of(agent).items())
    assert agent.predict({k: v[0] for k, v in obs.items()}, deterministic=True)[0].shape == ()


def _nethack_space(keys=("glyphs", "blstats", "message")):
    from rewardgym.wrappers.make import make_task_env

    env = make_task_env("rewardgym/NetHack-Score-v0")
    space = gym.spaces.Dict({k: env.observation_space[k] for k in keys})
    env.close()
    return space


def test_nethack_crop_matches_a_numpy_reference_at_the_map_edges():
    space = _nethack_space()
    encoder = make_policy(space, gym.spaces.Discrete(23), PPOConfig()).encoder
    rng = np.random.default_rng(0)
    glyphs = rng.integers(0, 5976, (6, 21, 79), dtype=np.int16)
    xy = np.array([[0, 0], [78, 20], [0, 20], [78, 0], [40, 10], [3, 19]])
    blstats = np.zeros((6, 27), dtype=np.int64)
    blstats[:, :2] = xy
    crop = encoder.crop(torch.as_tensor(glyphs), torch.as_tensor(blstats)).numpy()
    padded = np.pad(glyphs.astype(np.int64) + 1, ((0, 0), (4, 4), (4, 4)))  # 0 = outside the map
    for i, (x, y) in enumerate(xy):
        np.testing.assert_array_equal(crop[i], padded[i, y:y + 9, x:x + 9])


def test_nethack_minimap_is_block_fractions_of_glyph_categories_and_the_hero():
    from rewardgym.envs.families.nethack import GLYPH_CATEGORIES, glyph_categories, glyph_tables

    space = _nethack_space()
    encoder = make_policy(space, gym.spaces.Discrete(23), PPOConfig()).encoder
    floor = int(np.flatnonzero(glyph_categories() == GLYPH_CATEGORIES.index("floor"))[0])
    stairs = int(np.flatnonzero(glyph_tables()["stairs_down"])[0])
    glyphs = np.full((1, 21, 79), floor, dtype=np.int16)
    glyphs[0, 20, 78] = stairs  # the last block holds 3 x 3 cells (79 = 19 * 4 + 3)
    blstats = np.zeros((1, 27), dtype=np.int64)
    blstats[0, :2] = (5, 7)  # x, y -> block (7 // 3, 5 // 4) = (2, 1)
    mini = encoder.minimap(torch.as_tensor(glyphs), torch.as_tensor(blstats))[0].numpy()
    assert mini.shape == (len(GLYPH_CATEGORIES) + 1, 7, 20)
    np.testing.assert_allclose(mini[:-1].sum(0), 1.0, rtol=1e-6)  # every block: fractions of its cells
    assert mini[GLYPH_CATEGORIES.index("stairs_down"), 6, 19] == pytest.approx(1 / 9)
    assert mini[GLYPH_CATEGORIES.index("floor"), 6, 19] == pytest.approx(8 / 9)
    hero = np.zeros((7, 20))
    hero[2, 1] = 1.0
    np.testing.assert_array_equal(mini[-1], hero)


def test_nethack_message_features_ignore_padding_and_the_rest_of_the_batch(monkeypatch):
    space = _nethack_space()
    encoder = make_policy(space, gym.spaces.Discrete(23), PPOConfig(seed=3)).encoder

    def msgs(*texts):
        out = np.zeros((len(texts), 256), dtype=np.uint8)
        for i, text in enumerate(texts):
            out[i, :len(text)] = np.frombuffer(text.encode(), dtype=np.uint8)
        return torch.as_tensor(out)

    with torch.no_grad():
        alone = encoder.message(msgs("You kill the newt!"))  # convolved over its 18 bytes only
        batch = encoder.message(msgs("You kill the newt!", "", "It's a wall." * 15))
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the path over all 256 bytes
        full = encoder.message(msgs("You kill the newt!"))
    torch.testing.assert_close(alone[0], batch[0])
    torch.testing.assert_close(alone, full)
    assert not torch.equal(batch[0], batch[2])
    torch.testing.assert_close(batch[1], encoder.msg_fc(torch.zeros(32)))  # an empty message pools to 0


def test_networks_bring_their_ppo_defaults_and_a_config_object_is_used_as_given():
    nethack = _nethack_space()
    box = gym.spaces.Box(-1, 1, (3,))
    assert PPOConfig.for_space(box) == PPOConfig()
    cfg = PPOConfig.for_space(nethack, {"seed": 4, "update_epochs": 2})
    assert (cfg.num_steps, cfg.num_minibatches, cfg.update_epochs, cfg.ent_coef, cfg.seed) == (128, 4, 2, 0.01, 4)
    env = gym.make_vec("rewardgym/MiniHack-Room-5x5-v0", num_envs=2, reward="env")
    assert PPO(env, {"num_envs": 2}).config.num_steps == 128
    assert PPO(env, PPOConfig(num_envs=2)).config.num_steps == PPOConfig().num_steps
    assert torch.get_num_threads() == 1  # the learner's auto thread count on the CPU
    env.close()


def test_checkpoint_of_the_version_1_nethack_network_is_refused_clearly():
    env = gym.make_vec("rewardgym/MiniHack-Room-5x5-v0", num_envs=2, reward="env")
    agent = PPO(env, {"num_envs": 2, "num_steps": 8, "num_minibatches": 2})
    state = agent.state_dict()
    assert state["policy_arch"] == NetHackActorCritic.ARCH
    old = {k: v for k, v in state.items() if k != "policy_arch"}  # written before the key existed
    for load in (agent.load_state_dict, agent.load_policy):
        with pytest.raises(ValueError, match="'nethack-1' policy network.*retrain"):
            load(old)
    agent.load_state_dict(state)  # its own checkpoint loads
    env.close()


# ----------------------------------------------------------------------------- torch-batched envs
class TorchPointMass:
    """A vectorised 2-D point mass written in torch (next-step autoreset, tensors in and out).

    State ``(B, 4)`` = position, velocity; action ``(B, 2)`` force in [-1, 1]; reward
    ``-|position|``; terminated when the mass leaves the 3 x 3 box, truncated after 50 steps.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, device: str = "cpu"):
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = torch.zeros(num_envs, 4, device=self.device)
        self.steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.autoreset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.gen = torch.Generator(device=self.device)
        self.step_calls = 0

    def _initial(self, n: int) -> torch.Tensor:
        pos = torch.rand(n, 2, generator=self.gen, device=self.device) * 2 - 1
        return torch.cat([pos, torch.zeros(n, 2, device=self.device)], 1)

    def reset(self, *, seed: int | None = None, options=None):
        if seed is not None:
            self.gen.manual_seed(seed)
        self.state = self._initial(self.num_envs)
        self.steps.zero_()
        self.autoreset.zero_()
        return self.state.clone(), {}

    def step(self, action):
        assert isinstance(action, torch.Tensor) and action.device == self.device
        self.step_calls += 1
        pos, vel = self.state[:, :2], self.state[:, 2:]
        vel = 0.9 * vel + 0.1 * action.clamp(-1, 1)
        pos = pos + 0.1 * vel
        state = torch.cat([pos, vel], 1)
        reward = -pos.norm(dim=1)
        steps = self.steps + 1
        # next-step autoreset: envs that finished last step start over now, reward 0
        fresh = self._initial(self.num_envs)
        state = torch.where(self.autoreset[:, None], fresh, state)
        reward = torch.where(self.autoreset, torch.zeros_like(reward), reward)
        steps = torch.where(self.autoreset, torch.zeros_like(steps), steps)
        terminated = (pos.abs() > 1.5).any(1) & ~self.autoreset
        truncated = (steps >= 50) & ~terminated & ~self.autoreset
        self.state, self.steps, self.autoreset = state, steps, terminated | truncated
        return state.clone(), reward, terminated, truncated, {}


def _torch_env_run(device: str, monkeypatch) -> PPO:
    env = TorchPointMass(num_envs=16, device=device)

    def forbidden(*args, **kwargs):
        raise AssertionError("numpy round trip in the torch-batched rollout")

    cfg = PPOConfig(num_envs=16, num_steps=64, num_minibatches=4, update_epochs=2, seed=0, device=device)
    agent = PPO(env, cfg)
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "numpy", forbidden)
        patch.setattr(torch, "from_numpy", forbidden)
        agent.learn(4 * cfg.batch_size)
    assert agent.torch_env is True and env.step_calls == 4 * 64
    for name in ("obs", "actions", "rewards", "values", "valid", "dones"):
        tensor = getattr(agent.buffer, name)
        assert isinstance(tensor, torch.Tensor) and tensor.device.type == torch.device(device).type
    assert isinstance(agent._next_obs, torch.Tensor)
    assert len(agent.episodes) >= 16  # 50-step truncations were tracked on the device
    assert (~agent.buffer.valid).any()  # and the autoreset steps were masked
    return agent


def test_torch_batched_env_stays_in_torch(monkeypatch):
    agent = _torch_env_run("cpu", monkeypatch)
    action, _ = agent.predict(torch.zeros(3, 4), deterministic=True)
    assert isinstance(action, torch.Tensor) and action.shape == (3, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_torch_env_and_numpy_env(monkeypatch):
    _torch_env_run("cuda", monkeypatch)
    env = gym.make_vec("CartPole-v1", num_envs=4)
    agent = PPO(env, cartpole_config(num_steps=32, device="cuda")).learn(4 * 32 * 2)
    assert next(agent.policy.parameters()).device.type == "cuda"
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    cpu = PPO(gym.make_vec("CartPole-v1", num_envs=4), cartpole_config(num_steps=32, device="cpu"))
    cpu.load_state_dict(torch.load(blob))
    assert cpu.update == 2


@pytest.mark.slow
def test_compiled_update_matches_eager():
    """``compile=True`` (torch.func gradients + written-out Adam) follows the eager update."""
    results = []
    for compiled in (False, True):
        env = gym.make_vec("Pendulum-v1", num_envs=2)
        cfg = PPOConfig(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, seed=0, compile=compiled)
        results.append(params_of(PPO(env, cfg).learn(2 * cfg.batch_size)))
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-3, atol=1e-4)


def test_compile_auto_compiles_long_mlp_runs_only(monkeypatch):
    """``compile="auto"`` (the default) asks for the compiled update only for an MLP policy on a
    run of at least ``COMPILE_AUTO_MIN_STEPS``; ``compile=False`` never does, the NetHack network
    never does under "auto". The spy hands back the eager update, so nothing is compiled here."""
    from rewardgym.learners import ppo as ppo_module

    calls: list[str] = []

    def spy(self):
        calls.append(type(self.policy).__name__)
        return self._eager_step

    monkeypatch.setattr(ppo_module.PPO, "_compiled_step", spy)
    monkeypatch.setattr(ppo_module, "COMPILE_AUTO_MIN_STEPS", 256)  # "long" for this test
    assert PPOConfig().compile == "auto"
    env = gym.make_vec("CartPole-v1", num_envs=2)
    cfg = {"num_envs": 2, "num_steps": 64, "num_minibatches": 2, "update_epochs": 1, "seed": 0}
    PPO(env, cfg).learn(128)  # short run: eager
    assert calls == []
    PPO(env, {**cfg, "compile": False}).learn(256)  # opted out: eager however long
    assert calls == []
    agent = PPO(env, cfg)
    agent.learn(256)  # long run: every update goes through the compiled step
    assert calls == ["MLPActorCritic"] * agent.update
    env.close()
    calls.clear()
    keys = ("glyphs", "blstats", "message")
    nethack = gym.make_vec("rewardgym/MiniHack-Room-5x5-v0", num_envs=2, reward="expert", observation_keys=keys)
    PPO(nethack, {**cfg, "num_steps": 128}).learn(256)  # the conv network stays eager under "auto"
    assert calls == []
    nethack.close()
    with pytest.raises(ConfigError, match="compile"):
        PPOConfig.from_dict({"compile": "always"})


def test_compile_failure_falls_back_to_the_eager_update(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    env = gym.make_vec("Pendulum-v1", num_envs=2)
    agent = PPO(env, PPOConfig(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1, compile=True, seed=0))
    with pytest.warns(RuntimeWarning, match="compiling the PPO update failed"):
        agent.learn(128)
    assert agent.global_step >= 128 and all(torch.isfinite(p).all() for p in agent.policy.parameters())
    env.close()
