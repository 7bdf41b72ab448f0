"""Multi-agent tasks: PettingZoo's API, team and per-agent rewards, per-agent shaping with the exact
termination/truncation semantics, the batched and parameter-sharing envs, one-line errors for bad
per-agent programs, MAPPO's centralised critic, train/eval/resume/synthesize, and interop
(SuperSuit, Stable-Baselines3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from pettingzoo.utils.env import ParallelEnv

import rewardgym
from rewardgym.envs.multiagent import JointParallelEnv, MultiAgentTaskEnv, MultiAgentTaskSpec, multiagent_common_fields
from rewardgym.envs.registry import get_task
from rewardgym.envs.view import Field, ViewSpec, raw
from rewardgym.rewards.program import RewardProgramError

MPE = "rewardgym/MPE-SimpleSpread-v0"
CHEETAH = "rewardgym/MaMuJoCo-HalfCheetah-2x3-v0"
CLI = [sys.executable, "-m", "rewardgym.cli.main"]


def program(tmp_path: Path, body: str, name: str = "reward.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return str(path)


# -- a small exact multi-agent MDP for the semantics tests ------------------------------------------
class LineWorld(ParallelEnv):
    """Agents on a line: action 1 moves an agent one step right, 0 stays. The episode terminates
    for everyone when the positions add up to ``goal`` and is truncated after ``max_steps``."""

    metadata = {"name": "line_world_v0", "is_parallelizable": True}

    def __init__(self, n: int = 2, goal: int = 3, max_steps: int = 4, render_mode=None):
        self.possible_agents = [f"walker_{i}" for i in range(n)]
        self.agents: list[str] = []
        self.goal, self.max_steps = goal, max_steps
        self._obs = gym.spaces.Box(0, 100, (1,), np.float32)
        self._act = gym.spaces.Discrete(2)
        self.pos = np.zeros(n)
        self.t = 0

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return self._act

    def _observe(self):
        return {a: np.array([p], dtype=np.float32) for a, p in zip(self.possible_agents, self.pos)}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.pos[:] = 0
        self.t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        self.pos += np.array([actions[a] for a in self.possible_agents], dtype=float)
        self.t += 1
        terminated = bool(self.pos.sum() >= self.goal)
        truncated = self.t >= self.max_steps and not terminated
        rewards = {a: float(p) for a, p in zip(self.possible_agents, self.pos)}  # the env's own: its position
        obs = self._observe()
        if terminated or truncated:
            self.agents = []
        return (obs, rewards, dict.fromkeys(self.possible_agents, terminated),
                dict.fromkeys(self.possible_agents, truncated), {a: {} for a in self.possible_agents})

    def state(self):
        return self.pos.astype(np.float32).copy()


class LineTaskEnv(MultiAgentTaskEnv):
    def read_raw(self):
        return {"position": self.sim.pos.copy()}


LINE_VIEW = ViewSpec.build("line", "Agents on a line.", [
    *multiagent_common_fields(), Field("position", "(B, N)", "-", "Each agent's position.", raw("position"))])


def _make_line(render_mode=None, state_in_info=False, **kwargs):
    return LineTaskEnv(JointParallelEnv(LineWorld(**kwargs), LINE.agents), LINE, state_in_info=state_in_info)


LINE = MultiAgentTaskSpec(  # not registered: the registry is for tasks with an expert program
    id="rewardgym/Test-LineWorld-v0", family="test", base_id="line_world", instruction="Walk right together.",
    success_doc="positions add up to 3", success=lambda s: s.position.sum(axis=1) >= 3, view=LINE_VIEW,
    make_env=_make_line, max_episode_steps=4, agents=("walker_0", "walker_1"))


def line_vec(num_envs: int, reward, shaping=None, gamma=None):
    """``make_parallel_vec`` of the line world, assembled from the same parts (it is not registered)."""
    from rewardgym.multiagent.vector import ParallelVectorEnv
    from rewardgym.wrappers.make import resolve_source

    source = resolve_source(LINE, reward, False, shaping, gamma, None, None)
    return ParallelVectorEnv(gym.vector.SyncVectorEnv([_make_line] * num_envs), LINE, source)

ZERO = "def compute_reward(state, action):\n    return 0.0 * state.position[:, 0]\n"
PER_AGENT_POTENTIAL = """
def compute_reward(state, action):
    return 0.0 * state.position[:, 0]

