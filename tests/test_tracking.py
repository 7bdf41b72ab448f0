"""Experiment tracking works from the default install: TensorBoard and Weights & Biases
(offline unless configured) receive the same scalars as metrics.jsonl, read back here."""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path

import pytest

from rewardgym.runs.train import TrainSpec, train

HYPER = {"num_steps": 64, "num_minibatches": 1, "update_epochs": 1}


def _tiny_run(tmp_path: Path, track: str):
    return train(TrainSpec(task="Hopper-Hop", steps=128, algo="ppo", num_envs=1, seed=0, device="cpu",
                           hyperparams=HYPER, track=track), runs_root=tmp_path, run_name=track)


def _wandb_history(path: str) -> list[dict]:
    """History rows of a W&B ``.wandb`` file: a LevelDB-style log of protobuf ``Record``s
    (7-byte header; 32 KiB blocks of crc32, length, type FULL/FIRST/MIDDLE/LAST, payload)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block = Path(path).read_bytes(), 7, 32768
    assert data[:4] == b":W&B"
    payloads, pending = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind in (2, 3):
            pending = (pending if kind == 3 else b"") + chunk
        elif kind == 4:
            payloads.append(pending + chunk)
    rows = []
    for payload in payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_tensorboard_receives_the_metrics_rows(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _tiny_run(tmp_path, "tensorboard")
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    rows = run.metrics()
    logged = events.Scalars("fps")
    assert [e.step for e in logged] == [r["global_step"] for r in rows]
    assert logged[-1].value == pytest.approx(rows[-1]["fps"], rel=1e-6)


def test_wandb_logs_offline_without_an_account(tmp_path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login: offline
    run = _tiny_run(tmp_path, "wandb")
    files = glob.glob(str(run.path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    history = _wandb_history(files[0])
    rows = run.metrics()
    assert [h["_step"] for h in history] == [r["global_step"] for r in rows]
    assert history[-1]["fps"] == pytest.approx(rows[-1]["fps"], rel=1e-6)
