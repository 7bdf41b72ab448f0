"""Locomotion family: real Gymnasium v5 MuJoCo envs, the `locomotion` view, success tests,
expert programs, and rendering."""

from __future__ import annotations

import ctypes.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

import mujoco  # noqa: E402

from rewardgym.envs.families import locomotion as lf  # noqa: E402
from rewardgym.envs.view import StateView, stack_raw  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402

SPECS = {spec.short_name: spec for spec in lf.TASKS}
N_JOINTS = {"HalfCheetah": 6, "Hopper": 3, "Walker2d": 6, "Ant": 8, "Humanoid": 17}
N_FEET = {"HalfCheetah": 2, "Hopper": 1, "Walker2d": 2, "Ant": 4, "Humanoid": 2}


def _batch(spec, envs, prev=None):
    raw = stack_raw([e.raw_state() for e in envs])
    raw["success"] = spec.success(StateView(spec.view, raw))
    return raw, StateView(spec.view, raw, prev_raw=prev)


def _shape(field, model: str, batch: int) -> tuple[int, ...]:
    sizes = {"B": batch, "n_joints": N_JOINTS[model], "n_feet": N_FEET[model]}
    dims = [d.strip() for d in field.shape.strip("()").split(",") if d.strip()]
    return tuple(sizes[d] if d in sizes else int(d) for d in dims)


def _state_after(env, qpos, qvel, spec):
    """Set the simulator state, take one zero-action step, and return the view of it."""
    env.unwrapped.set_state(qpos, qvel)
    env.step(np.zeros(env.action_space.shape))
    return _batch(spec, [env])[1]