def compute_potential(state):
    return state.position * np.array([1.0, 10.0]) + 1.0
"""


def test_joint_env_pads_observations_and_refuses_what_it_cannot_batch():
    class Uneven(LineWorld):  # walker_1 observes two numbers
        def observation_space(self, agent):
            return gym.spaces.Box(0, 100, (1 if agent == "walker_0" else 2,), np.float32)

        def _observe(self):
            return {"walker_0": self.pos[:1].astype(np.float32), "walker_1": np.array([self.pos[1], 7.0], np.float32)}

    joint = JointParallelEnv(Uneven(), ("walker_0", "walker_1"))
    obs, _ = joint.reset()
    assert obs.shape == (2, 2)
    obs, *_ = joint.step(np.array([1, 1]))
    np.testing.assert_array_equal(obs, [[1.0, 0.0], [1.0, 7.0]])  # zero-padded, as SuperSuit's pad_observations

    class Alone(LineWorld):  # walker_0 terminates on its own
        def step(self, actions):
            obs, rewards, terms, truncs, infos = super().step(actions)
            return obs, rewards, {"walker_0": True, "walker_1": False}, truncs, infos

    joint = JointParallelEnv(Alone(), ("walker_0", "walker_1"))
    joint.reset()
    with pytest.raises(RuntimeError, match=r"agents \['walker_0'\] ended their episode alone"):
        joint.step(np.array([0, 0]))

    class Mixed(LineWorld):
        def action_space(self, agent):
            return gym.spaces.Discrete(2 if agent == "walker_0" else 3)

    with pytest.raises(ValueError, match=r"agents \['walker_1'\] have another action space"):
        JointParallelEnv(Mixed(), ("walker_0", "walker_1"))
    with pytest.raises(ValueError, match="the task declares"):
        JointParallelEnv(LineWorld(), ("walker_1", "walker_0"))


# -- PettingZoo API, views, documentation ----------------------------------------------------------
@pytest.mark.parametrize("task_id", [MPE, CHEETAH, "rewardgym/MaMuJoCo-Ant-4x2-v0"])
def test_make_parallel_passes_pettingzoo_parallel_api_test(task_id):
    env = rewardgym.make_parallel(task_id, reward="expert")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the API test warns about dead agents given data, missing keys ...
            parallel_api_test(env, num_cycles=40)
        obs, infos = env.reset(seed=0)
        assert env.agents == list(get_task(task_id).agents) and set(obs) == set(env.agents)
        _, rewards, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        for agent in env.agents:
            assert set(infos[agent]) >= {"env_reward", "reward_terms", "success"}
            assert np.isfinite(rewards[agent]) and infos[agent]["reward_terms"]
        assert env.state().shape == env.state_space.shape
    finally:
        env.close()


def test_describe_documents_global_and_per_agent_fields_and_the_reward_contract():
    result = subprocess.run(CLI + ["describe", "MPE-SimpleSpread", "--no-prelude"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text == get_task(MPE).describe() + "\n"
    global_part, agent_part = text.split("Global fields")[1].split("Per-agent fields")
    assert "landmark_pos" in global_part and "success" in global_part and "agent_pos" not in global_part
    for name in ("agent_pos", "agent_vel", "agent_landmark_dist", "agent_collisions", "env_reward"):
        assert name in agent_part
    assert "Agents (N = 3): agent_0, agent_1, agent_2" in text and "(B, N)" in text and "{agent name: (B,)}" in text


def test_gym_make_points_to_the_multiagent_entry_points():
    with pytest.raises(TypeError, match="make_parallel"):
        gym.make(MPE)
    with pytest.raises(TypeError, match="single-agent"):
        rewardgym.make_parallel("rewardgym/Hopper-Hop-v0")
    for make in (rewardgym.make_parallel, lambda t, **kw: gym.make_vec(t, num_envs=2, **kw)):
        with pytest.raises(TypeError, match="domain randomisation"):  # not silently passed to the simulator
            make(CHEETAH, randomize={"friction": [0.5, 1.5]})


def test_view_fields_are_read_from_the_particle_world(tmp_path):
    """agent_landmark_dist, landmark_min_dist and the success test agree with MPE's own positions,
    and env_reward is simple_spread's own per-agent reward (compared with a bare PettingZoo env)."""
    from mpe2 import simple_spread_v3

    env = rewardgym.make_parallel(MPE, reward="env")
    bare = simple_spread_v3.parallel_env(N=3, local_ratio=0.5, max_cycles=25)
    obs, _ = env.reset(seed=3)
    bare_obs, _ = bare.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        actions = {a: int(rng.integers(5)) for a in env.agents}
        obs, rewards, _, _, infos = env.step(actions)
        bare_obs, bare_rewards, _, _, _ = bare.step(actions)
        world = env.joint.parallel_env.unwrapped.world
        state = env.state_view
        agents = np.array([a.state.p_pos for a in world.agents])
        landmarks = np.array([lm.state.p_pos for lm in world.landmarks])
        dist = np.linalg.norm(agents[:, None] - landmarks[None], axis=-1)
        np.testing.assert_allclose(state.agent_landmark_dist[0], dist)
        np.testing.assert_allclose(state.landmark_min_dist[0], dist.min(axis=0))
        for i, agent in enumerate(env.possible_agents):
            np.testing.assert_array_equal(obs[agent], bare_obs[agent])
            assert rewards[agent] == infos[agent]["env_reward"] == pytest.approx(bare_rewards[agent])
            assert infos[agent]["success"] == bool((dist.min(axis=0) < 0.1).all())
    env.close()


