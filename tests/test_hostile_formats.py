"""Received files whose formats compute or decompress (issue 21, class 4): each is refused from
what it declares, before the computation or the decompression happens.

* an ONNX policy with a ``Loop`` of 2^62 iterations (or any operator outside the allow-list,
  or a broadcast that computes a huge value) never reaches an ONNX Runtime session;
* a demonstrations ``.npz`` that inflates to GBs is refused from its zip directory and its
  ``.npy`` headers, without inflating anything;
* an ONI label store with a trigger (or a view) is refused before any statement that would
  run it, and no single statement may run unbounded;
* a hyper-parameter file asking for a 17 GB network is a one-line error naming the file and
  the key, before anything is allocated.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sqlite3
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from rewardgym.runs.export import ExportError, ExportedPolicy, validate_onnx_policy

OBS, ACT = 11, 3


# ------------------------------------------------------------------------------------------------
# ONNX policies
# ------------------------------------------------------------------------------------------------
def _graph_model(nodes, initializers, extra_inputs=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "policy",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", OBS]), *extra_inputs],
                              [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", ACT])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]).SerializeToString()


def _weights():
    from onnx import numpy_helper

    return [numpy_helper.from_array(np.ones((ACT, OBS), np.float32), "w")]


def _hostile_onnx(kind: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    gemm = helper.make_node("Gemm", ["x", "w"], ["actions"], name="head", transB=1)
    if kind in ("loop", "nested_loop"):  # 2^62 iterations of an identity: a hang, at load, for the probe
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
             helper.make_node("Identity", ["v_in"], ["v_out"])],
            "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                     helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["batch", OBS])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["batch", OBS])])
        trip = [numpy_helper.from_array(np.array(2**62, np.int64), "trip"),
                numpy_helper.from_array(np.array(True), "keep_going")]
        loop = helper.make_node("Loop", ["trip", "keep_going", "obs"], ["x"], name="spin", body=body)
        if kind == "loop":
            return _graph_model([loop, gemm], _weights() + trip)
        # the Loop hidden in a subgraph attribute of an allowed operator
        outer = helper.make_graph([loop], "hidden", [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                  initializer=trip)
        carrier = helper.make_node("Identity", ["obs"], ["x"], name="carrier", smuggled=outer)
        return _graph_model([carrier, gemm], _weights())
    if kind == "expand":  # a size computed from data
        shape = numpy_helper.from_array(np.array([2**31, OBS], np.int64), "shape")
        expand = helper.make_node("Expand", ["obs", "shape"], ["x"], name="grow")
        return _graph_model([expand, gemm], _weights() + [shape])
    if kind == "broadcast":  # allowed operators, 64 KiB of weights, a (8192, 8192) value
        column = numpy_helper.from_array(np.ones((8192, 1), np.float32), "column")
        row = numpy_helper.from_array(np.ones((1, 8192), np.float32), "row")
        blow_up = helper.make_node("Add", ["column", "row"], ["square"], name="outer_sum")
        return _graph_model([blow_up, helper.make_node("Identity", ["obs"], ["x"]), gemm],
                            _weights() + [column, row])
    raise AssertionError(kind)


def _export_dir(path, data: bytes):
    """An export directory as `rewardgym export` writes it, around the policy bytes ``data``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "policy.onnx").write_bytes(data)
    manifest = {"format": "rewardgym-policy", "format_version": 1, "task": "rewardgym/Hopper-Hop-v0",
                "policy": {"file": "policy.onnx", "format": "onnx", "sha256": hashlib.sha256(data).hexdigest(),
                           "input": {"name": "obs", "shape": ["batch", OBS], "dtype": "float32"},
                           "output": {"name": "actions", "shape": ["batch", ACT], "dtype": "float32"}},
                "observation": {"size": OBS, "digest": "x"},
                "action": {"low": [-1.0] * ACT, "high": [1.0] * ACT}, "control_period_s": 0.008}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def sessions(monkeypatch):
    """Every ONNX Runtime session created: the real one only while ``allow`` is set, else an error."""
    import onnxruntime

    real = onnxruntime.InferenceSession
    made = {"count": 0, "allow": False}

    def guarded(*args, **kwargs):
        made["count"] += 1
        if not made["allow"]:
            raise AssertionError("an ONNX Runtime session was created for a hostile graph")
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", guarded)
    return made


