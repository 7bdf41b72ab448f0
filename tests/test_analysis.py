"""Reward analysis (``rewardgym analyze``): the distances keep the invariances EPIC and STARC
prove, match a direct tabular computation on a gridworld, flag rewards that pay for the wrong
thing, and treat programs (and their failures) as untrusted, like every other path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rewardgym
from rewardgym.analysis import Coverage, analyze, collect_coverage, reward_distance
from rewardgym.analysis.distance import pearson_distance

EXPERT_REACH = """
def compute_reward(state, action):
    reach = 1.0 - np.tanh(state.grip_to_goal / 0.1)
    bonus = np.where(state.success, 1.0, 0.0)
    return reach + bonus, {"reach": reach, "success": bonus}
"""

SCALED_AND_SHAPED = """
GAMMA = 0.99
def phi(s):
    # any state potential: here one that has nothing to do with the goal
    return np.sin(7.0 * s.grip_pos[:, 0]) + s.grip_pos[:, 2] ** 2
def compute_reward(state, action):
    reach = 1.0 - np.tanh(state.grip_to_goal / 0.1)
    bonus = np.where(state.success, 1.0, 0.0)
    return 2.5 * (reach + bonus) - 4.0 + GAMMA * phi(state) - phi(state.prev)
"""

NEGATED = """
def compute_reward(state, action):
    return -(1.0 - np.tanh(state.grip_to_goal / 0.1)) - np.where(state.success, 1.0, 0.0)
"""

GRIPPER_SPEED = """
def compute_reward(state, action):
    reach = 0.05 * (1.0 - np.tanh(state.grip_to_goal / 0.1))
    speed = np.sum(np.square(action[:, :3]), axis=-1)
    return reach + speed, {"reach": reach, "speed": speed}
"""

DIFFERENT = """
def compute_reward(state, action):
    return -np.abs(state.grip_pos[:, 2] - 0.6)
"""

# Finite on real transitions (the goal does not move within an episode), NaN on mixed
# triples whose two states come from episodes with goals far apart.
NEEDS_ONE_EPISODE = """
def compute_reward(state, action):
    jump = np.sum(np.abs(state.goal_pos - state.prev.goal_pos), axis=-1)
    return np.log(0.05 - jump)
