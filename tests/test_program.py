"""Reward programs fail loudly: NaN/inf, wrong shapes and exceptions name the file, the
line and the term; compositions add up their parts."""

from __future__ import annotations

import numpy as np
import pytest

from rewardgym.envs.view import StateView, stack_raw
from rewardgym.rewards.program import RewardProgram, RewardProgramError
from rewardgym.rewards.resolve import resolve_reward
from rewardgym.rewards.source import WeightedSum


def _state(task, xs=(0.1, -0.2, 0.3)):
    rows = [{"x": x, "x_dot": 0.0, "theta": 0.01 * i, "theta_dot": 0.0, "env_reward": 1.0,
             "elapsed_steps": 1, "terminated": False, "success": False} for i, x in enumerate(xs)]
    batch = stack_raw(rows)
    return StateView(task.view, batch, stack_raw(rows))


def test_nan_term_names_file_line_and_term(cartpole_task, write_program):
    path = write_program(
        "def compute_reward(state, action):\n"
        "    ok = state.x * 0.0\n"
        "    bad = np.log(state.x)\n"
        "    return ok + 1.0, {\"ok\": ok,\n"
        "                      \"bad\": bad}\n")
    program = RewardProgram.from_file(path, view=cartpole_task.view)
    with pytest.raises(RewardProgramError) as excinfo:
        program.compute_reward(_state(cartpole_task), np.zeros((3, 1)))
    err = excinfo.value
    assert err.term == "bad" and err.line == 5 and err.filename == str(path)
    assert f"{path}:5" in str(err) and "not finite" in str(err) and "'bad'" in str(err)


def test_wrong_shape_is_an_error_and_scalars_broadcast(cartpole_task, write_program):
    path = write_program("def compute_reward(state, action):\n"
                         "    return np.stack([state.x, state.x], axis=-1)\n")
    with pytest.raises(RewardProgramError, match=r"shape \(3, 2\), expected \(3,\)"):
        RewardProgram.from_file(path, view=cartpole_task.view).compute_reward(_state(cartpole_task), None)
    path = write_program("def compute_reward(state, action):\n    return 1.0, {'alive': 1.0}\n", "b.py")
    reward, terms = RewardProgram.from_file(path, view=cartpole_task.view).compute_reward(_state(cartpole_task), None)
    assert reward.shape == (3,) and terms["alive"].shape == (3,)


def test_exception_inside_program_reports_its_line_and_code(cartpole_task, write_program):
    path = write_program("def compute_reward(state, action):\n"
                         "    y = state.x\n"
                         "    z = y[10]\n"
                         "    return z\n")
    with pytest.raises(RewardProgramError) as excinfo:
        RewardProgram.from_file(path, view=cartpole_task.view).compute_reward(_state(cartpole_task), None)
    assert excinfo.value.line == 3
    assert "IndexError" in str(excinfo.value) and "z = y[10]" in str(excinfo.value)


def test_unknown_field_at_run_time_lists_the_view_fields(cartpole_task, write_program):
    # trusted skips the static check, so the run-time error path is exercised
    path = write_program("def compute_reward(state, action):\n    return state.cart_pos\n")
    program = RewardProgram.from_file(path, view=cartpole_task.view, trusted=True)
    with pytest.raises(RewardProgramError) as excinfo:
        program.compute_reward(_state(cartpole_task), None)
    message = str(excinfo.value)
    assert "cart_pos" in message and "theta_dot" in message and f"{path}:2" in message


def test_missing_compute_reward_and_bad_return_are_reported(cartpole_task, write_program):
    with pytest.raises(Exception, match="compute_reward"):
        RewardProgram.from_file(write_program("def reward(state, action):\n    return 0.0\n"),
                                view=cartpole_task.view)
    path = write_program("def compute_reward(state, action):\n    return 1.0, 2.0, 3.0\n", "c.py")
    with pytest.raises(RewardProgramError, match="reward or \\(reward, terms_dict\\)"):
        RewardProgram.from_file(path, view=cartpole_task.view).compute_reward(_state(cartpole_task), None)


