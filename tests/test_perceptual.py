"""Perceptual rewards from demonstrations (Sermanet et al. 2016) and value-function potentials.

Real Meta-World scenes rendered off-screen, the simulator's scripted expert, a real (small)
time-contrastive encoder. Kept fast: 3 short demonstrations and a short encoder training,
shared by the tests of this module.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rewardgym  # noqa: F401 - registers the ids
from rewardgym.learners.episodes import public
from rewardgym.envs.frames import FrameRenderer, FrameSpec
from rewardgym.perceptual import DemoError, Demos, PerceptualModel, collect
from rewardgym.perceptual.model import segment

TASK = "rewardgym/MetaWorld-DrawerClose-v0"


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Demos:
    path = tmp_path_factory.mktemp("demos") / "drawer.npz"
    collect(TASK, episodes=3, seed=0).save(path)
    return Demos.load(path)


@pytest.fixture(scope="module")
def model_path(demos, tmp_path_factory):
    model = PerceptualModel.fit(demos.select([0, 1]), steps=3, tcn_iterations=150, seed=0)
    return model.save(tmp_path_factory.mktemp("model") / "drawer.pt")


def _sim(env):
    return env.unwrapped.sim.unwrapped


def test_frames_are_rendered_per_state_and_closing_one_renderer_leaves_others_intact():
    env = gym.make(TASK)
    env.reset(seed=0)
    first = FrameRenderer(_sim(env), FrameSpec("corner3", 48, 48))
    image = first.render()
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and image.std() > 10
    for _ in range(20):
        env.step(np.array([0.0, 0.0, 1.0, 0.0], dtype=np.float32))  # the arm moves up
    moved = first.render()
    assert np.abs(moved.astype(int) - image.astype(int)).mean() > 0.5
    second = FrameRenderer(_sim(env), FrameSpec("corner3", 48, 48))
    assert np.array_equal(second.render(), moved)
    second.close()  # must not free GL objects of the renderer that stays
    assert np.array_equal(first.render(), moved)
    first.close()
    env.close()


def test_unknown_camera_is_named_with_the_cameras_that_exist():
    env = gym.make(TASK)
    with pytest.raises(ValueError, match="camera 'nope' does not exist.*corner3"):
        FrameRenderer(_sim(env), FrameSpec("nope"))
    env.close()


def test_segmentation_recovers_planted_steps_exactly():
    rng = np.random.default_rng(0)
    lengths = [7, 12, 5, 9]
    means = rng.normal(size=(4, 6)) * 5
    x = np.concatenate([m + 0.1 * rng.normal(size=(n, 6)) for m, n in zip(means, lengths)])
    labels = segment(x, 4)
    assert labels.tolist() == sum(([k] * n for k, n in enumerate(lengths)), [])


def test_segmentation_is_the_exact_optimum_of_within_segment_variance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(11, 2))

    def cost(labels):
        return sum(((x[labels == k] - x[labels == k].mean(0)) ** 2).sum() for k in range(3))

    best = min(cost(np.repeat([0, 1, 2], [a, b - a, 11 - b])) for a in range(2, 10) for b in range(a + 2, 10))
    assert cost(segment(x, 3)) == pytest.approx(best)


def test_demos_are_successful_scripted_episodes_and_round_trip(demos, tmp_path):
    assert demos.num_episodes == 3 and demos.frames.shape[1:] == (64, 64, 3)
    assert demos.meta["source"] == "scripted"
    for ix in demos.episodes():
        assert demos.success[ix][-1] and not demos.success[ix][0]  # each ends in success
    again = Demos.load(demos.save(tmp_path / "copy.npz"))
    assert np.array_equal(again.frames, demos.frames) and again.task == TASK


def test_progress_rises_through_demonstrations_including_a_held_out_one(model_path, demos):
    model = PerceptualModel.load(model_path)
    assert model.report["progress_rank_correlation"] > 0.6
    held_out = model.evaluate(demos.select([2]))
    assert held_out["progress_rank_correlation"] > 0.5
    assert held_out["progress_last"] > held_out["progress_first"] + 0.2


def test_perceptual_model_is_a_reward_source_and_a_shaping_potential(model_path):
    env = gym.make_vec(TASK, num_envs=2, reward=str(model_path))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros((2, 4), dtype=np.float32))
    assert set(public(info["reward_terms"])) == {"progress"}
    assert np.all((reward >= 0) & (reward <= 1)) and np.allclose(reward, info["reward_terms"]["progress"])
    env.close()
    shaped = gym.make(TASK, reward="sparse", shaping=str(model_path), gamma=0.99)
    shaped.reset(seed=0)
    _, _, _, _, info = shaped.step(np.zeros(4, dtype=np.float32))
    assert "shaping" in info["reward_terms"]
    shaped.close()


def test_bad_inputs_get_clear_errors(model_path, demos, tmp_path):
    with pytest.raises(ValueError, match="fitted on demonstrations of rewardgym/MetaWorld-DrawerClose-v0, "
                                         "not rewardgym/MetaWorld-Reach-v0"):
        gym.make("rewardgym/MetaWorld-Reach-v0", reward=str(model_path))
    with pytest.raises(DemoError, match="too few to discover"):
        PerceptualModel.fit(demos.select([0]), steps=3)
    with pytest.raises(DemoError, match="too few for 60 steps"):
        PerceptualModel.fit(demos, steps=60)
    model = PerceptualModel.load(model_path)
    with pytest.raises(ValueError, match=r"reads \(64, 64\) frames"):
        model.progress(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DemoError, match="junk.npz: not a rewardgym demonstrations file"):
        Demos.load(tmp_path / "junk.npz")
    (tmp_path / "junk.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match="junk.pt: not a rewardgym perceptual reward model"):
        gym.make(TASK, reward=str(tmp_path / "junk.pt"))
    # a model file from someone else must not run code when loaded (pickle's __reduce__)
    marker = tmp_path / "pwned"
    torch.save({"kind": "rewardgym-perceptual-model", "x": _RunsCode(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt: not a rewardgym perceptual reward model"):
        PerceptualModel.load(tmp_path / "evil.pt")
    # shaping= tells a perceptual model from a PPO checkpoint by reading the file: safely too
    with pytest.raises(ValueError, match="shaping= takes .*evil.pt"):
        gym.make(TASK, reward="sparse", shaping=str(tmp_path / "evil.pt"), gamma=0.99)
    assert not marker.exists()


class _RunsCode:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pretrained_features_load_user_weights_and_reject_another_architecture(tmp_path, demos):
    torchvision = pytest.importorskip("torchvision", reason="torchvision (the perceptual extra) is not installed")
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    from rewardgym.perceptual.features import PretrainedFeatures, embed

    features = embed(PretrainedFeatures("resnet18", weights, input_size=64), demos.frames[:4])
    assert features.shape == (4, 512)
    with pytest.raises(ValueError, match="resnet18.pth: weights do not match torchvision resnet34"):
        PretrainedFeatures("resnet34", weights)
    with pytest.raises(ValueError, match="unknown torchvision architecture 'resnet1'"):
        PretrainedFeatures("resnet1", weights)


def test_value_function_of_a_trained_run_is_a_shaping_potential(tmp_path):
    from rewardgym.runs.train import TrainSpec, train

    task = "rewardgym/MetaWorld-Reach-v0"
    run = train(TrainSpec(task=task, reward="expert", steps=1024, num_envs=2, seed=0, device="cpu",
                          hyperparams={"num_steps": 256}), runs_root=tmp_path, run_name="r")
    env = gym.make(task, reward="sparse", shaping=str(run.path), gamma=0.99)
    obs0, _ = env.reset(seed=0)
    obs1, _, _, _, info = env.step(np.zeros(4, dtype=np.float32))
    potential = env.unwrapped  # noqa: F841 - the env builds the potential; recompute it by hand below
    from rewardgym.runs.potential import ValuePotential

    value = ValuePotential(run.path, rewardgym.envs.registry.get_task(task))

    from rewardgym.envs.view import StateView

    def _state(obs):  # the potential reads only the raw batch's "obs"
        return StateView(value_view, {"obs": np.asarray(obs, dtype=np.float32)[None], "env_reward": np.zeros(1)})

    value_view = rewardgym.envs.registry.get_task(task).view
    expected = 0.99 * value(_state(obs1))[0] - value(_state(obs0))[0]
    assert info["reward_terms"]["shaping"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    env.close()
    with pytest.raises(ValueError, match="the run trained rewardgym/MetaWorld-Reach-v0, not "
                                         "rewardgym/MetaWorld-Push-v0"):
        gym.make("rewardgym/MetaWorld-Push-v0", reward="sparse", shaping=str(run.path), gamma=0.99)

    # the same run demonstrates: its policy drives `demos collect --from-run`; this barely
    # trained one does not succeed, which is reported with the count, never saved as demos
    from rewardgym.perceptual.demos import DemoError, collect
    from rewardgym.runs.directory import RunError
    from rewardgym.runs.evaluate import demonstration_policy

    with pytest.raises(DemoError, match=r"only 0 of 2 demonstration episodes succeeded"):
        collect(task, episodes=1, policy=demonstration_policy(run.path, task), max_attempts=2, after_success=0)
    with pytest.raises(RunError, match="trained task 'rewardgym/MetaWorld-Reach-v0', not 'rewardgym/MetaWorld-Push-v0'"):
        demonstration_policy(run.path, "rewardgym/MetaWorld-Push-v0")


def test_cli_collects_and_fits(tmp_path):
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    runner = CliRunner()
    demos_file = tmp_path / "d.npz"
    result = runner.invoke(app, ["demos", "collect", "MetaWorld-DrawerClose", "--episodes", "2", "--out",
                                 str(demos_file)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["demos", "fit", str(demos_file), "--steps", "2", "--iterations", "30"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.pt").is_file() and "progress" in result.output
    result = runner.invoke(app, ["demos", "fit", str(demos_file), "--holdout", "2"])
    assert result.exit_code == 2 and "--holdout 2 leaves fewer than 2" in result.output
    result = runner.invoke(app, ["demos", "collect", "Hopper-Backflip", "--episodes", "1"])
    assert result.exit_code == 2 and "ships no scripted expert" in result.output


def test_torchscript_features_fit_a_model_and_bad_files_are_named(tmp_path, demos):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2))
    path = tmp_path / "features.pt"
    torch.jit.script(net).save(str(path))
    model = PerceptualModel.fit(demos.select([0, 1]), steps=2, encoder="torchscript", weights=path, input_size=64)
    saved = model.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="TorchScript is code, so it is loaded only for a trusted model"):
        PerceptualModel.load(saved)  # a received model must not run the TorchScript it names
    assert PerceptualModel.load(saved, encoder=False).task == model.task  # its report is readable
    again = PerceptualModel.load(saved, trusted=True)
    frames = demos.frames[:5]
    assert np.allclose(again.progress(frames), model.progress(frames))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.pt: not a TorchScript module"):
        PerceptualModel.fit(demos, steps=2, encoder="torchscript", weights=tmp_path / "bad.pt")
