"""Multi-Agent MuJoCo (MaMuJoCo; Peng et al., 2021) from gymnasium-robotics' ``mamujoco_v1``.

One robot, its joints split between agents: HalfCheetah ``2x3`` (back leg / front leg),
Ant ``2x4`` (two pairs of legs) and Ant ``4x2`` (one leg each). The simulator underneath is
Gymnasium's single-agent ``HalfCheetah-v5``/``Ant-v5``, so the view's global fields are the
``locomotion`` view's (read by the same code from the same ``MjData``), and the per-agent
fields give each agent's own joints, in the order of its action. Every agent receives the
robot's reward (MaMuJoCo's team reward), which is the ``"env"`` reward.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from rewardgym.envs.families import locomotion
from rewardgym.envs.families.locomotion import LocomotionTaskEnv, forward_success
from rewardgym.envs.multiagent import (JointParallelEnv, MultiAgentTaskEnv, MultiAgentTaskSpec,
                                       multiagent_common_fields, packages_available)
from rewardgym.envs.view import Field, RawBatch, ViewSpec, common_fields

# qpos / qvel index of each agent's joints, in the order of the agent's action (MaMuJoCo's
# partitions; MaMuJoCoTaskEnv checks them against the env's own when it is made).
PARTITIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    # HalfCheetah-v5: qpos 3..8 = bthigh, bshin, bfoot, fthigh, fshin, ffoot (qvel the same)
    "HalfCheetah-2x3": ((3, 4, 5), (6, 7, 8)),
    # Ant-v5: qpos 7..14 = hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3, hip_4, ankle_4 (qvel = qpos - 1)
    "Ant-2x4": ((7, 8, 9, 10), (11, 12, 13, 14)),
    "Ant-4x2": ((7, 8), (9, 10), (11, 12), (13, 14)),
}
_CODES = {name: code for code, name in enumerate(PARTITIONS)}
_BY_CODE = tuple(PARTITIONS)
_QVEL_OFFSET = {"HalfCheetah": 0, "Ant": 1}  # planar root: qvel index = qpos index; free joint: one less


def _partition(batch: RawBatch) -> tuple[np.ndarray, np.ndarray]:
    name = _BY_CODE[int(batch["partition"][0])]
    qpos = np.array(PARTITIONS[name])
    return qpos, qpos - _QVEL_OFFSET[name.split("-")[0]]


def _agent_joint_pos(batch: RawBatch) -> np.ndarray:
    return batch["qpos"][:, _partition(batch)[0]].astype(np.float64)


def _agent_joint_vel(batch: RawBatch) -> np.ndarray:
    return batch["qvel"][:, _partition(batch)[1]].astype(np.float64)


_COMMON = {f.name for f in common_fields()}

VIEW = ViewSpec.build(
    "mamujoco",
    doc=("Multi-Agent MuJoCo: one robot of the locomotion view whose actuated joints are split between the "
         "agents; every global field below means exactly what it means there. " + locomotion.VIEW.doc
         + " Per-agent fields are (B, N, J) with J = joints per agent, in the order of the agent's own action "
         "(action[:, i, j] drives joint agent_joint_pos[:, i, j])."),
    fields=[
        *multiagent_common_fields(),
        *(f for f in locomotion.VIEW.fields.values() if f.name not in _COMMON),
        Field("agent_joint_pos", "(B, N, J)", "rad",
              "Angles of each agent's joints, in the order of its action (the task lists them).", _agent_joint_pos),
        Field("agent_joint_vel", "(B, N, J)", "rad/s",
              "Angular velocities of each agent's joints, same order as agent_joint_pos.", _agent_joint_vel),
    ],
)


class MaMuJoCoJointEnv(JointParallelEnv):
    """MaMuJoCo's parallel env stepped without its per-agent Python loops, with the same numbers.

    MaMuJoCo's own ``step`` maps each agent's action into the robot's action node by node and
    builds each agent's observation category by category. Here the joint action ``(N, J)`` is
    scattered into the robot's action with one index array, the robot's single-agent env (the
    simulator) is stepped, and the agents' observations are gathered from the robot's
    observation with MaMuJoCo's own ``observation_factorization`` (one ``(N, d)`` index
    array). Observations, rewards, terminations and infos equal those of MaMuJoCo's
    PettingZoo API step for step (``tests/test_multiagent.py`` compares them); ``reset`` is
    MaMuJoCo's own.
    """

    def __init__(self, parallel_env: Any, agents: Sequence[str]):
        super().__init__(parallel_env, agents)
        factorization = parallel_env.observation_factorization
        if factorization is None or self._padded:
            raise ValueError("MaMuJoCo's observation factorization is needed (agents with equal observation sizes)")
        self.robot = parallel_env.single_agent_env
        self._obs_index = np.stack([np.asarray(factorization[a]) for a in self.agents])
        self._act_index = np.array([node.act_ids for part in parallel_env.agent_action_partitions for node in part])
        if sorted(self._act_index.tolist()) != list(range(self.robot.action_space.shape[0])):
            raise ValueError(f"MaMuJoCo's partition does not drive every actuator once: {self._act_index}")
        self._action = np.zeros(self.robot.action_space.shape, dtype=np.float64)
        self._robot_obs: np.ndarray | None = None

    @property
    def last_obs(self) -> dict[str, Any]:
        if self._robot_obs is None:
            return self._last_obs
        return {agent: self._robot_obs[index] for agent, index in zip(self.agents, self._obs_index)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._robot_obs = None
        return super().reset(seed=seed, options=options)

    def step(self, action: Any):
        self._action[self._act_index] = np.asarray(action, dtype=np.float64).reshape(-1)
        obs, reward, terminated, truncated, info = self.robot.step(self._action)
        self._robot_obs = obs
        self.last_infos = dict.fromkeys(self.agents, info)
        self.agent_rewards = np.full(len(self.agents), float(reward))
        return (obs[self._obs_index].astype(np.float32), float(reward), bool(terminated),
                bool(truncated) and not bool(terminated), {})


class MaMuJoCoTaskEnv(MultiAgentTaskEnv, LocomotionTaskEnv):
    """A MaMuJoCo parallel env reporting the ``locomotion`` raw row of its robot plus the partition code."""

    def __init__(self, env, task: MultiAgentTaskSpec, state_in_info: bool = False):
        super().__init__(env, task, state_in_info=state_in_info)
        self._partition = task.extra["partition"]
        expected = PARTITIONS[self._partition]
        nq = self.mujoco_env().model.nq
        actual = tuple(tuple(nq + n.qpos_ids if n.qpos_ids < 0 else n.qpos_ids for n in part)
                       for part in self.sim.agent_action_partitions)
        if actual != expected:
            raise ValueError(f"{task.id}: MaMuJoCo's partition {actual} differs from the view's {expected}")

    def mujoco_env(self) -> Any:
        return self.env.unwrapped.parallel_env.unwrapped.single_agent_env.unwrapped

    def read_raw(self) -> dict[str, Any]:
        row = super().read_raw()
        row["partition"] = _CODES[self._partition]
        return row


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> MaMuJoCoTaskEnv:
    """Build task ``task_id``: ``mamujoco_v1.parallel_env(scenario, agent_conf, **base_kwargs)``."""
    from gymnasium_robotics import mamujoco_v1

    spec = _SPECS[task_id]
    scenario, conf = spec.extra["partition"].split("-")
    env = mamujoco_v1.parallel_env(scenario, conf, render_mode=render_mode, **base_kwargs)
    joint = MaMuJoCoJointEnv(env, spec.agents)
    joint.metadata.setdefault("render_fps", env.single_agent_env.metadata.get("render_fps"))
    return MaMuJoCoTaskEnv(joint, spec, state_in_info=state_in_info)


def _task(robot: str, conf: str, distance: float, agent_doc: str, action_doc: str) -> MultiAgentTaskSpec:
    name = f"{robot}-{conf}"
    task_id = f"rewardgym/MaMuJoCo-{name}-v0"
    n_agents = len(PARTITIONS[name])
    episode_s = 1000 * 0.05
    return MultiAgentTaskSpec(
        id=task_id, family="mamujoco", base_id=f"mamujoco_v1 {robot} {conf}",
        instruction=f"Run forward (in the +x direction) as fast as possible; the {n_agents} agents each control "
                    f"part of the robot and must coordinate" + (" without flipping it over." if robot == "Ant"
                                                                 else "."),
        success_doc=(f"The torso has moved at least {distance:g} m forward (+x) from where it started the episode "
                     f"(torso_pos x - torso_x_start >= {distance:g} m; {distance / episode_s:.2f} m/s over a full "
                     f"{episode_s:g} s episode), as rewardgym/{robot}-Run-v0. {robot}-v5 defaults"
                     + (", including its termination when unhealthy." if robot == "Ant" else
                        " (it never terminates early).")),
        success=forward_success(distance), view=VIEW,
        make_env=functools.partial(make_env, task_id), max_episode_steps=1000, expert=f"MaMuJoCo-{name}.py",
        available=functools.partial(packages_available, "pettingzoo", "gymnasium_robotics"),
        tags=("multi-agent", "standard"), extra={"partition": name, "model": f"{robot}-v5"},
        agents=tuple(f"agent_{i}" for i in range(n_agents)), agent_doc=agent_doc, action_doc=action_doc)


TASKS: list[MultiAgentTaskSpec] = [
    _task("HalfCheetah", "2x3", 100.0,
          "agent_0 controls the back leg (bthigh, bshin, bfoot), agent_1 the front leg (fthigh, fshin, ffoot).",
          "(B, N, 3) actuator commands in [-1, 1]: action[:, i, j] drives agent i's j-th joint."),
    _task("Ant", "2x4", 50.0,
          "agent_0 controls legs 1 and 2 (hip_1, ankle_1, hip_2, ankle_2; hips towards (+x,+y) and (-x,+y)), "
          "agent_1 legs 3 and 4 (hip_3, ankle_3, hip_4, ankle_4; hips towards (-x,-y) and (+x,-y)).",
          "(B, N, 4) actuator commands in [-1, 1]: action[:, i, j] drives agent i's j-th joint."),
    _task("Ant", "4x2", 50.0,
          "agent_i controls leg i+1 (hip then ankle); the hips of legs 1-4 point towards (+x,+y), (-x,+y), "
          "(-x,-y) and (+x,-y).",
          "(B, N, 2) actuator commands in [-1, 1]: action[:, i, j] drives agent i's j-th joint."),
]

_SPECS: dict[str, MultiAgentTaskSpec] = {spec.id: spec for spec in TASKS}