def test_mamujoco_without_per_agent_loops_equals_the_pettingzoo_api():
    from gymnasium_robotics import mamujoco_v1

    for task_id, (scenario, conf) in [(CHEETAH, ("HalfCheetah", "2x3")),
                                      ("rewardgym/MaMuJoCo-Ant-4x2-v0", ("Ant", "4x2"))]:
        env = rewardgym.make_parallel(task_id, reward="expert")
        bare = mamujoco_v1.parallel_env(scenario, conf)
        obs, _ = env.reset(seed=7)
        bare_obs, _ = bare.reset(seed=7)
        rng = np.random.default_rng(1)
        for _ in range(30):
            actions = {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents}
            obs, rewards, terms, truncs, infos = env.step(actions)
            bare_obs, bare_rewards, bare_terms, bare_truncs, bare_infos = bare.step(actions)
            for agent in env.possible_agents:
                np.testing.assert_allclose(obs[agent], bare_obs[agent], rtol=1e-12, atol=1e-12)
                assert infos[agent]["env_reward"] == pytest.approx(bare_rewards[agent], abs=1e-12)
                assert terms[agent] == bare_terms[agent] and truncs[agent] == bare_truncs[agent]
                assert infos[agent]["x_position"] == pytest.approx(bare_infos[agent]["x_position"])
            np.testing.assert_allclose(env.state(), bare.state(), rtol=1e-6, atol=1e-6)
            if not env.agents:  # Ant may fall over under random actions: both ended on the same step
                assert not bare.agents
                break
        env.close()


def test_expert_team_reward_equals_mamujoco_reward():
    env = rewardgym.make_parallel(CHEETAH, reward="expert")
    env.reset(seed=0)
    for _ in range(20):
        _, rewards, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        assert rewards["agent_0"] == rewards["agent_1"] == pytest.approx(infos["agent_0"]["env_reward"], abs=1e-9)
        terms = infos["agent_1"]["reward_terms"]
        assert terms["forward"] + terms["ctrl"] == pytest.approx(rewards["agent_1"])
    env.close()