def test_weighted_sum_string_adds_weighted_parts(cartpole_task, write_program):
    path = write_program("def compute_reward(state, action):\n    return state.x, {'x': state.x}\n")
    source = resolve_reward(f"sparse + 0.5*{path} - 2*env", cartpole_task)
    assert isinstance(source, WeightedSum)
    state = _state(cartpole_task)
    reward, terms = source.compute(state, None)
    expected = 0.0 + 0.5 * state.x - 2.0 * 1.0
    assert np.allclose(reward, expected)
    assert set(terms) == {"sparse/success", "reward/x", "env"}
    assert np.allclose(sum(terms.values()), reward)


def test_unknown_reward_name_lists_accepted_forms(cartpole_task):
    with pytest.raises(ValueError, match="'env', 'sparse', 'expert'"):
        resolve_reward("dense", cartpole_task)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        resolve_reward("nope.py", cartpole_task)


def test_the_worker_gets_the_raw_keys_its_fields_read_and_more_on_demand():
    """Only the raw keys the program's fields read travel to the worker; a field that reads
    another key on a later batch (a branch on the data) gets it: same values, no error."""
    from rewardgym.envs.view import Field, ViewSpec

    def far(batch):  # reads "b" only when some "a" is positive
        a = batch["a"]
        return a + batch["b"] if (a > 0).any() else a * 1.0

    view = ViewSpec.build("probe", "test view", [
        Field("far", "(B,)", "-", "a, plus b where a is positive.", far),
        Field("other", "(B,)", "-", "unused by the program.", lambda batch: batch["c"] * 1.0)])
    program = RewardProgram("def compute_reward(state, action):\n"
                            "    return state.far - state.prev.far, {\"far\": state.far}\n",
                            "probe.py", view=view)

    def state(a):
        batch = {"a": np.array(a, dtype=float), "b": np.full(2, 10.0), "c": np.zeros(2),
                 "env_reward": np.zeros(2), "elapsed_steps": np.ones(2, dtype=np.int64),
                 "terminated": np.zeros(2, dtype=bool), "success": np.zeros(2, dtype=bool)}
        return StateView(view, batch, batch)

    try:
        reward, terms = program.compute_reward(state([-1.0, -2.0]), np.zeros((2, 1)))
        np.testing.assert_array_equal(terms["far"], [-1.0, -2.0])
        assert program._needed_keys(view, dict(state([-1.0, -2.0])._raw)) == {"a", "env_reward"}
        reward, terms = program.compute_reward(state([1.0, -2.0]), np.zeros((2, 1)))
        np.testing.assert_array_equal(terms["far"], [11.0, 8.0])
        np.testing.assert_array_equal(reward, [0.0, 0.0])
        reward, terms = program.compute_reward(state([3.0, -2.0]), np.zeros((2, 1)))
        np.testing.assert_array_equal(terms["far"], [13.0, 8.0])
    finally:
        program.close()


def test_one_reward_specification_parses_expressions_once_and_round_trips():
    """RewardSpec is the one parser of reward expressions: terms, kinds, files, repeats merged,
    and file names replaced (a run's own copies) without changing the expression's meaning."""
    from rewardgym.rewards.source import format_expression, parse_expression
    from rewardgym.rewards.spec import RewardSpec

    spec = RewardSpec.of("sparse + 0.1*r.py - 2*env + 0.1*./r.py", shaping="phi.py", gamma=0.99)
    assert spec.terms() == [(1.0, "sparse"), (0.2, "r.py"), (-2.0, "env")]
    assert spec.uses("sparse") and not spec.uses("oni") and spec.plus("oni").uses("oni")
    assert spec.files() == ["r.py", "phi.py"]
    moved = spec.with_files({"r.py": "/run/r.py", "phi.py": "/run/phi.py"})
    assert moved.terms() == [(1.0, "sparse"), (0.2, "/run/r.py"), (-2.0, "env")] and moved.shaping == "/run/phi.py"
    for text in ("expert", "-1*env + sparse", "-0.5*oni", "sparse + 0.01*e.py"):
        assert parse_expression(format_expression(parse_expression(text))) == parse_expression(text)
    assert RewardSpec.of(spec) is spec