def test_tasks_declared():
    assert sorted(SPECS) == sorted([
        "HalfCheetah-Run", "Hopper-Hop", "Walker2d-Walk", "Ant-Run", "Humanoid-Run",
        "Hopper-Backflip", "Hopper-Frontflip", "HalfCheetah-Backflip", "Ant-LieDown",
        "Walker2d-Backward"])
    for spec in lf.TASKS:
        assert spec.family == "locomotion" and spec.view is lf.VIEW
        assert spec.expert_path is not None and spec.expert_path.is_file(), spec.id
        assert spec.tags in (("standard",), ("new-behaviour",))
        pickle.loads(pickle.dumps(spec.make_env))
    # The family module must not import its simulator.
    code = ("import sys, rewardgym.envs.families.locomotion; "
            "assert 'mujoco' not in sys.modules and 'gymnasium.envs.mujoco' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_task_view_success_and_expert(name):
    spec = SPECS[name]
    model = spec.base_id.removesuffix("-v5")
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)
    envs = [spec.make_env() for _ in range(2)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
            env.action_space.seed(i)
        prev, state = _batch(spec, envs)
        assert state.success.dtype == np.bool_ and state.success.shape == (2,)
        assert not state.success.any(), "no task is solved at reset"
        np.testing.assert_allclose(state.pitch_unwrapped, 0.0)
        np.testing.assert_allclose(state.torso_x_start, state.torso_pos[:, 0])
        for _ in range(3):
            actions = np.stack([env.action_space.sample() for env in envs]).astype(np.float64)
            for env, a in zip(envs, actions):
                env.step(a)
            raw, state = _batch(spec, envs, prev)
            for field in spec.view.fields.values():
                value = np.asarray(getattr(state, field.name))
                assert value.shape == _shape(field, model, 2), field.name
                assert np.all(np.isfinite(value.astype(np.float64))), field.name
                assert np.asarray(getattr(state.prev, field.name)).shape == value.shape
            assert state.foot_contact.dtype == np.bool_ and state.healthy.dtype == np.bool_
            np.testing.assert_allclose(state.prev.torso_pos, StateView(spec.view, prev).torso_pos)
            reward, terms = program.compute_reward(state, actions)
            assert reward.shape == (2,) and np.all(np.isfinite(reward))
            assert terms and all(np.shape(v) == (2,) and np.all(np.isfinite(v)) for v in terms.values())
            prev = raw
    finally:
        for env in envs:
            env.close()


@pytest.mark.parametrize("model", list(N_JOINTS))
def test_view_agrees_with_mujoco(model):
    """Lazy fields equal MuJoCo's own kinematics, and `healthy` equals the env's is_healthy."""
    spec = next(s for s in lf.TASKS if s.base_id == f"{model}-v5" and "standard" in s.tags)
    env = spec.make_env(terminate_when_unhealthy=False) if model != "HalfCheetah" else spec.make_env()
    m, d = env.unwrapped.model, env.unwrapped.data
    env.reset(seed=3)
    env.action_space.seed(3)
    healthy_seen: set[bool] = set()
    contacts_seen: set[int] = set()
    for _ in range(60):
        env.step(env.action_space.sample())
        state = _batch(spec, [env])[1]
        fresh = mujoco.MjData(m)
        fresh.qpos[:], fresh.qvel[:] = d.qpos, d.qvel
        mujoco.mj_forward(m, fresh)
        np.testing.assert_allclose(state.torso_pos[0], fresh.xpos[1], atol=1e-9)
        q = state.torso_quat[0]
        np.testing.assert_allclose(q * np.sign(q @ fresh.xquat[1]), fresh.xquat[1], atol=1e-9)
        xmat = fresh.xmat[1].reshape(3, 3)
        assert state.torso_up[0] == pytest.approx(xmat[2, 2], abs=1e-9)
        roll, pitch, yaw = state.torso_euler[0]
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
        rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
        np.testing.assert_allclose(rz @ ry @ rx, xmat, atol=1e-9)
        vel = np.zeros(6)  # (angular, linear) at the body's centre of mass, world frame
        mujoco.mj_objectVelocity(m, fresh, mujoco.mjtObj.mjOBJ_BODY, 1, vel, 0)
        np.testing.assert_allclose(state.torso_ang_vel[0], vel[:3], atol=1e-9)
        origin_vel = vel[3:] + np.cross(vel[:3], fresh.xpos[1] - fresh.xipos[1])
        np.testing.assert_allclose(state.torso_lin_vel[0], origin_vel, atol=1e-9)
        for i, name in enumerate(lf.MODELS[spec.base_id].joints):
            j = m.joint(name)
            assert state.joint_pos[0, i] == d.qpos[j.qposadr[0]]
            assert state.joint_vel[0, i] == d.qvel[j.dofadr[0]]
        touching = {int(a + b) for a, b in d.contact.geom if min(a, b) == 0}  # floor is geom 0
        feet = [m.geom(g).id for g in lf.MODELS[spec.base_id].feet]
        assert list(state.foot_contact[0]) == [f in touching for f in feet]
        contacts_seen.update(i for i, f in enumerate(feet) if f in touching)
        healthy = getattr(env.unwrapped, "is_healthy", True)
        assert bool(state.healthy[0]) == bool(healthy)
        healthy_seen.add(bool(healthy))
    env.close()
    if model in ("Hopper", "Walker2d", "Humanoid"):  # random actions make these fall
        assert healthy_seen == {True, False}
    assert contacts_seen, "some foot touched the floor"


@pytest.mark.parametrize("name", ["HalfCheetah-Run", "Hopper-Hop", "Walker2d-Walk", "Humanoid-Run"])
def test_standard_experts_reproduce_env_reward(name):
    """The standard experts are the base env's reward (minus Humanoid's contact cost)."""
    spec = SPECS[name]
    program = RewardProgram.from_file(spec.expert_path, view=spec.view)
    env = spec.make_env()
    env.reset(seed=0)
    env.action_space.seed(0)
    prev = _batch(spec, [env])[0]
    for _ in range(30):
        action = env.action_space.sample()
        _, reward, terminated, _, info = env.step(action)
        raw, state = _batch(spec, [env], prev)
        expert, terms = program.compute_reward(state, action[None].astype(np.float64))
        assert expert[0] == pytest.approx(reward - info.get("reward_contact", 0.0), abs=1e-6)
        assert terms["forward"][0] == pytest.approx(info["reward_forward"], abs=1e-9)
        prev = raw
        if terminated:
            break
    env.close()


@pytest.mark.parametrize("name,distance", [("HalfCheetah-Run", 100.0), ("Hopper-Hop", 10.0),
                                           ("Walker2d-Walk", 10.0), ("Ant-Run", 50.0),
                                           ("Humanoid-Run", 10.0), ("Walker2d-Backward", -5.0)])
def test_progress_success(name, distance):
    spec = SPECS[name]
    env = spec.make_env()
    env.reset(seed=0)
    d = env.unwrapped.data
    for shift, expected in [(0.9 * distance, False), (distance + np.sign(distance) * 0.5, True)]:
        qpos, qvel = d.qpos.copy(), np.zeros_like(d.qvel)
        qpos[0] = shift
        state = _state_after(env, qpos, qvel, spec)
        assert state.torso_x_start[0] == pytest.approx(0.0, abs=0.2)
        assert bool(state.success[0]) is expected, (shift, state.torso_pos[0])
    env.close()


@pytest.mark.parametrize("name,rate", [("HalfCheetah-Backflip", -15.0), ("Hopper-Backflip", -15.0),
                                       ("Hopper-Frontflip", 15.0)])
def test_flip_success_and_pitch_sign(name, rate):
    """Spin the body in the air: pitch_unwrapped accumulates past 2*pi with the documented sign."""
    spec = SPECS[name]
    env = spec.make_env()
    env.reset(seed=0)
    m, d = env.unwrapped.model, env.unwrapped.data
    qpos, qvel = d.qpos.copy(), np.zeros_like(d.qvel)
    qpos[1] += 10.0   # high in the air: free rotation
    qvel[2] = rate
    env.unwrapped.set_state(qpos, qvel)
    states = []
    for _ in range(80):
        _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape))
        assert not terminated, "flip tasks disable the unhealthy termination"
        states.append(_batch(spec, [env])[1])
        if states[-1].success[0]:
            break
    pitch = np.array([s.pitch_unwrapped[0] for s in states])
    assert np.all(np.sign(np.diff(pitch)) == np.sign(rate)), "monotone in the spin direction"
    assert states[-1].success[0] and abs(pitch[-1]) >= 2 * np.pi
    assert not states[0].success[0]
    env.close()