"""


@pytest.fixture(scope="module")
def reach_coverage():
    return collect_coverage("Fetch-Reach", transitions=2048, seed=0, num_envs=8)  # holds successes


@pytest.fixture
def programs(tmp_path):
    out = {}
    for name, text in [("expert_copy", EXPERT_REACH), ("scaled", SCALED_AND_SHAPED), ("negated", NEGATED),
                       ("speed", GRIPPER_SPEED), ("different", DIFFERENT), ("episode", NEEDS_ONE_EPISODE)]:
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        out[name] = str(path)
    return out


def _by_name(report):
    return {p.name: p for p in report.programs}


def test_distances_are_invariant_to_scale_and_potential_shaping_and_maximal_for_the_negation(reach_coverage,
                                                                                                programs):
    report = analyze("Fetch-Reach", [programs["scaled"], programs["negated"], programs["different"]],
                     reference=programs["expert_copy"], coverage=reach_coverage, gamma=0.99, intervals=True)
    p = _by_name(report)
    # a*R + c + gamma*Phi(s') - Phi(s) with a > 0: the same reward up to what cannot change policies
    assert p["scaled"].epic == pytest.approx(0.0, abs=1e-6)
    assert p["scaled"].starc == pytest.approx(0.0, abs=1e-6)
    assert p["scaled"].epic_interval[1] < 1e-6  # and under every bootstrap resample too
    assert "equivalent to the" in " ".join(p["scaled"].flags)
    # -R is the farthest reward there is
    assert p["negated"].epic == pytest.approx(1.0, abs=1e-9)
    assert p["negated"].starc == pytest.approx(1.0, abs=1e-9)
    assert any("opposes" in f for f in p["negated"].flags)
    # an unrelated reward lies strictly between, every statistic in its range
    for q in report.programs:
        for value in (q.epic, q.starc, q.epic_to_sparse, q.starc_to_sparse):
            assert 0.0 <= value <= 1.0
    assert 0.05 < p["different"].epic < 0.95
    # scale/shaping leave the distance to sparse success and the alignment unchanged too
    expert = _by_name(analyze("Fetch-Reach", [programs["expert_copy"]], reference="expert",
                              coverage=reach_coverage, intervals=False))["expert_copy"]
    assert expert.epic == pytest.approx(0.0, abs=1e-6)  # the library expert is this program
    assert p["scaled"].epic_to_sparse == pytest.approx(expert.epic_to_sparse, abs=1e-9)
    assert p["scaled"].alignment == pytest.approx(expert.alignment, abs=1e-9)


def test_distance_is_symmetric(reach_coverage, programs):
    ab = reward_distance("Fetch-Reach", programs["different"], programs["speed"], coverage=reach_coverage)
    ba = reward_distance("Fetch-Reach", programs["speed"], programs["different"], coverage=reach_coverage)
    assert ab == pytest.approx(ba, abs=1e-12)
    ab = reward_distance("Fetch-Reach", programs["different"], "expert", method="starc", coverage=reach_coverage)
    ba = reward_distance("Fetch-Reach", "expert", programs["different"], method="starc", coverage=reach_coverage)
    assert ab == pytest.approx(ba, abs=1e-12)


def test_a_reward_that_pays_for_gripper_speed_is_flagged(reach_coverage, programs):
    p = _by_name(analyze("Fetch-Reach", [programs["speed"]], coverage=reach_coverage, intervals=False))["speed"]
    assert p.term_shares["speed"] > 0.9
    assert any("term 'speed'" in f and "does not ask for" in f for f in p.flags), p.flags
    assert reach_coverage.success.any() and p.top_reward_failure > 0.8
    assert p.epic > 0.6


def test_a_program_that_fails_on_mixed_triples_is_reported_by_name_not_dropped(reach_coverage, programs):
    report = analyze("Fetch-Reach", [programs["episode"], programs["different"]], coverage=reach_coverage,
                     intervals=False)
    p = _by_name(report)
    assert p["episode"].error and p["episode"].epic is None
    assert "episode.py" in p["episode"].flags[0] and "cannot be evaluated" in p["episode"].flags[0]
    assert p["different"].epic is not None  # the others are still analysed
    assert "episode" not in report.names  # the matrix holds what could be measured


def test_a_program_that_never_returns_times_out_in_its_worker(reach_coverage, tmp_path):
    path = tmp_path / "spin.py"
    path.write_text("def compute_reward(state, action):\n    while True:\n        pass\n")
    report = analyze("Fetch-Reach", [str(path)], coverage=reach_coverage, intervals=False,
                     limits={"timeout_s": 0.5})
    assert "no result" in report.programs[0].error or "time" in report.programs[0].error


# -- the gridworld: a finite task where the definitions can be computed exactly ------------
GRID = 4


def _grid_task():
    cell = lambda env: divmod(int(env.unwrapped.s), GRID)  # noqa: E731
    return rewardgym.register_task(
        "Test-Grid", env="FrozenLake-v1", env_kwargs={"is_slippery": False, "map_name": "4x4"}, replace=True,
        instruction="Reach the bottom-right cell.",
        fields=[rewardgym.TaskField("row", "(B,)", "cells", "Row of the agent (0 at the top).",
                                    lambda env: float(cell(env)[0])),
                rewardgym.TaskField("col", "(B,)", "cells", "Column of the agent (0 on the left).",
                                    lambda env: float(cell(env)[1]))],
        success=lambda s: (s.row == GRID - 1) & (s.col == GRID - 1), success_doc="at the bottom-right cell")


GRID_R1 = """
def compute_reward(state, action):
    return -np.abs(state.row - 3.0) - np.abs(state.col - 3.0) + 0.3 * (action == 2)
