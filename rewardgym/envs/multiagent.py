"""Multi-agent tasks: PettingZoo ``ParallelEnv`` s under the reward contract of every task.

A multi-agent task (:class:`MultiAgentTaskSpec`) is a :class:`~rewardgym.envs.task.TaskSpec`
whose simulator is a PettingZoo ``ParallelEnv`` with a fixed set of agents
(``MultiAgentTaskSpec.agents``) that all act on every step and whose episodes end for all
of them together: the cooperative settings of MPE's simple_spread and of MaMuJoCo. Its
state view has *global* fields ``(B, ...)`` and *per-agent* fields ``(B, N, ...)``, row
``[:, i]`` being agent ``i`` (:attr:`rewardgym.envs.view.Field.per_agent`); ``env_reward``
is per agent, ``(B, N)``; ``success``, ``elapsed_steps`` and ``terminated`` are the team's,
``(B,)``.

Inside rewardgym the parallel env is one Gymnasium env over the *joint* observation
``(N, d)`` and the joint action ``(N, ...)`` (:class:`JointParallelEnv`), under a
:class:`MultiAgentTaskEnv` (a :class:`~rewardgym.envs.task.TaskEnv`) that reads the raw row.
So the single-agent machinery serves multi-agent tasks unchanged: raw batches, state views,
the injection wrappers' bookkeeping, Gymnasium's vector envs and their autoreset modes.
What users call is built above this layer, in :mod:`rewardgym.multiagent`: a PettingZoo
``ParallelEnv`` (``rewardgym.make_parallel``), a batched env of ``B`` copies
(``rewardgym.make_parallel_vec``) and the parameter-sharing vector env of ``B x N`` agent
slots that ``gym.make_vec`` returns for these ids.

PettingZoo is never imported here: the parallel env comes from the family's factory.
"""

from __future__ import annotations

import importlib.util
import operator
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rewardgym.envs.task import TaskEnv, TaskSpec
from rewardgym.envs.view import Field, raw

REWARD_CONTRACT = (
    "Multi-agent reward contract: compute_reward(state, action) returns either a team reward of shape "
    "(B,) that every agent receives, or per-agent rewards of shape (B, N) (column i is agent i's reward), or "
    "a dict {agent name: (B,)} naming every agent; each term is (B,) or (B, N) likewise. compute_potential "
    "(shaping) may return (B,) or (B, N) (one potential per agent); compute_success returns the team's (B,). "
    "Combine a team array t of shape (B,) with a per-agent array p of shape (B, N) as t[:, None] + p "
    "(t + p is wrong: numpy aligns t with the agent axis).")
"""What every multi-agent task's documentation says about rewards (it is shown to LLMs)."""


def multiagent_common_fields() -> list[Field]:
    """Fields every multi-agent view has besides the common ones (which it shares)."""
    return [Field("env_reward", "(B, N)", "-", "The base environment's own reward of each agent for this step.",
                  raw("env_reward"))]