def test_hostile_onnx_policy_is_refused_before_any_session(tmp_path, sessions):
    for kind, node, op in (("loop", "spin", "Loop"), ("nested_loop", "spin", "Loop"), ("expand", "grow", "Expand"),
                           ("broadcast", "outer_sum", "Add")):
        export = _export_dir(tmp_path / kind, _hostile_onnx(kind))
        with pytest.raises(ExportError) as err:
            ExportedPolicy.load(export)
        message = str(err.value)
        assert "\n" not in message and str(export / "policy.onnx") in message
        assert f"node {node!r}" in message and (repr(op) in message or f"({op})" in message), message
        assert sessions["count"] == 0  # refused by the validator: the graph never reached a runtime

    # rewardgym's own exports pass: every activation, with and without normaliser, bounded actions
    import torch

    from rewardgym.runs.export import DeployablePolicy, _to_onnx
    from rewardgym.learners.policies import ACTIVATIONS, mlp

    for activation in ACTIVATIONS:
        for normalise in (True, False):
            policy = DeployablePolicy(mlp([OBS, 16, 16, ACT], activation, out_std=0.01),
                                      torch.zeros(OBS) if normalise else None,
                                      torch.ones(OBS) if normalise else None, 10.0 if normalise else math.inf,
                                      -torch.ones(ACT), torch.ones(ACT)).eval()
            validate_onnx_policy(_to_onnx(policy, OBS, {}), "own.onnx", OBS)
    sessions["allow"] = True
    good = ExportedPolicy.load(_export_dir(tmp_path / "good", _to_onnx(policy, OBS, {})))
    assert sessions["count"] == 1 and good(np.zeros(OBS, np.float32)).shape == (ACT,)


# ------------------------------------------------------------------------------------------------
# Demonstrations (.npz)
# ------------------------------------------------------------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _deflated(data: bytes) -> tuple[bytes, int, int]:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush(), zlib.crc32(data), len(data)


def _zeros_bomb(header: bytes, zero_mib: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``header`` + ``zero_mib`` MiB of zeros, ~1 KB per MiB: the
    full-flushed block of one MiB of zeros is the same bytes every time, so it is repeated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(2**20)
    head = packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH) == block
    stream = head + block * zero_mib + packer.flush()
    crc, big = zlib.crc32(header), bytes(64 * 2**20)
    for _ in range(zero_mib // 64):
        crc = zlib.crc32(big, crc)
    for _ in range(zero_mib % 64):
        crc = zlib.crc32(chunk, crc)
    return stream, crc, len(header) + zero_mib * 2**20


def _write_zip(path, members: dict[str, tuple[bytes, int, int]]) -> None:
    """A zip of deflated members, written field by field (zipfile cannot store a stream made
    elsewhere); sizes under 4 GiB, so no ZIP64 records."""
    out, directory = io.BytesIO(), io.BytesIO()
    for name, (stream, crc, size) in members.items():
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(stream), size, len(raw), 0))
        out.write(raw + stream)
        directory.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 33, crc, len(stream), size,
                                    len(raw), 0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    out.write(directory.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory.getvalue()),
                          start, 0))
    path.write_bytes(out.getvalue())


def _small_members(n: int = 4) -> dict[str, tuple[bytes, int, int]]:
    meta = json.dumps({"format": 1, "task": "rewardgym/MetaWorld-DrawerClose-v0",
                       "frame_spec": {"camera": None, "height": 64, "width": 64, "flip": False}})
    arrays = {"obs": np.zeros((n, 39), np.float32), "actions": np.zeros((n, 4), np.float32),
              "episode": np.zeros(n, np.int32), "success": np.zeros(n, bool), "meta": np.array(meta)}
    return {f"{k}.npy": _deflated(_npy(v)) for k, v in arrays.items()}


