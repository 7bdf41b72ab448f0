"""The command line: list, describe and check behave as documented, and bad input gets a
clear one-line error (never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewardgym.cli.main import app

runner = CliRunner()


def test_list_shows_tasks_and_unavailable_reason():
    result = runner.invoke(app, ["list", "--wide"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "rewardgym/MetaWorld-PickPlace-v0" in result.output
    assert "rewardgym/ManiSkill-PickCube-v0" in result.output
    if "ManiSkill assets" in result.output:  # a task whose downloads are missing
        assert "no: " in result.output and "[ycb]" in result.output  # the reason printed literally, not eaten as markup


def test_list_fits_80_columns_one_line_per_task():
    import rewardgym

    result = subprocess.run([sys.executable, "-m", "rewardgym.cli.main", "list"], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "rewardgym/" in line]
    assert len(rows) == len(rewardgym.all_tasks())  # one line each: nothing wraps
    assert len(lines) < len(rows) + 10
    # ManiSkill runs on CPU physics everywhere; only a task whose assets need a download is unavailable
    assert "ManiSkill-PickCube" not in result.stdout.split("not available here:")[-1]


def test_no_third_party_notice_before_a_commands_output(tmp_path):
    """gymnasium-robotics prints an Adroit notice on import; a Fetch command must not show it."""
    pytest.importorskip("gymnasium_robotics")
    result = subprocess.run([sys.executable, "-m", "rewardgym.cli.main", "check",
                             "rewardgym/rewards/library/Fetch-Reach.py", "--task", "Fetch-Reach", "--steps", "5",
                             "--num-envs", "1"], capture_output=True, text=True, timeout=180,
                            cwd=str(Path(__file__).resolve().parents[1]))
    assert result.returncode == 0, result.stderr
    assert "Adroit" not in result.stderr + result.stdout and result.stderr == ""


def test_library_show_prints_the_source():
    result = runner.invoke(app, ["library", "show", "MetaWorld-Reach"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith('"""Expert reward for MetaWorld-Reach') and "def compute_reward" in result.output


def test_list_markdown_is_a_table_of_every_task():
    result = runner.invoke(app, ["list", "--markdown"])
    rows = [line for line in result.output.splitlines() if line.startswith("| `rewardgym/")]
    import rewardgym

    assert len(rows) == len(rewardgym.all_tasks())


def test_describe_prints_the_prompt_text():
    result = runner.invoke(app, ["describe", "Hopper-Backflip"])
    assert result.exit_code == 0, result.output
    for needle in ("rewardgym/Hopper-Backflip-v0", "Instruction:", "Success test:", "torso_euler",
                   "state.prev", "tolerance"):
        assert needle in result.output


def test_describe_compact_prints_what_a_small_context_is_shown():
    import rewardgym
    from rewardgym.llm_rewards.prompts import describe_task

    task = rewardgym.get_task("NetHack-Scout")
    full = runner.invoke(app, ["describe", "NetHack-Scout", "--no-prelude"]).output
    for level in (1, 5):
        result = runner.invoke(app, ["describe", "NetHack-Scout", "--compact", str(level), "--no-prelude"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == describe_task(task, level).strip() and len(result.output) < 0.6 * len(full)
        assert all(name in result.output for name in task.view.fields)
    assert runner.invoke(app, ["describe", "NetHack-Scout", "--compact", "6"]).exit_code == 2


def test_unknown_task_is_a_clear_error_with_closest_ids():
    result = runner.invoke(app, ["describe", "MetaWorld-PickPlase"])
    assert result.exit_code == 2
    assert "rewardgym/MetaWorld-PickPlace-v0" in result.output and "Traceback" not in result.output


def test_check_prints_term_statistics(tmp_path):
    program = tmp_path / "r.py"
    program.write_text("def compute_reward(state, action):\n"
                       "    speed = state.torso_lin_vel[:, 0]\n"
                       "    return speed, {'speed': speed, 'alive': speed * 0.0 + 1.0}\n")
    result = subprocess.run([sys.executable, "-m", "rewardgym.cli.main", "check", str(program),
                             "--task", "HalfCheetah-Run", "--steps", "20", "--num-envs", "2"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "speed" in result.stdout and "alive" in result.stdout
    assert "constant" in result.stdout  # the critic flags the constant term


def test_check_rejects_an_unsafe_program_with_its_line(tmp_path):
    program = tmp_path / "bad.py"
    program.write_text("import os\n\ndef compute_reward(state, action):\n    return state.torso_height\n")
    result = runner.invoke(app, ["check", str(program), "--task", "Hopper-Hop"])
    assert result.exit_code == 1
    assert f"{program}:1" in result.output and "Traceback" not in result.output


def test_library_list_prints_user_text_literally(tmp_path, monkeypatch):
    from rewardgym.llm_rewards.library import add_program

    monkeypatch.setenv("REWARDGYM_LIBRARY", str(tmp_path))
    add_program('"""[red]Reach[/red] the goal [link=x]fast[/link]."""\n\ndef compute_reward(state, action):\n'
                '    return -state.hand_to_goal\n', "MetaWorld-Reach", name="markup")
    result = runner.invoke(app, ["library", "list", "--origin", "user"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "[red]Reach[/red]" in result.output and "[link=x]fast[/link]." in result.output  # (wrapped at 80)
    bad = runner.invoke(app, ["library", "list", "--origin", "nobody"])
    assert bad.exit_code == 2 and "--origin takes expert or user" in bad.output