def packages_available(*modules: str) -> tuple[bool, str]:
    """``(True, "")`` when every module can be imported, else ``(False, reason)``."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"missing package(s): {', '.join(missing)} (pip install {' '.join(missing)})"
    return True, ""


@dataclass(frozen=True)
class MultiAgentTaskSpec(TaskSpec):
    """A :class:`TaskSpec` whose simulator is a PettingZoo ``ParallelEnv`` (module docstring).

    Attributes:
        agents: the agents' names in order; row ``[:, i]`` of per-agent fields, rewards and
            actions is ``agents[i]``.
        action_doc: what ``action`` holds, e.g. ``"(B, N, 3) torques in [-1, 1] ..."``.
        agent_doc: what each agent controls or is (one sentence, shown by ``describe``).
    """

    agents: tuple[str, ...] = ()
    action_doc: str = ""
    agent_doc: str = ""

    def __post_init__(self) -> None:
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ValueError(f"multi-agent task {self.id}: agents must be distinct names, got {self.agents!r}")

    @property
    def n_agents(self) -> int:
        """``N``, the number of agents."""
        return len(self.agents)

    def describe(self, meaning: int | None = None, intro: int | None = None, instruction: bool = True,
                 group: bool = False) -> str:
        """:meth:`TaskSpec.describe` with the agents, the action layout and the reward contract."""
        view_text = self.view.describe(meaning, intro, group)
        head = super().describe(meaning, intro, instruction, group).removesuffix(view_text).rstrip("\n")
        agents = (f"Agents (N = {self.n_agents}): {', '.join(self.agents)}; all act on every step and the "
                  f"episode ends for all of them together." + (f" {self.agent_doc}" if self.agent_doc else ""))
        lines = [head, agents]
        if self.action_doc:
            lines.append(f"Action: {self.action_doc}")
        lines += [REWARD_CONTRACT, *([""] if meaning is None else []), view_text]
        return "\n".join(lines)


class JointParallelEnv(gym.Env):
    """A PettingZoo ``ParallelEnv`` as one Gymnasium env over its agents' joint observation and action.

    Observation ``(N, d)`` float32: row ``i`` is agent ``i``'s observation, flattened and
    zero-padded to the largest agent observation ``d`` (SuperSuit's ``pad_observations``).
    Action ``(N, *a)``: row ``i`` is agent ``i``'s action (a ``Box`` of the agents' common
    shape, or ``MultiDiscrete`` of their common ``Discrete``); the agents must share one
    action space. Reward: the mean of the agents' rewards (the per-agent rewards are
    :attr:`agent_rewards`). ``terminated``/``truncated``: the team's; a step after which
    only some agents are done is an error, since rewardgym's multi-agent tasks end for all
    agents together. Nothing is added to ``info`` (it stays cheap to batch); the parallel
    env's own dicts of the last step are :attr:`last_obs` and :attr:`last_infos`.

    Args:
        parallel_env: the PettingZoo ``ParallelEnv`` (the real simulator).
        agents: the task's agents, which must be the env's ``possible_agents`` in order.
    """

    def __init__(self, parallel_env: Any, agents: Sequence[str]):
        self.parallel_env = parallel_env
        self.agents = tuple(agents)
        possible = tuple(parallel_env.possible_agents)
        if possible != self.agents:
            raise ValueError(f"the parallel env's agents are {list(possible)}, the task declares {list(self.agents)}")
        n = len(self.agents)
        self.agent_observation_spaces = tuple(parallel_env.observation_space(a) for a in self.agents)
        action_spaces = [parallel_env.action_space(a) for a in self.agents]
        self.obs_dims = tuple(int(np.prod(s.shape)) for s in self.agent_observation_spaces)
        self._padded = len(set(self.obs_dims)) > 1
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n, max(self.obs_dims)), np.float32)
        first = action_spaces[0]
        different = [a for a, s in zip(self.agents, action_spaces) if s != first]
        if different:
            raise ValueError(f"agents {different} have another action space than {self.agents[0]} ({first}): "
                             f"rewardgym's multi-agent tasks need one action space shared by every agent")
        self.agent_action_space = first
        if isinstance(first, gym.spaces.Box):
            self.action_space = gym.spaces.Box(np.broadcast_to(first.low, (n, *first.shape)),
                                               np.broadcast_to(first.high, (n, *first.shape)), dtype=first.dtype)
        elif isinstance(first, gym.spaces.Discrete):
            self.action_space = gym.spaces.MultiDiscrete(np.full(n, first.n), start=np.full(n, first.start))
        else:
            raise ValueError(f"action space {first} is not supported: Box or Discrete per agent")
        self.metadata = dict(getattr(parallel_env, "metadata", {}))
        self.render_mode = getattr(parallel_env, "render_mode", None)
        self._get = operator.itemgetter(*self.agents)
        self.agent_rewards = np.zeros(n)
        """``(N,)`` the agents' own rewards of the last step (0 after a reset)."""
        self._last_obs: dict[str, Any] = {}
        self.last_infos: dict[str, Any] = {}
        """The parallel env's ``infos`` of the last step or reset."""
        self._state_space: gym.spaces.Box | None = None

    @property
    def last_obs(self) -> dict[str, Any]:
        """The parallel env's observations of the last step or reset, by agent (unpadded)."""
        return self._last_obs

    def _values(self, mapping: dict[str, Any], what: str) -> tuple[Any, ...]:
        try:
            values = self._get(mapping)
        except KeyError as exc:
            raise RuntimeError(f"the parallel env returned no {what} for agent {exc.args[0]!r}: rewardgym's "
                               f"multi-agent tasks need every agent on every step") from None
        return values if len(self.agents) > 1 else (values,)

    def _joint_obs(self, obs: dict[str, Any]) -> np.ndarray:
        values = self._values(obs, "observation")
        if not self._padded:
            return np.asarray(values, dtype=np.float32).reshape(self.observation_space.shape)
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        for i, value in enumerate(values):  # only when observation sizes differ
            out[i, :self.obs_dims[i]] = np.ravel(value)
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, infos = self.parallel_env.reset(seed=seed, options=options)
        self._last_obs, self.last_infos = obs, infos
        self.agent_rewards = np.zeros(len(self.agents))
        return self._joint_obs(obs), {}

    def step(self, action: Any):
        obs, rewards, terminations, truncations, infos = self.parallel_env.step(dict(zip(self.agents, action)))
        self._last_obs, self.last_infos = obs, infos
        reward = self._values(rewards, "reward")
        self.agent_rewards = np.array(reward, dtype=np.float64)
        terminated, truncated = self._values(terminations, "termination"), self._values(truncations, "truncation")
        team_terminated = team_truncated = False
        if any(terminated) or any(truncated):  # once per episode: check that every agent is done
            done = [bool(te or tr) for te, tr in zip(terminated, truncated)]
            if not all(done):
                ended = [a for a, d in zip(self.agents, done) if d]
                raise RuntimeError(f"agents {ended} ended their episode alone: rewardgym's multi-agent tasks need "
                                   f"episodes that end for all agents together")
            team_terminated = bool(all(terminated))
            team_truncated = not team_terminated
        return self._joint_obs(obs), float(sum(reward)) / len(reward), team_terminated, team_truncated, {}

    def state(self) -> np.ndarray:
        """The parallel env's global state (PettingZoo's ``state()``), flattened, float32."""
        return np.asarray(self.parallel_env.state(), dtype=np.float32).reshape(-1)

    @property
    def state_space(self) -> gym.spaces.Box:
        """The space of :meth:`state` (the parallel env's ``state_space``, or the shape of its state now)."""
        if self._state_space is None:
            space = getattr(self.parallel_env, "state_space", None)
            size = int(np.prod(space.shape)) if space is not None else self.state().size
            self._state_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        return self._state_space

    def render(self):
        return self.parallel_env.render()

    def close(self) -> None:
        self.parallel_env.close()