def _frames_header(count: int) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (count, 64, 64, 3)})
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["bomb", "lying_header", "foreign_member"])
def test_demonstrations_bomb_is_refused_before_any_member_is_inflated(tmp_path, kind):
    from rewardgym.perceptual.demos import MAX_DEMOS_BYTES, DemoError, Demos

    path = tmp_path / f"{kind}.npz"
    if kind == "bomb":  # ~3 MB on disk, 3 GiB of frames once inflated
        frames = _zeros_bomb(_frames_header(262_144), 3 * 1024)
        assert frames[2] > MAX_DEMOS_BYTES and len(frames[0]) < 4 * 2**20
        expect = "declares 3,221,225,"
    elif kind == "lying_header":  # a small member whose .npy header declares 12 GB of frames
        frames = _deflated(_frames_header(1_000_000) + bytes(64 * 64 * 3))
        expect = "its header declares (1000000, 64, 64, 3)"
    else:
        frames = _deflated(_npy(np.zeros((4, 64, 64, 3), np.uint8)))
        expect = "not a member of a rewardgym demonstrations file"
    members = {"frames.npy": frames, **_small_members()}
    if kind == "foreign_member":  # six members, one of them not a demonstrations array
        members["payload.npy"] = members.pop("success.npy")
    _write_zip(path, members)
    if kind != "bomb":  # well-formed archives (testing the bomb would inflate it)
        assert zipfile.ZipFile(path).testzip() is None

    tracemalloc.start()
    try:
        with pytest.raises(DemoError) as err:
            Demos.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and str(path) in message and expect in message
    assert ("'payload.npy'" if kind == "foreign_member" else "'frames.npy'") in message
    assert peak < 8 * 2**20  # nothing was inflated: the archive's declarations were enough

    # a real demonstrations file still round-trips
    from rewardgym.envs.frames import FrameSpec

    demos = Demos("rewardgym/MetaWorld-DrawerClose-v0", FrameSpec(), np.zeros((4, 8, 8, 3), np.uint8),
                  np.zeros((4, 39), np.float32), np.zeros((4, 4), np.float32), np.array([0, 0, 1, 1], np.int32),
                  np.array([0, 1, 0, 1], bool))
    again = Demos.load(demos.save(tmp_path / "good.npz"))
    assert again.num_episodes == 2 and again.frames.shape == (4, 8, 8, 3)


# ------------------------------------------------------------------------------------------------
# ONI label stores (SQLite)
# ------------------------------------------------------------------------------------------------
_SPIN = ("INSERT INTO marker WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
         "WHERE x < 4611686018427387904) SELECT max(x) FROM c")  # 2^62 rows: runs for ever


@pytest.mark.parametrize("kind", ["trigger_on_open", "trigger_on_write", "view"])
def test_label_store_with_its_own_sql_is_refused_and_never_runs_it(tmp_path, kind):
    from rewardgym.intrinsic.store import Label, LabelStore, StoreError

    path = tmp_path / "oni_labels.sqlite"
    store = LabelStore(path, {"prompt": "A"})
    store.put_labels([Label("You kill the newt!", 1.0)])
    store.close()
    with sqlite3.connect(path) as conn:  # the hostile edit: a marker table and SQL that writes to it, then spins
        conn.execute("CREATE TABLE marker (x)")
        if kind == "view":
            conn.execute(f"CREATE VIEW labels_by_time AS SELECT * FROM labels, ({_SPIN.split(' ', 3)[3]})")
        else:
            table = "fingerprints" if kind == "trigger_on_open" else "labels"
            conn.execute(f"CREATE TRIGGER evil AFTER INSERT ON {table} BEGIN INSERT INTO marker VALUES ('fired'); "
                         f"{_SPIN}; END")
    with pytest.raises(StoreError) as err:
        LabelStore(path, {"prompt": "B"})  # a new fingerprint: opening inserts into fingerprints
    message = str(err.value)
    assert "\n" not in message and str(path) in message and ("trigger 'evil'" in message or "view" in message)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM marker").fetchone()[0] == 0  # the trigger never fired
    assert path.is_file() and not list(tmp_path.glob("*.bak"))  # refused, not silently replaced


