"""Cooperative Multi-Agent Particle Environments (MPE) from ``mpe2``, PettingZoo's maintained MPE.

``simple_spread`` (Lowe et al., 2017, "cooperative navigation"): ``N`` agents must cover
``N`` landmarks while avoiding each other. The view reads the particle world directly
(``raw_env.world``: agent and landmark positions and velocities), not the observations,
and derives the distances, the coverage and the collisions the reward needs. The task
keeps PettingZoo's defaults (``N=3``, ``local_ratio=0.5``, ``max_cycles=25``, discrete
actions), so the ``"env"`` reward is ``simple_spread_v3``'s own.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from rewardgym.envs.multiagent import (JointParallelEnv, MultiAgentTaskEnv, MultiAgentTaskSpec,
                                       multiagent_common_fields, packages_available)
from rewardgym.envs.view import Field, RawBatch, StateView, ViewSpec, raw

AGENT_SIZE = 0.15
"""Radius of an MPE agent (simple_spread), world units: two agents collide when their centres are
closer than ``2 * AGENT_SIZE``."""
CAPTURE_RADIUS = 0.1
"""A landmark is covered when an agent's centre is within this distance (mpe2's ``CAPTURE_RADIUS``,
the ``occupied_landmarks`` test of MPE's benchmark data)."""


def _agent_landmark_dist(batch: RawBatch) -> np.ndarray:
    delta = batch["agent_pos"][:, :, None, :] - batch["landmark_pos"][:, None, :, :]
    return np.sqrt(np.sum(delta * delta, axis=-1))


def _landmark_min_dist(batch: RawBatch) -> np.ndarray:
    return _agent_landmark_dist(batch).min(axis=1)


def _agent_collisions(batch: RawBatch) -> np.ndarray:
    pos = batch["agent_pos"]
    delta = pos[:, :, None, :] - pos[:, None, :, :]
    close = np.sqrt(np.sum(delta * delta, axis=-1)) < 2.0 * AGENT_SIZE
    n = pos.shape[1]
    close[:, np.arange(n), np.arange(n)] = False
    return close.sum(axis=-1).astype(np.float64)


VIEW = ViewSpec.build(
    "mpe",
    doc=("Multi-Agent Particle Environment (mpe2's simple_spread): N agents and N landmarks on a 2-D plane. "
         "Lengths are in world units (u): agents and landmarks start uniformly in [-1, 1]^2; agents are discs "
         f"of radius {AGENT_SIZE} u (two collide when their centres are closer than {2 * AGENT_SIZE:g} u); "
         f"a landmark counts as covered when an agent's centre is within {CAPTURE_RADIUS} u. One step lasts "
         "dt = 0.1 s. Per-agent fields are (B, N, ...); landmark fields are global, (B, L, ...) with L = N "
         "landmarks. The env's own reward of agent i (env_reward[:, i]) is 0.5 x its collision penalty (-1 per "
         "other agent it overlaps) + 0.5 x the global coverage reward (-sum over landmarks of the distance to "
         "the nearest agent)."),
    fields=[
        *multiagent_common_fields(),
        Field("agent_pos", "(B, N, 2)", "u", "Position (x, y) of each agent.", raw("agent_pos")),
        Field("agent_vel", "(B, N, 2)", "u/s", "Velocity (x, y) of each agent.", raw("agent_vel")),
        Field("agent_landmark_dist", "(B, N, L)", "u",
              "Distance from each agent's centre to each landmark: [:, i, l] is agent i to landmark l.",
              _agent_landmark_dist),
        Field("agent_collisions", "(B, N)", "-",
              f"Number of other agents each agent overlaps (centres closer than {2 * AGENT_SIZE:g} u).",
              _agent_collisions),
        Field("landmark_pos", "(B, L, 2)", "u", "Position (x, y) of each landmark (they never move).",
              raw("landmark_pos")),
        Field("landmark_min_dist", "(B, L)", "u",
              f"Distance from each landmark to its nearest agent (covered when < {CAPTURE_RADIUS} u).",
              _landmark_min_dist),
        Field("dt", "(B,)", "s", "Duration of one env step.", raw("dt"), previous=False),
    ],
)


class MPETaskEnv(MultiAgentTaskEnv):
    """An mpe2 parallel env that reports the ``mpe`` raw row: ``agent_pos``/``agent_vel``
    ``(N, 2)``, ``landmark_pos`` ``(L, 2)`` and ``dt``, copied from ``raw_env.world``."""

    def read_raw(self) -> dict[str, Any]:
        world = self.sim.world
        return {"agent_pos": np.array([a.state.p_pos for a in world.agents], dtype=np.float64),
                "agent_vel": np.array([a.state.p_vel for a in world.agents], dtype=np.float64),
                "landmark_pos": np.array([lm.state.p_pos for lm in world.landmarks], dtype=np.float64),
                "dt": float(world.dt)}


def _all_covered(state: StateView) -> np.ndarray:
    return np.all(state.landmark_min_dist < CAPTURE_RADIUS, axis=1)


def make_env(task_id: str, render_mode: str | None = None, state_in_info: bool = False,
             **base_kwargs: Any) -> MPETaskEnv:
    """Build task ``task_id``: ``mpe2``'s parallel env (the task's options, then ``base_kwargs``)."""
    from mpe2 import simple_spread_v3

    spec = _SPECS[task_id]
    kwargs = {**spec.extra.get("base_kwargs", {}), **base_kwargs}
    env = simple_spread_v3.parallel_env(render_mode=render_mode, **kwargs)
    return MPETaskEnv(JointParallelEnv(env, spec.agents), spec, state_in_info=state_in_info)


TASKS: list[MultiAgentTaskSpec] = [
    MultiAgentTaskSpec(
        id="rewardgym/MPE-SimpleSpread-v0", family="mpe", base_id="simple_spread_v3",
        instruction="Cooperate to cover every landmark: each landmark should have an agent on it, and agents "
                    "should not bump into each other.",
        success_doc=(f"Every landmark is covered: its nearest agent is within {CAPTURE_RADIUS} u (mpe2's "
                     "CAPTURE_RADIUS, MPE's occupied_landmarks test), i.e. all(landmark_min_dist < "
                     f"{CAPTURE_RADIUS}). PettingZoo defaults: N = 3 agents and 3 landmarks, local_ratio 0.5, "
                     "25 steps per episode (truncation), discrete actions."),
        success=_all_covered, view=VIEW,
        make_env=functools.partial(make_env, "rewardgym/MPE-SimpleSpread-v0"),
        max_episode_steps=25, expert="MPE-SimpleSpread.py",
        available=functools.partial(packages_available, "pettingzoo", "mpe2"), tags=("multi-agent", "discrete"),
        extra={"base_kwargs": {"N": 3, "local_ratio": 0.5, "max_cycles": 25, "continuous_actions": False}},
        agents=("agent_0", "agent_1", "agent_2"),
        action_doc=("(B, N) integers, one per agent: 0 no-op, 1 push -x, 2 push +x, 3 push -y, 4 push +y "
                    "(a unit force; agents accelerate, with damping)."),
        agent_doc="The agents are identical.",
    ),
]

_SPECS: dict[str, MultiAgentTaskSpec] = {spec.id: spec for spec in TASKS}
