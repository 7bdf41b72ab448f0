"""Training runs are artifacts: a run directory with config, metrics, checkpoints and a
plot; Ctrl-C saves a checkpoint; --resume continues from it without repeating logged
work; eval reports success and returns; bad runs and checkpoints get clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardgym.runs.evaluate import evaluate
from rewardgym.runs.directory import RunDir, RunError
from rewardgym.runs.train import TrainSpec, load_ppo_checkpoint, train

CLI = [sys.executable, "-m", "rewardgym.cli.main"]


def test_sb3_run_directory_has_config_metrics_checkpoint_and_plot(tmp_path):
    run = train(TrainSpec(task="Hopper-Hop", reward="expert", steps=1024, algo="sb3-ppo", num_envs=2,
                          hyperparams={"n_steps": 256, "batch_size": 64, "n_epochs": 1}),
                runs_root=tmp_path, run_name="r")
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoints", "learning_curve.png"} <= names
    assert (run.checkpoint_dir / "final.pt").is_file()
    rows = run.metrics()
    assert rows[-1]["global_step"] >= 1024
    assert {"fps", "wall_time", "episode_return", "env_return", "success_rate"} <= set(rows[-1])
    assert any(key.startswith("terms/") for key in rows[-1])
    report = evaluate(run.path, episodes=2)
    assert set(report) >= {"success_rate", "return", "env_return", "terms"}
    assert json.loads((run.path / "eval.json").read_text())["episodes"] == 2


def test_reward_program_is_copied_into_the_run_and_used_by_eval(tmp_path, monkeypatch):
    program = tmp_path / "upright.py"
    program.write_text("def compute_reward(state, action):\n"
                       "    return state.torso_height, {'height': state.torso_height}\n")
    run = train(TrainSpec(task="Hopper-Hop", reward=str(program), steps=256, algo="sb3-ppo", num_envs=1,
                          hyperparams={"n_steps": 128, "batch_size": 64, "n_epochs": 1}),
                runs_root=tmp_path / "runs", run_name="r")
    program.unlink()  # eval must not depend on the original file
    report = evaluate(run.path, episodes=1)
    assert set(report["terms"]) == {"height"}


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path, watch_stderr):
    runs = tmp_path / "runs"
    config = tmp_path / "small.json"  # small updates: the run is many updates long, each one quick
    config.write_text(json.dumps({"n_steps": 256, "batch_size": 128, "n_epochs": 2}))
    cmd = CLI + ["train", "Hopper-Hop", "--algo", "sb3-ppo", "--steps", "12000", "--num-envs", "2",
                 "--runs-dir", str(runs), "--name", "r", "--checkpoint-every", "1000", "--config", str(config)]
    # events, not timing: Ctrl-C once training is logging, then wait for the trainer to say it
    # heard it and for the process to end (the bounds only guard against a hang)
    with open(tmp_path / "stdout.txt", "w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
    stderr_lines = watch_stderr(proc, "stopping after this update")
    metrics = runs / "r" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and \
                (not metrics.exists() or not metrics.read_text().strip()):
            time.sleep(0.2)  # poll for the first metrics row: the trainer's Ctrl-C handler is in place
        assert proc.poll() is None and metrics.exists() and metrics.read_text().strip(), stderr_lines.text
        proc.send_signal(signal.SIGINT)  # one Ctrl-C: stop after the update in progress
        assert stderr_lines.heard.wait(600), stderr_lines.text
        proc.wait(600)
        stderr_lines.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = stderr_lines.text
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    run = RunDir.open(runs / "r")
    assert (run.checkpoint_dir / "latest.pt").is_file()
    done_before = run.metrics()[-1]["global_step"]
    assert done_before < 12000
    result = subprocess.run(CLI + ["train", "--resume", str(run.path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    steps = [r["global_step"] for r in run.metrics()]
    assert steps == sorted(set(steps)), "no update is logged twice"
    assert steps[-1] >= 12000 and (run.checkpoint_dir / "final.pt").is_file()


def test_bad_run_directory_and_foreign_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(RunError, match="no config.json"):
        RunDir.open(tmp_path)
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="not a readable rewardgym checkpoint"):
        load_ppo_checkpoint(bad, "rewardgym/Hopper-Hop-v0")
    result = subprocess.run(CLI + ["eval", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no config.json" in result.stderr and "Traceback" not in result.stderr


def test_unknown_reward_fails_before_a_run_directory_is_created(tmp_path):
    with pytest.raises(ValueError, match="unknown reward"):
        train(TrainSpec(task="Hopper-Hop", reward="dense", steps=10, algo="sb3-ppo"), runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_ppo_run_resumes_from_its_checkpoint_and_evaluates(tmp_path):
    spec = TrainSpec(task="Hopper-Hop", reward="expert", steps=1024, algo="ppo", num_envs=2,
                     hyperparams={"num_steps": 128, "num_minibatches": 2, "update_epochs": 1})
    run = train(spec, runs_root=tmp_path, run_name="r")
    assert (run.checkpoint_dir / "final.pt").is_file()
    # extend the run: resume continues from the checkpoint's global step, logging no step twice
    config = run.config()
    config["steps"] = 2048
    run.write_config({k: v for k, v in config.items() if k != "run_format"})
    from rewardgym.runs.train import resume

    resume(run.path)
    steps = [r["global_step"] for r in run.metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == 2048
    report = evaluate(run.path, episodes=2)
    assert 0.0 <= report["success_rate"] <= 1.0 and set(report["terms"]) == {"forward", "healthy", "ctrl"}


def test_checkpoint_of_another_task_is_rejected(tmp_path):
    run = train(TrainSpec(task="Hopper-Hop", steps=256, algo="ppo", num_envs=1,
                          hyperparams={"num_steps": 128, "num_minibatches": 1, "update_epochs": 1}),
                runs_root=tmp_path, run_name="r")
    with pytest.raises(RunError, match="for task 'rewardgym/Hopper-Hop-v0', not 'rewardgym/Walker2d-Walk-v0'"):
        load_ppo_checkpoint(run.checkpoint_dir / "final.pt", "rewardgym/Walker2d-Walk-v0")


def test_unknown_config_key_names_the_file_and_the_closest_key(tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text("learning_rate = 1e-3\nclip_coeff = 0.1\n")
    result = subprocess.run(CLI + ["train", "Hopper-Hop", "--steps", "100", "--config", str(config),
                                   "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "clip_coeff" in result.stderr and "clip_coef" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