class MultiAgentTaskEnv(TaskEnv):
    """The :class:`TaskEnv` of a multi-agent task: raw rows with per-agent readings.

    ``env`` is a :class:`JointParallelEnv` (possibly under Gymnasium wrappers). The raw row's
    ``env_reward`` is the agents' rewards ``(N,)``; families add their per-agent readings as
    ``(N, ...)`` arrays in :meth:`read_raw`. :meth:`require` with ``global_state=True`` adds
    ``"global_state"``, the parallel env's ``state()`` (for centralised critics; no view field
    reads it, so reward programs never receive it).
    """

    def __init__(self, env: gym.Env, task: TaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        joint = env.unwrapped
        if not isinstance(joint, JointParallelEnv):
            raise TypeError(f"{task.id}: a multi-agent task env wraps a JointParallelEnv, got {type(joint).__name__}")
        self.joint = joint
        self._keep_state = False

    def require(self, frames: Any = None, obs: bool = False, global_state: bool = False) -> "MultiAgentTaskEnv":
        """Add ``"global_state"`` to every raw row; camera frames and observations are not supported here."""
        if frames is not None or obs:
            raise ValueError(f"{self.task.id}: reward sources that read camera frames or the observation are not "
                             f"supported on multi-agent tasks")
        self._keep_state = self._keep_state or bool(global_state)
        self._raw = None
        return self

    @property
    def sim(self) -> Any:
        """The parallel env's ``unwrapped`` simulator (e.g. MPE's raw env, MaMuJoCo's env)."""
        return self.joint.parallel_env.unwrapped

    def raw_state(self) -> dict[str, Any]:
        if self._raw is None:
            row = super().raw_state()
            row["env_reward"] = self.joint.agent_rewards.copy()
            if self._keep_state:
                row["global_state"] = self.joint.state()
        return self._raw