# -- team and per-agent rewards ----------------------------------------------------------------------
def test_team_reward_goes_to_every_agent_and_per_agent_rewards_to_each(tmp_path):
    per_agent = program(tmp_path, """
        def compute_reward(state, action):
            near = -np.min(state.agent_landmark_dist, axis=2)
            team = -np.sum(state.landmark_min_dist, axis=1)
            return team[:, None] + near, {"near": near, "team": team}
        """, "per_agent.py")
    as_dict = program(tmp_path, """
        def compute_reward(state, action):
            near = -np.min(state.agent_landmark_dist, axis=2)
            return {"agent_0": near[:, 0], "agent_2": 2.0 * near[:, 2], "agent_1": near[:, 1]}
        """, "as_dict.py")
    for path in (per_agent, as_dict):
        env = rewardgym.make_parallel(MPE, reward=path)
        env.reset(seed=1)
        for _ in range(3):
            _, rewards, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
            state = env.state_view
            near = -state.agent_landmark_dist[0].min(axis=1)
            team = -state.landmark_min_dist[0].sum()
            for i, agent in enumerate(env.possible_agents):
                if path == per_agent:
                    assert rewards[agent] == pytest.approx(team + near[i])
                    assert infos[agent]["reward_terms"] == pytest.approx({"near": near[i], "team": team})
                else:
                    assert rewards[agent] == pytest.approx(near[i] * (2.0 if i == 2 else 1.0))
        env.close()
    team = rewardgym.make_parallel(MPE, reward="expert")
    team.reset(seed=1)
    _, rewards, *_ = team.step({a: 0 for a in team.agents})
    assert len(set(rewards.values())) == 1
    team.close()


def test_weighted_sums_give_team_parts_to_every_agent(tmp_path):
    """A team part (sparse, (B,)) plus a per-agent part ((B, N)) is aligned on the batch axis, even
    when B equals N (where numpy would silently align the team part with the agents)."""
    per_agent = program(tmp_path, """
        def compute_reward(state, action):
            return -np.min(state.agent_landmark_dist, axis=2)
        """)
    venv = rewardgym.make_parallel_vec(MPE, 3, reward=f"{per_agent} + 100*sparse - 0.5*env")  # B = N = 3
    venv.reset(seed=0)
    _, reward, _, _, info = venv.step(venv.action_space.sample())
    state = venv.state
    expected = (-state.agent_landmark_dist.min(axis=2) + 100.0 * state.success[:, None]
                - 0.5 * info["env_reward"])
    np.testing.assert_allclose(reward, expected)
    assert info["reward_terms"]["sparse/success"].shape == (3, 3)
    venv.close()


# -- bad per-agent programs: one-line errors naming file, line and field ---------------------------
BAD = {
    "another agent count": ("""
        def compute_reward(state, action):
            fwd = state.torso_lin_vel[:, 0]
            return np.stack([fwd, fwd, fwd, fwd], axis=1)
        """, 3, "reward", "4 per-agent columns, but this task has 2 agents (agent_0, agent_1)"),
    "wrong shape": ("""
        def compute_reward(state, action):
            cost = action * action
            return state.torso_lin_vel[:, 0], {"cost": cost}
        """, 3, "cost", "has shape (2, 2, 3), expected (2,) (a team value, one per environment) or (2, 2)"),
    "unknown agent": ("""
        def compute_reward(state, action):
            fwd = state.torso_lin_vel[:, 0]
            return {"agent_0": fwd,
                    "front_leg": fwd}
        """, 4, "reward", "names agent 'front_leg', which this task does not have (agents: agent_0, agent_1)"),
    "missing agent": ("""
        def compute_reward(state, action):
            fwd = state.torso_lin_vel[:, 0]
            return {"agent_0": fwd}
        """, 3, "reward", "has no value for agent 'agent_1'"),
    "non-finite agent": ("""
        def compute_reward(state, action):
            per_agent = np.sum(action * action, axis=2)
            return per_agent / 0.0
        """, 3, "reward", "is not finite (inf for agent 'agent_0' at batch index 0)"),
}


@pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "trusted"])
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_per_agent_programs_are_one_line_errors_naming_file_line_and_field(tmp_path, case, trusted):
    source, line, field, message = BAD[case]
    path = program(tmp_path, source)
    venv = rewardgym.make_parallel_vec(CHEETAH, 2, reward=path, trusted=trusted)
    venv.reset(seed=0)
    with pytest.raises(RewardProgramError) as info:
        venv.step(np.ones((2, 2, 3), dtype=np.float32))
    venv.close()
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:{line}: ") and message in text, text
    assert (info.value.line, info.value.term) == (line, field)


def test_an_index_past_the_agent_count_names_its_line(tmp_path):
    path = program(tmp_path, """
        def compute_reward(state, action):
            back, front, tail = state.agent_joint_pos[:, 0], state.agent_joint_pos[:, 1], state.agent_joint_pos[:, 2]
            return np.sum(back + front + tail, axis=1)
        """)
    env = rewardgym.make_parallel(CHEETAH, reward=path)
    env.reset(seed=0)
    with pytest.raises(RewardProgramError, match=r"reward.py:2: error in compute_reward: IndexError"):
        env.step({a: env.action_space(a).sample() for a in env.agents})
    env.close()


# -- per-agent potential-based shaping, exactly -------------------------------------------------------
def test_per_agent_shaping_is_zero_at_termination_kept_at_truncation_and_never_crosses_resets(tmp_path):
    """Φ_i(s) = (1, 10)_i * position_i + 1. Copy 0 moves both agents (terminates on step 2), copy 1
    waits (truncated after 4 steps): F_i = γ Φ_i(s') (1 - terminated) - Φ_i(s) per agent, exactly, and
    the autoreset step reports 0."""
    gamma = 0.9
    venv = line_vec(2, program(tmp_path, ZERO, "zero.py"), shaping=program(tmp_path, PER_AGENT_POTENTIAL, "phi.py"),
                    gamma=gamma)
    venv.reset(seed=0)

    def phi(pos):
        return np.asarray(pos, dtype=float) * np.array([1.0, 10.0]) + 1.0

    pos = np.zeros((2, 2))
    moves = np.array([[1, 1], [0, 0]])
    seen_termination = seen_truncation = False
    for t in range(4):
        _, reward, terminated, truncated, info = venv.step(moves)
        if t == 2:  # copy 0 autoresets on this step (next-step mode): no reward, no shaping
            np.testing.assert_array_equal(reward[0], 0.0)
            np.testing.assert_array_equal(info["reward_terms"]["shaping"][0], 0.0)
            pos[0] = 0.0
            continue  # copy 1 waits: nothing to check until its truncation
        new = pos + moves
        for b in (0, 1):
            expected = gamma * phi(new[b]) * (0.0 if terminated[b] else 1.0) - phi(pos[b])
            np.testing.assert_allclose(info["reward_terms"]["shaping"][b], expected, rtol=1e-12)
            np.testing.assert_allclose(reward[b], expected, rtol=1e-12)
            seen_termination |= bool(terminated[b])
            seen_truncation |= bool(truncated[b])
        pos = new
    assert seen_termination and seen_truncation
    venv.close()


def test_shaping_uses_the_learners_gamma():
    from rewardgym.learners.ppo import PPO, PPOConfig

    env = gym.make_vec(MPE, num_envs=1, reward="sparse", shaping="expert", gamma=0.95)
    with pytest.raises(ValueError, match="gamma=0.95"):
        PPO(env, PPOConfig(num_envs=3, num_steps=8, num_minibatches=1, gamma=0.99))
    env.close()


