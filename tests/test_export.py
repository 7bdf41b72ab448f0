"""Export: ONNX and TorchScript policies match the run's torch policy, carry a complete
manifest, evaluate like the run, and are refused when tampered with."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardgym.runs.export import (ExportError, ExportedPolicy, evaluate_exported, export_run, is_exported_policy,
                                     load_run_agent)
from rewardgym.runs.directory import RunDir


@pytest.fixture(scope="module")
def hopper_run(tiny_hopper_run):
    return tiny_hopper_run


@pytest.fixture(scope="module")
def exports(tiny_hopper_exports):
    return tiny_hopper_exports


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_parity_with_the_run_policy_on_recorded_observations(hopper_run, exports, fmt):
    policy = ExportedPolicy.load(exports[fmt], trusted=True)
    with np.load(exports[fmt] / "parity.npz") as record:
        obs = record["obs"]
    assert obs.shape[0] >= 1000 and obs.dtype == np.float32
    assert np.unique(obs, axis=0).shape[0] > 900  # recorded states, not one state repeated
    _, _, agent = load_run_agent(hopper_run)  # the run's own torch policy, independently of the export
    expected = agent.predict(obs, deterministic=True)[0]
    assert np.max(np.abs(policy(obs) - expected)) <= 1e-5
    assert policy.verify() <= 1e-5
    # bounds and normalisation live inside the graph: absurd inputs still give bounded actions
    wild = np.random.default_rng(0).normal(0, 1e4, size=(64, policy.obs_dim)).astype(np.float32)
    actions = policy(wild)
    assert np.all(actions >= policy.low) and np.all(actions <= policy.high)
    assert policy(obs[0]).shape == (policy.act_dim,)


def test_onnx_graph_names_and_dynamic_batch(exports):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(exports["onnx"] / "policy.onnx"))
    assert [i.name for i in model.graph.input] == ["obs"]
    assert [o.name for o in model.graph.output] == ["actions"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rewardgym.task"] == "rewardgym/Hopper-Hop-v0"
    session = ort.InferenceSession(str(exports["onnx"] / "policy.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7, 300):
        assert session.run(None, {"obs": np.zeros((batch, 11), np.float32)})[0].shape == (batch, 3)


def test_manifest_describes_the_policy(exports):
    import hashlib

    manifest = json.loads((exports["onnx"] / "manifest.json").read_text())
    assert manifest["task"] == "rewardgym/Hopper-Hop-v0"
    assert manifest["policy"]["input"] == {"name": "obs", "shape": ["batch", 11], "dtype": "float32"}
    assert manifest["policy"]["sha256"] == hashlib.sha256((exports["onnx"] / "policy.onnx").read_bytes()).hexdigest()
    entries = manifest["observation"]["entries"]
    assert [e["name"] for e in entries[:3]] == ["rootz", "rooty", "thigh_joint"] and entries[0]["unit"] == "m"
    assert manifest["action"]["names"] == ["thigh_joint", "leg_joint", "foot_joint"]
    assert manifest["action"]["low"] == [-1.0] * 3 and manifest["action"]["high"] == [1.0] * 3
    assert manifest["control_period_s"] == pytest.approx(0.008)
    assert manifest["training"]["reward"] == "env"
    assert manifest["training"]["randomize"] == {"friction": [0.8, 1.2]}
    assert manifest["training"]["steps"] == 2048
    assert {"rewardgym", "torch", "onnxruntime", "mujoco"} <= set(manifest["versions"])
    assert manifest["parity"]["observations"] >= 1000 and manifest["parity"]["max_abs_diff"] <= 1e-5


def test_eval_of_the_export_matches_the_run(hopper_run, exports):
    from rewardgym.runs.evaluate import evaluate
    from rewardgym.runs.evaluate import evaluate_policy

    run_report = evaluate(hopper_run, episodes=3, seed=100)  # `rewardgym eval RUN`
    _, config, agent = load_run_agent(hopper_run)
    torch_report = evaluate_policy(lambda o: agent.predict(o, deterministic=True)[0], config["task"], episodes=3,
                                   seed=100)
    assert torch_report["env_return"]["mean"] == pytest.approx(run_report["env_return"]["mean"], rel=1e-9)
    for fmt, name in (("onnx", "policy.onnx"), ("torchscript", "policy.pt")):
        report = evaluate_exported(exports[fmt] / name, episodes=3, seed=100, trusted=fmt == "torchscript")
        assert report["per_episode"]["length"] == torch_report["per_episode"]["length"]
        assert report["per_episode"]["env_return"] == pytest.approx(torch_report["per_episode"]["env_return"],
                                                                     rel=1e-6)
        assert json.loads((exports[fmt] / "eval.json").read_text())["episodes"] == 3
    assert is_exported_policy(exports["onnx"]) and not is_exported_policy(hopper_run)


def test_a_received_torchscript_policy_is_not_loaded_without_trust(exports, tmp_path, monkeypatch):
    """TorchScript is a program: without --trusted it is refused before torch.jit.load sees it."""
    import torch

    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a))
    received = _copy(exports["torchscript"], tmp_path / "received")
    with pytest.raises(ExportError, match="TorchScript policy is a program.*--trusted"):
        ExportedPolicy.load(received)
    with pytest.raises(ExportError, match="--trusted"):
        evaluate_exported(received / "policy.pt", episodes=1)
    assert calls == []


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_an_onnx_policy_reading_other_files_is_refused(exports, tmp_path):
    """A received graph whose weights point at another file (ONNX "external data", e.g. a
    secret next to it) is refused before ONNX Runtime opens that file, even with a matching hash."""
    import hashlib

    import onnx

    received = _copy(exports["onnx"], tmp_path / "external")
    model = onnx.load(received / "policy.onnx")
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/hostname")
    data = model.SerializeToString()
    (received / "policy.onnx").write_bytes(data)
    manifest = json.loads((received / "manifest.json").read_text())
    manifest["policy"]["sha256"] = hashlib.sha256(data).hexdigest()
    (received / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="refers to external data"):
        ExportedPolicy.load(received)


def test_tampered_exports_are_refused_by_name(exports, tmp_path):
    bad = _copy(exports["onnx"], tmp_path / "tampered")
    data = bytearray((bad / "policy.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="policy.onnx: sha256 does not match"):
        ExportedPolicy.load(bad)

    def with_manifest(name, edit):
        path = _copy(exports["onnx"], tmp_path / name)
        manifest = json.loads((path / "manifest.json").read_text())
        edit(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
        return path

    cases = [
        ("version", lambda m: m.update(format_version=99), "format_version 99 is not supported"),
        ("low", lambda m: m["action"].update(low=[-1.0, float("nan"), -1.0]), "field 'action.low'"),
        ("high", lambda m: m["action"].update(high=[1.0, 1.0]), "field 'action.high' must be 3 numbers"),
        ("period", lambda m: m.update(control_period_s=-1), "field 'control_period_s'"),
        ("task", lambda m: m.pop("task"), "missing field 'task'"),
        ("file", lambda m: m["policy"].update(file="../../etc/passwd"), "field 'policy.file'"),
        ("size", lambda m: m["observation"].update(size=12), "'observation.size' disagrees"),
    ]
    for name, edit, message in cases:
        with pytest.raises(ExportError, match=message.replace("(", r"\(")):
            ExportedPolicy.load(with_manifest(name, edit))
    garbled = _copy(exports["onnx"], tmp_path / "garbled")
    (garbled / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="manifest.json: invalid JSON"):
        ExportedPolicy.load(garbled)
    with pytest.raises(ExportError, match="no manifest.json"):
        ExportedPolicy.load(tmp_path)


def test_only_ppo_runs_of_deployable_tasks_export(tmp_path):
    run = RunDir.create(tmp_path, {"task": "rewardgym/Hopper-Hop-v0", "reward": "env", "algo": "sb3-ppo", "seed": 0},
                        name="sb3")
    with pytest.raises(ExportError, match="algo 'sb3-ppo': export supports rewardgym's PPO runs"):
        export_run(run.path)
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_run(run.path, "tflite")


def test_cli_export_and_eval(hopper_run, tmp_path):
    from typer.testing import CliRunner

    from rewardgym.cli.main import app

    out = tmp_path / "cli-export"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(hopper_run), "--format", "torchscript", "--out", str(out)],
                           terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "parity: max |exported - torch|" in result.output and (out / "policy.pt").is_file()
    result = runner.invoke(app, ["eval", str(out / "policy.pt"), "--episodes", "2"], terminal_width=400)
    assert result.exit_code == 2 and "--trusted" in result.output, result.output  # a program: refused
    result = runner.invoke(app, ["eval", str(out / "policy.pt"), "--episodes", "2", "--trusted"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "exported torchscript" in " ".join(result.output.split()) and (out / "eval.json").is_file()
    result = runner.invoke(app, ["export", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "run directory not found" in result.output and "Traceback" not in result.output