"""
GRID_R2 = """
def compute_reward(state, action):
    return np.where(state.success, 1.0, 0.0) + 0.5 * (state.row > state.prev.row) - 0.2 * state.prev.col
"""


def _grid_tables(gamma):
    n = GRID * GRID
    rows, cols = np.divmod(np.arange(n), GRID)
    s, a, s2 = np.meshgrid(np.arange(n), np.arange(4), np.arange(n), indexing="ij")
    r1 = -np.abs(rows[s2] - 3.0) - np.abs(cols[s2] - 3.0) + 0.3 * (a == 2)
    success = (rows[s2] == 3) & (cols[s2] == 3)
    r2 = np.where(success, 1.0, 0.0) + 0.5 * (rows[s2] > rows[s]) - 0.2 * cols[s]

    def canonical(r):  # EPIC's formula with D_S, D_A uniform, directly on the table
        m = r.mean(axis=(1, 2))
        return r + gamma * m[None, None, :] - m[:, None, None] - gamma * r.mean()

    return canonical(r1).reshape(-1), canonical(r2).reshape(-1), canonical(success.astype(float)).reshape(-1)


def _grid_coverage():
    """Every (s, a, s') of the grid, uniformly: D, D_S and D_A of the tabular definitions."""
    n = GRID * GRID
    rows, cols = np.divmod(np.arange(n), GRID)
    states = {"row": rows.astype(float), "col": cols.astype(float), "env_reward": np.zeros(n),
              "success": (rows == 3) & (cols == 3), "elapsed_steps": np.ones(n, dtype=np.int64),
              "terminated": np.zeros(n, dtype=bool)}
    s, a, s2 = (x.reshape(-1) for x in np.meshgrid(np.arange(n), np.arange(4), np.arange(n), indexing="ij"))
    cov = Coverage(states=states, prev=s, next=s2, actions=a.astype(np.int64), trajectory=np.arange(len(s)),
                   step=np.zeros(len(s), dtype=np.int64), sources=["every transition"])
    one_per_action = np.array([int(np.flatnonzero(a == k)[0]) for k in range(4)])
    return cov, (np.arange(n), one_per_action)


@pytest.mark.usefixtures("forget_declared_tasks")
def test_gridworld_distances_match_the_tabular_definitions(tmp_path):
    task = _grid_task()
    (tmp_path / "r1.py").write_text(GRID_R1)
    (tmp_path / "r2.py").write_text(GRID_R2)
    coverage, mean_set = _grid_coverage()
    gamma = 0.9
    report = analyze(task, [str(tmp_path / "r1.py")], reference=str(tmp_path / "r2.py"), coverage=coverage,
                     mean_set=mean_set, gamma=gamma, intervals=False)
    got = report.programs[0]
    c1, c2, c_sparse = _grid_tables(gamma)

    def starc(x, y):
        unit = lambda v: v / np.sqrt(np.mean(v ** 2))  # noqa: E731
        return np.sqrt(np.mean((unit(x) - unit(y)) ** 2)) / 2

    assert got.epic == pytest.approx(pearson_distance(c1, c2), abs=1e-6)
    assert got.epic == pytest.approx(np.sqrt((1 - np.corrcoef(c1, c2)[0, 1]) / 2), abs=1e-6)
    assert got.starc == pytest.approx(starc(c1, c2), abs=1e-6)
    assert got.epic_to_sparse == pytest.approx(np.sqrt((1 - np.corrcoef(c1, c_sparse)[0, 1]) / 2), abs=1e-6)
    assert got.starc_to_sparse == pytest.approx(starc(c1, c_sparse), abs=1e-6)


@pytest.mark.usefixtures("forget_declared_tasks")
def test_gridworld_coverage_from_rollouts_uses_the_declared_task():
    task = _grid_task()
    cov = collect_coverage(task, transitions=200, seed=0, num_envs=2)
    assert len(cov) == 200
    assert cov.pool_size < 2 * 200  # states shared by consecutive transitions are stored once
    # each transition's next state is the following transition's previous state within a trajectory
    same = cov.trajectory[1:] == cov.trajectory[:-1]
    order = np.lexsort((cov.step, cov.trajectory))
    t, nxt, prv = cov.trajectory[order], cov.next[order], cov.prev[order]
    within = t[1:] == t[:-1]
    assert np.array_equal(nxt[:-1][within], prv[1:][within])
    assert same.any()


# -- bad input ------------------------------------------------------------------------------
def test_bad_input_is_named(reach_coverage, programs, tmp_path):
    with pytest.raises(ValueError, match="gamma"):
        analyze("Fetch-Reach", [programs["different"]], gamma=0.0, coverage=reach_coverage)
    with pytest.raises(ValueError, match="gamma"):
        analyze("Fetch-Reach", [programs["different"]], gamma=1.5, coverage=reach_coverage)
    with pytest.raises(FileNotFoundError, match="missing.py"):
        analyze("Fetch-Reach", [str(tmp_path / "missing.py")], coverage=reach_coverage)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        analyze("Fetch-Reach", [programs["different"]], reference=str(tmp_path / "nope.py"), coverage=reach_coverage)
    with pytest.raises(ValueError, match="empty"):
        analyze("Fetch-Reach", [programs["different"]], coverage=[])
    with pytest.raises(ValueError, match="analyze takes"):
        analyze("Fetch-Reach", ["oni"], coverage=reach_coverage)
    bad = tmp_path / "bad_field.py"
    bad.write_text("def compute_reward(state, action):\n    return state.no_such_field\n")
    from rewardgym.rewards.sandbox import ProgramRejected

    with pytest.raises(ProgramRejected, match="no_such_field"):
        analyze("Fetch-Reach", [str(bad)], coverage=reach_coverage)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rewardgym.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_writes_exactly_the_documented_json_and_the_heatmap(programs, tmp_path):
    out_json, out_dir = tmp_path / "a.json", tmp_path / "figs"
    result = _cli("analyze", "Fetch-Reach", programs["scaled"], programs["speed"], "--transitions", "256",
                  "--json", str(out_json), "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    data = json.loads(out_json.read_text())
    assert set(data) == {"task", "reference", "gamma", "transitions", "programs"}
    assert data["task"] == "rewardgym/Fetch-Reach-v0" and data["reference"] == "expert" and data["transitions"] == 256
    assert [set(p) for p in data["programs"]] == [{"name", "path", "epic", "starc", "epic_to_sparse",
                                                   "starc_to_sparse", "alignment", "top_reward_failure",
                                                   "flags"}] * 2
    assert (out_dir / "distances.png").read_bytes()[:4] == b"\x89PNG"
    assert "speed" in json.loads((out_dir / "details.json").read_text())["names"]
    assert "scaled: equivalent to the expert" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["NoSuchTask-Foo", "{p}"], "unknown task"),
    (["Fetch-Reach", "{missing}"], "not found"),
    (["Fetch-Reach", "{p}", "--gamma", "0"], "--gamma"),
    (["Fetch-Reach", "{p}", "--coverage", "{missing}"], "not 'random' and not a run directory"),
    (["Fetch-Reach", "{p}", "--reference", "{missing}"], "not found"),
])
def test_cli_errors_are_one_line_and_write_nothing(programs, tmp_path, args, message):
    out_dir = tmp_path / "out"
    fill = {"p": programs["different"], "missing": str(tmp_path / "missing.py")}
    result = _cli("analyze", *[a.format(**fill) for a in args], "--transitions", "64", "--out", str(out_dir))
    assert result.returncode == 2
    assert message in result.stderr.lower() or message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_cli_coverage_from_a_trained_run(tiny_hopper_run, tmp_path):
    out_json = tmp_path / "a.json"
    result = _cli("analyze", "Hopper-Hop", "expert", "--coverage", "random", "--coverage", str(tiny_hopper_run),
                  "--transitions", "128", "--json", str(out_json))
    assert result.returncode == 0, result.stderr
    assert json.loads(out_json.read_text())["transitions"] == 256
    assert str(tiny_hopper_run) in result.stdout.replace("\n", "") or "hopper" in result.stdout
    other = _cli("analyze", "Fetch-Reach", "expert", "--coverage", str(tiny_hopper_run), "--transitions", "16")
    assert other.returncode == 2 and "trained task" in other.stderr


