"""Meta-World family: real v3 envs, the `metaworld` view, success tests, expert programs."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

pytest.importorskip("metaworld")

from rewardgym.envs.families import metaworld as mwf  # noqa: E402
from rewardgym.envs.view import StateView, stack_raw  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402

SPECS = {spec.short_name: spec for spec in mwf.TASKS}
MT10_IDS = [f"rewardgym/MetaWorld-{n}-v0" for n in mwf.MT10]


def _batch(spec, envs, prev=None):
    raw = stack_raw([e.raw_state() for e in envs])
    raw["success"] = spec.success(StateView(spec.view, raw))
    return raw, StateView(spec.view, raw, prev_raw=prev)


def _shape(text: str, batch: int) -> tuple[int, ...]:
    dims = [d.strip() for d in text.strip("()").split(",") if d.strip()]
    return tuple(batch if d == "B" else int(d) for d in dims)


def test_mt10_declared():
    ids = {spec.id for spec in mwf.TASKS}
    assert set(MT10_IDS) <= ids
    for spec in mwf.TASKS:
        assert spec.family == "metaworld" and spec.max_episode_steps == 500
        assert spec.expert_path is not None and spec.expert_path.exists(), spec.expert
        assert "MT10" in spec.tags
        pickle.loads(pickle.dumps(spec.make_env))


@pytest.mark.parametrize("task_id", MT10_IDS)
def test_task_view_and_expert(task_id):
    spec = next(s for s in mwf.TASKS if s.id == task_id)
    envs = [spec.make_env() for _ in range(2)]
    try:
        for i, env in enumerate(envs):
            obs, _ = env.reset(seed=10 + i)
            assert obs.shape == env.observation_space.shape == (39,)
        reset_raw, reset_state = _batch(spec, envs)
        assert reset_state.success.shape == (2,) and reset_state.success.dtype == np.bool_
        assert not reset_state.success.any()
        # goal observable: the last 3 observation entries are the goal
        np.testing.assert_allclose(obs[-3:], reset_state.goal_pos[1], atol=1e-9)
        program = RewardProgram.from_file(spec.expert_path, view=spec.view)
        prev = reset_raw
        for _ in range(3):
            actions = np.stack([e.action_space.sample() for e in envs]).astype(np.float64)
            for env, action in zip(envs, actions):
                _, reward, terminated, truncated, info = env.step(action)
                assert not terminated and not truncated and "success" in info
            raw, state = _batch(spec, envs, prev)
            for name, field in spec.view.fields.items():
                value = np.asarray(getattr(state, name))
                assert value.shape == _shape(field.shape, 2), (name, value.shape, field.shape)
                assert np.all(np.isfinite(value.astype(np.float64))), name
            np.testing.assert_allclose(state.prev.hand_pos, prev["hand_pos"])
            np.testing.assert_allclose(state.obj_init_pos, reset_state.obj_init_pos)
            np.testing.assert_allclose(state.goal_error <= state.goal_tolerance, state.success)
            reward, terms = program.compute_reward(state, actions)
            assert np.asarray(reward).shape == (2,) and np.all(np.isfinite(reward))
            assert terms and all(np.asarray(v).shape == (2,) for v in terms.values())
            prev = raw
    finally:
        for env in envs:
            env.close()


def test_reset_seed_is_deterministic_and_positions_random():
    env = SPECS["MetaWorld-PickPlace"].make_env()
    obs_a, _ = env.reset(seed=7)
    goal_a = env.raw_state()["goal_pos"].copy()
    obs_b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    goals = {tuple(np.round(goal_a, 6))}
    for _ in range(3):  # unseeded resets draw fresh object/goal positions
        env.reset()
        goals.add(tuple(np.round(env.raw_state()["goal_pos"], 6)))
    assert len(goals) == 4
    env.close()


def _policy(name: str):
    import metaworld.policies as policies

    return {"Reach": policies.SawyerReachV3Policy, "PickPlace": policies.SawyerPickPlaceV3Policy,
            "DrawerOpen": policies.SawyerDrawerOpenV3Policy}[name]()


@pytest.mark.parametrize("name", ["Reach", "PickPlace", "DrawerOpen"])
def test_scripted_policy_reaches_success(name):
    """Meta-World's scripted policy drives the task to success; the view and the expert agree."""
    spec = SPECS[f"MetaWorld-{name}"]
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)
    env = spec.make_env()
    obs, _ = env.reset(seed=1)
    policy = _policy(name)
    prev, state = _batch(spec, [env])
    rewards = []
    for _ in range(300):
        action = policy.get_action(obs)
        obs, _, _, _, info = env.step(action)
        raw, state = _batch(spec, [env], prev)
        assert bool(state.success[0]) == bool(info["success"])
        assert bool(state.goal_error[0] <= state.goal_tolerance[0]) == bool(info["success"])
        reward, _ = program.compute_reward(state, np.asarray(action, np.float64)[None])
        rewards.append(float(reward[0]))
        prev = raw
        if info["success"]:
            break
    assert state.success[0], f"{name}: scripted policy never succeeded"
    assert rewards[-1] >= 8.0 > rewards[0], rewards[:: max(1, len(rewards) // 10)]
    env.close()


def test_view_docs_are_complete():
    text = mwf.VIEW.describe()
    for name in ("hand_pos", "gripper_opening", "obj_pos", "obj_quat", "goal_pos", "obj_init_pos",
                 "hand_init_pos", "obj_to_goal", "hand_to_obj", "grasped", "task_success"):
        assert re.search(rf"\b{name}\b", text), name


def _grasped_reference(env) -> bool:
    """The pad/object test as first written (vectorised over the contact list)."""
    data = env.sim.data
    n = data.ncon
    if n == 0:
        return False
    geom = data.contact.geom[:n]
    force = data.efc_force[data.contact.efc_address[:n]]
    on_obj = np.asarray(env.sim.model.geom_bodyid)[geom] == env._obj_body
    touching = []
    for pad in env._pads:
        pair = ((geom[:, 0] == pad) & on_obj[:, 1]) | ((geom[:, 1] == pad) & on_obj[:, 0])
        touching.append(float(np.sum(force[pair])) > 0.0)
    return touching[0] and touching[1]


def test_grasped_matches_the_contact_test_through_a_scripted_grasp():
    """``grasped`` (a loop over the few contacts) agrees with the vectorised reference at every
    step of Meta-World's own pick-place policy, grasping included."""
    from metaworld.policies import SawyerPickPlaceV3Policy

    env = SPECS["MetaWorld-PickPlace"].make_env()
    try:
        obs, _ = env.reset(seed=0)
        policy = SawyerPickPlaceV3Policy()
        seen = set()
        for _ in range(150):
            obs, *_ = env.step(np.clip(policy.get_action(obs), -1, 1))
            grasped = env.raw_state()["grasped"]
            assert grasped == _grasped_reference(env)
            seen.add(grasped)
        assert seen == {False, True}
    finally:
        env.close()