def test_pitch_sign_convention():
    """Negative pitch raises the front: HalfCheetah's head and Ant's +x legs go up."""
    spec = SPECS["HalfCheetah-Run"]
    env = spec.make_env()
    env.reset(seed=0)
    m, d = env.unwrapped.model, env.unwrapped.data
    qpos = d.qpos.copy()
    for pitch in (-0.3, 0.3):
        qpos[2] = pitch
        state = _state_after(env, qpos, np.zeros_like(d.qvel), spec)
        head_above_torso = d.geom_xpos[m.geom("head").id, 2] - d.xpos[1, 2]
        assert np.sign(head_above_torso) == -np.sign(pitch)
        assert np.sign(state.torso_euler[0, 1]) == np.sign(pitch)
    env.close()


def test_free_joint_pitch_accumulator():
    """Ant tumbling in the air: pitch_unwrapped follows the integrated world-y rate past 2*pi."""
    spec = SPECS["Ant-Run"]
    env = spec.make_env(terminate_when_unhealthy=False)
    env.reset(seed=0)
    d = env.unwrapped.data
    qpos, qvel = d.qpos.copy(), np.zeros_like(d.qvel)
    qpos[2], qpos[3:7] = 20.0, (1.0, 0.0, 0.0, 0.0)
    qvel[4] = -8.0  # body y == world y at this orientation: pitching nose-up (back flip)
    env.unwrapped.set_state(qpos, qvel)
    env.on_reset(None, {})
    prev = _batch(spec, [env])[1]
    integrated = 0.0
    for _ in range(25):
        env.step(np.zeros(8))
        state = _batch(spec, [env])[1]
        integrated += 0.5 * (state.torso_ang_vel[0, 1] + prev.torso_ang_vel[0, 1]) * state.dt[0]
        prev = state
    assert integrated < -2 * np.pi
    assert state.pitch_unwrapped[0] == pytest.approx(integrated, rel=0.05)
    assert abs(state.torso_euler[0, 1]) <= np.pi / 2 + 1e-9
    env.close()