# -- batched and parameter-sharing envs -----------------------------------------------------------------
def test_parallel_vec_computes_the_reward_once_per_batch_and_masks_inactive_rows():
    from rewardgym.rewards.source import RewardSource

    class Counter(RewardSource):
        name = "counter"

        def __init__(self):
            self.calls, self.rows = 0, []

        def compute(self, state, action):
            self.calls += 1
            self.rows.append(state.batch_size)
            return state.position.astype(float), {"position": state.position.astype(float)}

    source = Counter()
    venv = line_vec(3, source)
    venv.reset(seed=0)
    for _ in range(5):
        _, reward, terminated, truncated, info = venv.step(np.ones((3, 2), dtype=np.int64))
        assert reward.shape == (3, 2) and terminated.shape == (3,) and info["env_reward"].shape == (3, 2)
    assert source.calls == 5 and set(source.rows) == {3}
    # step 2 terminated every copy (positions 2 + 2 >= 3); step 3 is the autoreset step: zeros
    venv.reset(seed=0)
    for t in range(3):
        _, reward, terminated, _, info = venv.step(np.ones((3, 2), dtype=np.int64))
        if t == 1:
            assert terminated.all()
            np.testing.assert_array_equal(info["episode_stats"]["return"], [[3.0, 3.0]] * 3)  # 1 + 2 per agent
            np.testing.assert_array_equal(info["episode_stats"]["length"], [2, 2, 2])
            assert info["episode_stats"]["success"].all()
        if t == 2:
            np.testing.assert_array_equal(reward, 0.0)
            np.testing.assert_array_equal(info["env_reward"], 0.0)
    venv.close()


def test_agent_vector_env_rows_are_agents_of_copies_with_ids_and_state():
    venv = gym.make_vec(MPE, num_envs=2, reward="expert", global_state=True)
    obs, info = venv.reset(seed=4)
    inner = venv.env
    layout = venv.obs_layout
    assert venv.num_envs == 6 and obs.shape == (6, layout["state"][1])
    for step in range(3):
        actions = venv.action_space.sample()
        obs, reward, terminated, truncated, info = venv.step(actions)
        joint_state = inner.global_state()
        batch = inner.computer.last_state
        for b in range(2):
            for i in range(3):
                row = b * 3 + i
                agent = f"agent_{i}"
                np.testing.assert_array_equal(obs[row, slice(*layout["obs"])],
                                              inner.env.envs[b].joint.last_obs[agent].astype(np.float32))
                np.testing.assert_array_equal(obs[row, slice(*layout["agent_id"])], np.eye(3)[i])
                np.testing.assert_array_equal(obs[row, slice(*layout["state"])], joint_state[b])
                assert info["env_reward"][row] == batch.env_reward[b, i]
                assert info["success"][row] == batch.success[b]
        np.testing.assert_array_equal(info["_reward_terms"], np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="whole copies"):
        venv.reset(options={"reset_mask": np.array([True, False, False, False, False, False])})
    venv.close()


# -- MAPPO's centralised critic --------------------------------------------------------------------------
def test_mappo_actor_reads_only_the_agent_and_the_critic_only_id_and_state():
    import torch

    from rewardgym.learners.mappo import MAPPOActorCritic
    from rewardgym.learners.ppo import PPOConfig

    layout = {"obs": (0, 4), "agent_id": (4, 6), "state": (6, 11)}
    torch.manual_seed(0)
    net = MAPPOActorCritic(layout, gym.spaces.Box(-1, 1, (2,)), PPOConfig(hidden_sizes=(16, 16)))
    obs = torch.randn(5, 11)
    state_changed, own_changed = obs.clone(), obs.clone()
    state_changed[:, 6:] += 1.0
    own_changed[:, :4] += 1.0
    assert torch.equal(net.mode(state_changed), net.mode(obs))  # execution is decentralised
    assert not torch.allclose(net.value(state_changed), net.value(obs))  # the critic sees the global state
    assert torch.equal(net.value(own_changed), net.value(obs))
    assert not torch.allclose(net.mode(own_changed), net.mode(obs))
    ids_swapped = obs.clone()
    ids_swapped[:, 4:6] = obs[:, 4:6].flip(1)
    assert not torch.allclose(net.mode(ids_swapped), net.mode(obs))  # the agent id reaches the actor