@pytest.mark.parametrize("task", ["Hopper-Hop", "MetaWorld-Reach", "MiniHack-Room-5x5", "ManiSkill-PushCube"])
def test_every_family_is_analysed_through_its_real_simulator(task):
    # MuJoCo locomotion, Meta-World, MiniHack (glyph maps, message strings, discrete actions), ManiSkill;
    # Fetch and a user-declared gridworld are covered above.
    coverage = collect_coverage(task, transitions=64, seed=0, num_envs=2)
    report = analyze(task, ["expert", "sparse"], reference="expert", coverage=coverage, mean_states=8, mean_actions=2,
                     intervals=False)
    expert, sparse = report.programs
    assert expert.epic == pytest.approx(0.0, abs=1e-6) and expert.error is None and sparse.error is None
    assert 0.0 <= sparse.epic <= 1.0 and report.transitions == 64


@pytest.mark.usefixtures("forget_declared_tasks")
def test_a_per_step_constant_matters_only_where_episodes_terminate(tmp_path):
    """A survival bonus teaches an agent to avoid the goal that ends its episode: where states are
    terminal (absorbing, paying nothing after), R + c is a different reward; without termination
    it is the same (EPIC's invariance to constants)."""
    task = _grid_task()
    (tmp_path / "r1.py").write_text(GRID_R1)
    (tmp_path / "r1c.py").write_text(GRID_R1.replace("+ 0.3 * (action == 2)", "+ 0.3 * (action == 2) + 0.5"))
    (tmp_path / "r1x2.py").write_text(GRID_R1.replace("return ", "return 2.0 * (") + ")")
    coverage, mean_set = _grid_coverage()
    programs = [str(tmp_path / "r1c.py"), str(tmp_path / "r1x2.py")]
    same = _by_name(analyze(task, programs, reference=str(tmp_path / "r1.py"), coverage=coverage,
                            mean_set=mean_set, gamma=0.9, intervals=False))
    assert same["r1c"].epic == pytest.approx(0.0, abs=1e-6) and same["r1x2"].epic == pytest.approx(0.0, abs=1e-6)
    coverage.states["terminated"] = coverage.states["success"].copy()  # the goal cell ends the episode
    episodic = _by_name(analyze(task, programs, reference=str(tmp_path / "r1.py"), coverage=coverage,
                                mean_set=mean_set, gamma=0.9, intervals=False))
    assert episodic["r1c"].epic > 0.02  # the constant now changes which policies are best (1 state in 16 is terminal)
    assert episodic["r1x2"].epic == pytest.approx(0.0, abs=1e-6)  # positive scale still does not


def test_a_bad_program_is_refused_before_any_rollout(programs, tmp_path, monkeypatch):
    import rewardgym.analysis.coverage as coverage_module

    calls = []
    monkeypatch.setattr(coverage_module, "collect_coverage", lambda *a, **k: calls.append(a))
    with pytest.raises(FileNotFoundError, match="missing.py"):
        analyze("Fetch-Reach", [programs["different"], str(tmp_path / "missing.py")],
                coverage=[lambda: coverage_module.collect_coverage("Fetch-Reach", 16)])
    assert calls == []  # validation came first: no simulator stepped for a typo