def test_ant_lie_down_success():
    """Relaxing all joints lets the Ant settle belly-down at ~0.38 m, which is success;
    at reset (0.75 m) and when upside down it is not."""
    spec = SPECS["Ant-LieDown"]
    env = spec.make_env()
    env.reset(seed=0)
    state = _batch(spec, [env])[1]
    assert not state.success[0] and state.torso_height[0] > 0.6
    for _ in range(60):
        env.step(np.zeros(8))
    state = _batch(spec, [env])[1]
    assert state.success[0], (state.torso_height, state.torso_up, state.torso_lin_vel)
    d = env.unwrapped.data
    qpos = d.qpos.copy()
    qpos[2], qpos[3:7] = 0.6, (0.0, 1.0, 0.0, 0.0)  # upside down
    env.unwrapped.set_state(qpos, np.zeros_like(d.qvel))
    for _ in range(40):
        env.step(np.zeros(8))
    state = _batch(spec, [env])[1]
    assert state.torso_up[0] < 0 and state.torso_height[0] < lf.ANT_LIE_HEIGHT and not state.success[0]
    env.close()


def test_state_in_info_row_is_picklable_and_cheap():
    spec = SPECS["HalfCheetah-Run"]
    env = spec.make_env(state_in_info=True)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    row = pickle.loads(pickle.dumps(info["state"]))
    assert set(row) == {"qpos", "qvel", "com", "episode", "env_reward", "elapsed_steps", "terminated"}
    env.close()


def _renderer_available() -> str | None:
    backend = os.environ.get("MUJOCO_GL", "")
    if backend not in ("osmesa", "egl"):
        return f"MUJOCO_GL={backend!r}; set MUJOCO_GL=osmesa or egl for headless rendering"
    lib = {"osmesa": "OSMesa", "egl": "EGL"}[backend]
    if ctypes.util.find_library(lib) is None:
        return f"MUJOCO_GL={backend} but lib{lib} is not installed (Debian: apt-get install libosmesa6)"
    return None


@pytest.mark.skipif(_renderer_available() is not None, reason=str(_renderer_available()))
def test_renders_rgb_frame():
    env = SPECS["HalfCheetah-Run"].make_env(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    frame = env.render()
    env.close()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.std() > 5.0, "a real image, not a blank frame"


@pytest.mark.parametrize("name", ["HalfCheetah-Run", "Ant-Run"])
def test_the_batch_reader_equals_the_rows_stacked(name):
    """``read_raw_batch`` (what vector envs call every step) reads what ``read_raw`` does, row by row."""
    from rewardgym.envs.task import raw_batch_of

    spec = SPECS[name]
    envs = [spec.make_env() for _ in range(3)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
        rng = np.random.default_rng(0)
        for _ in range(20):
            for env in envs:
                env.step(rng.uniform(-1, 1, env.action_space.shape))
            batch = raw_batch_of(envs)
            rows = stack_raw([env.raw_state() for env in envs])
            assert sorted(batch) == sorted(rows)
            for key, value in rows.items():
                assert batch[key].dtype == value.dtype and batch[key].shape == value.shape, key
                np.testing.assert_array_equal(batch[key], value, err_msg=key)
            for env in envs:
                assert not np.shares_memory(batch["qpos"], env.unwrapped.data.qpos)
    finally:
        for env in envs:
            env.close()