def test_algorithms_are_checked_against_the_task():
    from rewardgym.runs.train import TrainSpec, train

    with pytest.raises(ValueError, match="multi-agent task: train it with --algo mappo"):
        train(TrainSpec(task=MPE, algo="sb3-ppo", steps=10))
    with pytest.raises(ValueError, match="has one agent: use ppo"):
        train(TrainSpec(task="Hopper-Hop", algo="mappo", steps=10))
    with pytest.raises(ValueError, match="--randomize"):
        train(TrainSpec(task=MPE, algo="mappo", steps=10, randomize={"friction": [0.5, 1.5]}))


def test_cli_train_eval_resume_mappo(tmp_path):
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_steps": 25, "num_minibatches": 3, "update_epochs": 2}))
    runs = tmp_path / "runs"
    base = ["train", "MPE-SimpleSpread", "--algo", "mappo", "--reward", "expert", "--num-envs", "2",
            "--config", str(config), "--runs-dir", str(runs), "--name", "m"]
    first = subprocess.run(CLI + base + ["--steps", "100"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    run = runs / "m"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows] == [50, 100]  # env steps: 2 copies x 25 steps per update
    assert rows[-1]["agent_steps"] == 300 and rows[-1]["episode_return"] is not None
    assert json.loads((run / "config.json").read_text())["algo"] == "mappo"
    # resume to a larger budget: continues from the checkpoint, metrics stay in env steps
    cfg = json.loads((run / "config.json").read_text())
    cfg["steps"] = 150
    (run / "config.json").write_text(json.dumps(cfg))
    resumed = subprocess.run(CLI + ["train", "--resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows] == [50, 100, 150]
    evaluated = subprocess.run(CLI + ["eval", str(run), "--episodes", "2"], capture_output=True, text=True,
                               timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run / "eval.json").read_text())
    assert report["algo"] == "mappo" and report["length"]["mean"] == 25.0
    assert set(report["agent_return"]) == {"agent_0", "agent_1", "agent_2"}
    # a team reward: every agent's return is the team's
    returns = [v["mean"] for v in report["agent_return"].values()]
    assert returns == pytest.approx([report["return"]["mean"]] * 3)


# -- interop -----------------------------------------------------------------------------------------------
def test_supersuit_wrappers_compose_and_sb3_trains_through_supersuit():
    import supersuit as ss
    from stable_baselines3 import PPO as SB3PPO

    env = rewardgym.make_parallel(MPE, reward="expert")
    stacked = ss.frame_stack_v1(ss.dtype_v0(env, np.float32), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(stacked, num_cycles=30)
    obs, _ = stacked.reset(seed=0)
    assert obs["agent_0"].shape == (36,)  # 2 x 18
    stacked.close()

    vec = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(rewardgym.make_parallel(MPE, reward="expert")), 2,
                                num_cpus=0, base_class="stable_baselines3")
    vec.venv.reset(seed=0)  # SuperSuit 3.11 has no seed() for SB3 2.x: seed the envs here, and give SB3 no seed
    model = SB3PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, device="cpu")
    model.learn(total_timesteps=192)
    assert model.num_timesteps >= 192
    vec.reset()
    _, rewards, _, infos = vec.step(np.zeros(6, dtype=np.int64))
    assert rewards.shape == (6,) and {"env_reward", "reward_terms", "success"} <= set(infos[0])
    vec.close()


def test_synthesize_writes_per_agent_rewards_for_a_multiagent_task(tmp_path):
    from rewardgym.testing.openai_server import ScriptedOpenAIServer

    team = ("```python\ndef compute_reward(state, action):\n    cover = -np.sum(state.landmark_min_dist, axis=1)\n"
            "    return cover, {'cover': cover}\n```")
    per_agent = ("```python\ndef compute_reward(state, action):\n    near = -np.min(state.agent_landmark_dist, axis=2)\n"
                 "    return near, {'near': near}\n```")
    two_agents = ("```python\ndef compute_reward(state, action):\n    d = state.agent_landmark_dist\n"
                  "    return np.stack([d[:, 0, 0], d[:, 1, 1]], axis=1)\n```")
    script = [{"kind": "reply", "text": f"Three programs.\n\n{team}\n\n{per_agent}\n\n{two_agents}\n"},
              {"kind": "reply", "text": per_agent, "match": "Reward program repair request"}]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa",
           "REWARDGYM_LLM_CACHE": str(tmp_path / "llm-cache")}
    with ScriptedOpenAIServer(script) as server:
        result = subprocess.run(
            CLI + ["synthesize", "MPE-SimpleSpread", "--base-url", server.base_url, "--model", server.model,
                   "--api-key", server.api_key, "--runs-dir", str(tmp_path / "runs"), "--name", "ma", "--rounds",
                   "1", "--samples", "3", "--steps", "150", "--num-envs", "2", "--eval-episodes", "1",
                   "--check-timeout", "30"], capture_output=True, text=True, timeout=900, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        design = server.chat_requests[0].body["messages"][-1]["content"]
    assert "Per-agent fields" in design and "agent_landmark_dist" in design and "Multi-agent reward contract" in design
    state = json.loads((tmp_path / "runs" / "ma" / "state.json").read_text())
    cands = {c["id"]: c for c in state["rounds"][0]["candidates"]}
    assert [c["status"] for c in cands.values()] == ["trained"] * 3
    wrong = cands["r0c2"]["attempts"][0]
    assert wrong["stage"] == "runtime" and "2 per-agent columns, but this task has 3 agents" in wrong["reason"]
    best = rewardgym.make_parallel(MPE, reward=str(tmp_path / "runs" / "ma" / "best_reward.py"))
    best.reset(seed=0)
    assert best.step({a: 0 for a in best.agents})[4]["agent_0"]["reward_terms"]
    best.close()


@pytest.mark.slow
@pytest.mark.parametrize("task, algo, key, margin, hyper", [
    (MPE, "mappo", "terms/coverage", 8.0,
     {"num_steps": 100, "num_minibatches": 4, "update_epochs": 10, "learning_rate": 7e-4, "ent_coef": 0.01}),
    (CHEETAH, "ippo", "episode_return", 250.0, {}),
], ids=["mpe-mappo", "cheetah-ippo"])
def test_shared_policy_learns(tmp_path, task, algo, key, margin, hyper):
    """150k env steps with the expert team reward: MPE's coverage term (the summed distance from each
    landmark to its nearest agent) and HalfCheetah's return rise well above the first episodes'
    (benchmarks/marl.py: about +15 and +400 there), and the evaluated policy keeps the gain."""
    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.train import TrainSpec, train

    run = train(TrainSpec(task=task, reward="expert", algo=algo, steps=150_000, num_envs=8, seed=0,
                          hyperparams=hyper), runs_root=tmp_path)
    rows = [r for r in run.metrics() if r.get(key) is not None]
    first, last = rows[0][key], float(np.mean([r[key] for r in rows[-3:]]))
    assert last > first + margin, (first, last)
    report = evaluate(run.path, episodes=5)
    evaluated = report["terms"]["coverage"]["mean"] if task == MPE else report["return"]["mean"]
    assert evaluated > first + margin, (first, evaluated)


def test_vector_rows_of_a_multi_agent_env_keep_its_own_readings():
    """MaMuJoCo's TaskEnv extends the locomotion family's: the family's column-wise batch
    reader must not replace its rows (per-agent env_reward, partition) with single-agent ones."""
    from rewardgym.envs.families.mamujoco import make_env
    from rewardgym.envs.task import raw_batch_of
    from rewardgym.envs.view import stack_raw

    envs = [make_env(CHEETAH) for _ in range(2)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
            env.step(np.zeros(env.action_space.shape))
        batch, rows = raw_batch_of(envs), stack_raw([env.raw_state() for env in envs])
        assert sorted(batch) == sorted(rows) and "partition" in batch
        assert batch["env_reward"].shape == (2, 2)  # (B, N): one simulator reward per agent
        for key, value in rows.items():
            np.testing.assert_array_equal(batch[key], value, err_msg=key)
    finally:
        for env in envs:
            env.close()