def test_no_single_store_statement_runs_unbounded(tmp_path, monkeypatch):
    from rewardgym.intrinsic import store as store_module

    path = tmp_path / "oni_labels.sqlite"
    store = store_module.LabelStore(path, {"prompt": "A"})
    store.put_labels([store_module.Label(f"message {i}", 1.0) for i in range(5_000)])
    assert len(store.labels()) == 5_000
    monkeypatch.setattr(store_module, "MAX_STATEMENT_VM_STEPS", 20_000)  # a budget this read exceeds
    with pytest.raises(store_module.StoreError, match="ran past 20,000 SQLite steps") as err:
        store.labels()
    assert str(path) in str(err.value)
    monkeypatch.undo()
    assert store.get("message 7").value == 1.0  # the connection is still usable
    store.close()


# ------------------------------------------------------------------------------------------------
# Hyper-parameters
# ------------------------------------------------------------------------------------------------
def test_oversize_hyperparameters_are_a_one_line_error_before_any_allocation(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rewardgym.runs import train as training
    from rewardgym.learners.ppo import ConfigError, PPOConfig
    from rewardgym.runs.directory import RunDir
    from rewardgym.cli.main import app

    # 65,536 x 65,536 float32 weights: 17 GB; each width is within its field's range
    hyper = tmp_path / "hyper.json"
    hyper.write_text('{\n  "num_steps": 128,\n  "hidden_sizes": [65536, 65536]\n}\n')
    result = CliRunner().invoke(app, ["train", "Hopper-Hop", "--config", str(hyper), "--runs-dir",
                                      str(tmp_path / "runs")])
    flat = result.output.replace("\n", "")
    assert result.exit_code == 2 and "internal error" not in result.output and "Traceback" not in result.output
    assert f"{hyper}:3" in flat and "hidden_sizes" in flat and "parameters" in flat
    assert not (tmp_path / "runs").exists()

    def no_envs(*args, **kwargs):
        raise AssertionError("envs were built for an oversize config")

    monkeypatch.setattr(training, "_make_env", no_envs)
    # activations of one 320,000-transition minibatch through (2048, 2048): ~40 GB; a rollout of
    # 32,000,000 Hopper transitions: ~6 GB (refused once the task's observation size is known)
    for num_envs, hyperparams, key in ((4, {"hidden_sizes": [65536, 65536]}, "hidden_sizes"),
                                       (8, {"num_steps": 40_000, "num_minibatches": 1, "hidden_sizes": [2048, 2048]},
                                        "num_minibatches"),
                                       (64, {"num_steps": 500_000, "num_minibatches": 64}, "num_steps")):
        with pytest.raises(ConfigError) as err:
            training.train(training.TrainSpec(task="Hopper-Hop", hyperparams=hyperparams, num_envs=num_envs),
                           runs_root=tmp_path / "runs")
        assert "\n" not in str(err.value) and key in str(err.value), str(err.value)
    assert not (tmp_path / "runs").exists()

    # a received run: config.json asks for the 17 GB network; resume refuses it before any env or network
    run = RunDir.create(tmp_path / "received", {"task": "rewardgym/Hopper-Hop-v0", "reward": "env", "steps": 4096,
                                                 "algo": "ppo", "num_envs": 4, "seed": 0, "device": "cpu",
                                                 "hyperparams": {"hidden_sizes": [65536, 65536]}})
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    run.latest_checkpoint.write_bytes(b"never read")
    with pytest.raises(ConfigError) as err:
        training.resume(run.path)
    assert "\n" not in str(err.value) and str(run.config_path) in str(err.value) and "hidden_sizes" in str(err.value)
    with pytest.raises(ValueError, match="num_envs=100000 is not valid"):
        training.TrainSpec.from_config({"task": "Hopper-Hop", "num_envs": 100_000}, source="config.json")
    # the defaults, and a large GPU-style config, are far inside the bounds
    import gymnasium as gym

    space = gym.spaces.Box(-1.0, 1.0, (348,))
    PPOConfig.for_space(space, {})
    PPOConfig.for_space(space, {"num_envs": 4096, "num_steps": 24, "num_minibatches": 4,
                                "hidden_sizes": [512, 256, 128]})
