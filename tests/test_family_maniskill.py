"""ManiSkill family: real ManiSkill 3 envs on CPU physics (no GPU, no Vulkan needed), the
`maniskill` view read from the simulator, the no-render-device patch, gym.make / make_vec and
the info contract, expert programs, and one-line errors for what cannot run here.

On a machine without a render device (this suite's CI) the patched path is what runs: there is
no real renderer to compare physics against, so the tests check that the patched path is
deterministic and that the view agrees with ManiSkill's own observation, info and evaluate()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mani_skill")

import rewardgym  # noqa: E402,F401  (registers the ids)
from rewardgym.envs.families import maniskill as ms  # noqa: E402
from rewardgym.envs.task import TaskUnavailableError  # noqa: E402
from rewardgym.envs.view import StateView, stack_raw  # noqa: E402
from rewardgym.rewards.program import RewardProgram  # noqa: E402

SPECS = {spec.short_name: spec for spec in ms.TASKS}
CPU_TASKS = ["ManiSkill-PickCube", "ManiSkill-PushCube", "ManiSkill-PullCube", "ManiSkill-StackCube",
             "ManiSkill-PegInsertionSide"]


def _state(spec, env, prev=None):
    raw = stack_raw([env.raw_state()])
    raw["success"] = spec.success(StateView(spec.view, raw))
    return raw, StateView(spec.view, raw, prev_raw=prev)


def _shape(text: str, batch: int) -> tuple[int, ...]:
    dims = [d.strip() for d in text.strip("()").split(",") if d.strip()]
    return tuple(batch if d == "B" else int(d) for d in dims)


def test_tasks_declared_and_available_on_cpu():
    assert [s.short_name for s in ms.TASKS] == CPU_TASKS + ["ManiSkill-PickSingleYCB"]
    for name in CPU_TASKS:
        assert SPECS[name].available() == (True, ""), name
        assert SPECS[name].expert_path.exists()
    assert all(s.view is ms.VIEW for s in ms.TASKS)  # one view for the family


@pytest.mark.parametrize("name", CPU_TASKS)
def test_view_reads_the_simulator_and_evaluate(name):
    spec = SPECS[name]
    env = spec.make_env()
    try:
        obs, info = env.reset(seed=1)
        assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
        u = env.sim
        program = RewardProgram.from_file(spec.expert_path, view=spec.view)
        prev, _ = _state(spec, env)
        rng = np.random.default_rng(0)
        for _ in range(4):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            obs, _, _, _, info = env.step(action)
            raw, state = _state(spec, env, prev)
            for fname, field in spec.view.fields.items():
                value = np.asarray(getattr(state, fname))
                assert value.shape == _shape(field.shape, 1), (fname, value.shape)
                assert np.all(np.isfinite(value.astype(np.float64))), fname
            # fields agree with ManiSkill's own state, info and evaluate()
            np.testing.assert_allclose(state.tcp_pos[0], u.agent.tcp.pose.p[0].numpy(), atol=1e-6)
            np.testing.assert_allclose(state.qpos[0], obs[:9], atol=1e-5)  # obs starts with agent qpos
            assert bool(state.task_success[0]) == bool(info["success"]) == bool(u.evaluate()["success"][0])
            if "peg_head_pos_at_hole" in info:
                np.testing.assert_allclose(state.head_in_goal[0], info["peg_head_pos_at_hole"], atol=1e-5)
            grasp = u.agent.is_grasping(spec.extra["reader"](u).obj)
            assert bool(state.is_grasped[0]) == bool(grasp[0])
            reward, terms = program.compute_reward(state, action[None].astype(np.float64))
            assert np.asarray(reward).shape == (1,) and np.all(np.isfinite(reward)) and terms
            prev = raw
    finally:
        env.close()


def test_patch_only_without_a_render_device(monkeypatch):
    """The material patch is applied exactly where SAPIEN cannot create a render material."""
    import sapien.render

    monkeypatch.setattr(ms, "_STATE", {"render_error": None})  # as on a machine with a device
    before = sapien.render.RenderMaterial
    assert ms.ensure_physics_only() is False and not ms.patched()
    assert sapien.render.RenderMaterial is before
    monkeypatch.undo()
    device_error = ms.render_device_error()  # the real probe of this machine
    assert ms.ensure_physics_only() is (device_error is not None)
    if device_error is not None:
        assert sapien.render.RenderMaterial is ms.InertRenderMaterial and ms.patched()
        material = sapien.render.RenderMaterial(base_color=[1, 0, 0, 1])
        material.base_color = [0, 1, 0, 1]
        material.set_base_color([0, 0, 1, 1])
    else:  # pragma: no cover - a machine with a Vulkan device
        assert not ms.patched()


def test_patched_physics_is_deterministic():
    """Two envs, same seed and actions: identical observations, rewards and view rows."""
    spec = SPECS["ManiSkill-StackCube"]
    envs = [spec.make_env() for _ in range(2)]
    try:
        out = []
        for env in envs:
            obs, _ = env.reset(seed=7)
            rng = np.random.default_rng(3)
            rows = [obs]
            for _ in range(15):
                obs, r, _, _, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                row = env.raw_state()
                rows.append(np.concatenate([obs, [r], row["obj_pos"], row["tcp_pos"], row["goal_pos"]]))
            out.append(np.concatenate(rows))
        np.testing.assert_array_equal(out[0], out[1])
    finally:
        for env in envs:
            env.close()


def test_gym_make_expert_info_contract_and_scripted_push():
    """gym.make with the expert program (sandboxed): info keys each step, episode_stats at the
    end; a scripted push (the physics the program rewards) succeeds and earns more than random."""
    env = gym.make("rewardgym/ManiSkill-PushCube-v0", reward="expert")
    try:
        returns = {}
        for policy in ("push", "random"):
            env.reset(seed=0)
            env.action_space.seed(0)
            total, info = 0.0, {}
            for _ in range(50):
                state = env.unwrapped.sim.unwrapped  # the simulator, for the scripted policy only
                tcp, obj = state.agent.tcp.pose.p[0].numpy(), state.obj.pose.p[0].numpy()
                goal = state.goal_region.pose.p[0].numpy()
                if policy == "random":
                    action = env.action_space.sample()
                else:
                    d = (goal[:2] - obj[:2]) / np.linalg.norm(goal[:2] - obj[:2])
                    p = np.r_[obj[:2] - 0.035 * d, 0.02]
                    far = np.linalg.norm(tcp[:2] - p[:2])
                    target = (np.r_[p[:2], max(tcp[2], 0.06)] if far > 0.02 else p) if far > 0.01 \
                        else np.r_[obj[:2] + 0.05 * d, 0.02]
                    action = np.r_[np.clip((target - tcp) / 0.1, -1, 1), -1.0].astype(np.float32)
                _, reward, terminated, truncated, info = env.step(action)
                assert {"env_reward", "reward_terms", "success"} <= set(info)
                assert set(info["reward_terms"]) == {"approach", "push", "flat", "success"}
                total += float(reward)
                if terminated or truncated:
                    break
            assert "episode_stats" in info
            returns[policy] = (total, info["episode_stats"]["success"])
        assert returns["push"][1] and not returns["random"][1]
        assert returns["push"][0] > returns["random"][0] + 10
    finally:
        env.close()


def test_make_vec_batches_single_cpu_envs():
    venv = gym.make_vec("rewardgym/ManiSkill-PushCube-v0", num_envs=2, vectorization_mode="sync", reward="expert")
    try:
        obs, _ = venv.reset(seed=0)
        assert obs.shape == (2, 35)
        for _ in range(3):
            obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert reward.shape == (2,) and info["success"].shape == (2,) and info["env_reward"].shape == (2,)
        assert info["reward_terms"]["push"].shape == (2,)
    finally:
        venv.close()


def test_bad_input_is_one_line():
    spec = SPECS["ManiSkill-PushCube"]
    with pytest.raises(ValueError, match=r"ManiSkill-PushCube-v0: num_envs=4.*gym.make_vec") as err:
        spec.make_env(num_envs=4)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"ManiSkill-PushCube-v0: sim_backend='physx_cuda'"):
        spec.make_env(sim_backend="physx_cuda")
    if ms.render_device_error() is not None:
        with pytest.raises(TaskUnavailableError, match=r"ManiSkill-PushCube-v0: obs_mode='rgb' needs a Vulkan") as err:
            spec.make_env(obs_mode="rgb")
        assert "\n" not in str(err.value)


def test_task_needing_a_download_is_unavailable_never_prompts(tmp_path, monkeypatch):
    monkeypatch.setenv("MS_ASSET_DIR", str(tmp_path))  # an empty asset folder
    ok, reason = SPECS["ManiSkill-PickSingleYCB"].available()
    assert not ok and "[ycb]" in reason and "download_asset ycb" in reason and "\n" not in reason
    with pytest.raises(TaskUnavailableError, match=r"ManiSkill-PickSingleYCB-v0 is unavailable.*download_asset ycb"):
        gym.make("rewardgym/ManiSkill-PickSingleYCB-v0")
    # the guard in front of ManiSkill's own make (which would ask on stdin) names the task too
    from mani_skill.utils import assets

    if not assets.is_data_source_downloaded("ycb"):
        with pytest.raises(TaskUnavailableError, match=r"^my-task: ManiSkill's PickSingleYCB-v1 needs assets"):
            ms._check_assets("my-task", "PickSingleYCB-v1")
