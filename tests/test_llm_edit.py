"""Edit mode's pieces: parameterizing a working program, the JSON schema, parsing and
applying an edit; the edited program passes the sandbox and the critic."""

from __future__ import annotations

import json

import pytest

from rewardgym.envs.registry import get_task
from rewardgym.llm_rewards.critic import critique
from rewardgym.llm_rewards.edit import EditError, apply_edit, edit_schema, parameterize, parse_edit
from rewardgym.llm_rewards.library import get_program

PUSH = get_task("MetaWorld-Push")


def _base():
    return parameterize(PUSH.expert_path.read_text(), "MetaWorld-Push")


def test_parameterize_names_the_numbers_of_compute_reward():
    base = _base()
    assert base.values["W_REACH"] == 2.0 and base.values["W_PUSH"] == 6.0 and base.values["BONUS"] == 10.0
    assert base.terms == ("reach", "push", "success")
    assert "reach = W_REACH * tolerance(state.hand_to_obj, -np.inf, UPPER," in base.source
    assert "W_REACH = 2.0" in base.source and len(base.values) == 8
    guarded = parameterize("def compute_reward(state, action):\n"
                           "    return 3.0 * state.hand_to_obj / np.maximum(state.obj_to_goal, 1e-6)\n", "guard")
    assert list(guarded.values.values()) == [3.0]  # the guard stays literal
    assert "np.maximum(state.obj_to_goal, 1e-6)" in guarded.source
    assert parameterize(base.original, "again").values == base.values


def test_schema_lists_the_bases_own_names_and_rejects_others():
    base = _base()
    schema = edit_schema(base)
    assert schema["properties"]["set"]["required"] == list(base.values)
    assert schema["properties"]["remove_terms"]["items"]["enum"] == list(base.terms)
    with pytest.raises(EditError, match="set.*'NOPE' was unexpected"):
        parse_edit(json.dumps({"idea": "", "set": {"NOPE": 1}, "remove_terms": [], "add_terms": []}), base)
    with pytest.raises(EditError, match="remove_terms/0"):
        parse_edit('{"set": {}, "remove_terms": ["speed"]}', base)
    with pytest.raises(EditError, match="no JSON object"):
        parse_edit("I would weight reaching more.", base)
    with pytest.raises(EditError, match="not one Python expression"):
        parse_edit('{"set": {}, "add_terms": [{"name": "x", "weight": 1, "expression": "a = 1"}]}', base)


def test_raw_newlines_inside_strings_are_read_and_other_breakage_is_named():
    """Weak models (and llama.cpp's JSON mode) put a raw newline inside a JSON string: the meaning
    is unambiguous, so the edit is read; a broken object is rejected with what is wrong and where."""
    base = _base()
    reply = '{"idea": "push harder\nand reach less", "set": {"W_PUSH": 9.5}, "add_terms": [{"name": "effort", ' \
            '"weight": 0.01, "expression": "-sum_sq(\naction)"}]}'
    edit = parse_edit(reply, base)
    assert edit.set == {"W_PUSH": 9.5} and edit.idea.startswith("push harder\nand")
    assert edit.add_terms == (("effort", 0.01, "-sum_sq(\naction)"),)
    with pytest.raises(EditError, match=r"no JSON object \(Expecting ',' delimiter at line 1 column \d+"):
        parse_edit('{"set": {"W_PUSH": 9.5} "remove_terms": []}', base)


def test_a_lenient_reply_keeps_unmentioned_values(tmp_path):
    reply = 'Sure! ```json\n{"idea": "more push", "set": {"W_PUSH": 9.5}}\n```'
    edit = parse_edit(reply, _base())
    assert edit.set == {"W_PUSH": 9.5} and edit.remove_terms == () and edit.add_terms == ()


def test_applied_edits_are_valid_programs(tmp_path):
    base = _base()
    edit = parse_edit(json.dumps({"idea": "less bonus, an effort term", "set": {**base.values, "BONUS": 5.0},
                                  "remove_terms": ["success"],
                                  "add_terms": [{"name": "effort", "weight": 0.01,
                                                 "expression": "-sum_sq(action)"}]}), base)
    program = apply_edit(base, edit)
    assert program.startswith('"""Edit of MetaWorld-Push: set BONUS=5; removed success; added effort')
    assert "BONUS = 5.0" in program and "def base_reward(state, action):" in program
    result = critique(program, PUSH.id, tmp_path, steps=10, num_envs=2, timeout_s=60)
    assert result.ok, result.reason
    assert {t.name for t in result.report.terms} == {"reward", "reach", "push", "effort"}
    assert "success" not in {t.name for t in result.report.terms}
    only_values = apply_edit(base, parse_edit('{"set": {"W_REACH": 3}}', base))
    assert "def base_reward" not in only_values and "W_REACH = 3.0" in only_values


def test_an_edit_of_an_edit_keeps_every_level_and_its_constants(tmp_path):
    base = _base()
    first = apply_edit(base, parse_edit('{"set": {"W_PUSH": 7}, "remove_terms": ["success"]}', base))
    again = parameterize(first, "r0c0")
    assert again.values["W_PUSH"] == 7.0 and again.values["W_REACH"] == 2.0  # its named constants stay editable
    assert again.terms == ("reach", "push") and again.returns_terms  # the edit's own terms, removable again
    second = apply_edit(again, parse_edit('{"set": {"W_REACH": 1.5}, "add_terms": [{"name": "still", '
                                          '"weight": 0.1, "expression": "-norm(action)"}]}', again))
    assert "def base_reward(" in second and "def base_reward_2(" in second  # no name clash, no recursion
    result = critique(second, PUSH.id, tmp_path, steps=10, num_envs=2, timeout_s=60)
    assert result.ok, result.reason
    with pytest.raises(EditError, match="changes nothing"):
        parse_edit('{"set": {"W_PUSH": 7}}', again)


def test_a_program_returning_a_bare_reward_gets_a_base_term(tmp_path):
    bare = parameterize("def compute_reward(state, action):\n    return -2.0 * state.hand_to_goal\n", "bare")
    assert bare.values == {"W": 2.0} and not bare.returns_terms and bare.terms == ()
    program = apply_edit(bare, parse_edit('{"set": {}, "add_terms": [{"name": "effort", "weight": 0.1, '
                                          '"expression": "-sum_sq(action)"}]}', bare))
    result = critique(program, "MetaWorld-Reach", tmp_path, steps=10, num_envs=2, timeout_s=60)
    assert result.ok, result.reason
    assert {t.name for t in result.report.terms} == {"reward", "base", "effort"}
    with pytest.raises(EditError, match="must be new"):
        parse_edit('{"set": {}, "add_terms": [{"name": "base", "weight": 1, "expression": "1.0"}]}', bare)


def test_a_base_from_another_task_says_where_it_came_from_and_flags_unrelated_terms(tmp_path):
    """Issue 27, item 5: a Push program as the base of a Reach run (used only where the task has
    no program of its own) is marked as such, and its block terms are flagged."""
    from rewardgym.llm_rewards.edit import adapt_base, term_fields, unrelated_fields

    reach = get_task("MetaWorld-Reach")
    push_source = get_program("MetaWorld-Push").source()
    assert term_fields(push_source)["reach"] == {"hand_to_obj", "obj_init_pos", "hand_init_pos"}
    assert unrelated_fields({"hand_to_goal", "hand_to_obj", "goal_pos", "success"}, reach.instruction,
                            reach.success_doc) == {"hand_to_obj"}  # "The block at obj_pos is not involved."
    source, flagged, note = adapt_base(push_source, "MetaWorld-Push", "rewardgym/MetaWorld-Push-v0", reach.id,
                                       list(reach.view.fields), reach.instruction, reach.success_doc)
    assert {"reach", "push"} <= set(flagged) and "remove_terms" in note and "reach" in note
    doc = source.split('"""')[1]
    assert doc.startswith(f"Base for {reach.id}'s edits: the library program MetaWorld-Push, written for "
                          "rewardgym/MetaWorld-Push-v0")
    assert "Its docstring, written for rewardgym/MetaWorld-Push-v0:\nExpert reward for MetaWorld-Push" in doc
    base = parameterize(source, "MetaWorld-Push")
    edited = apply_edit(base, parse_edit(json.dumps({"set": {}, "remove_terms": ["push"]}), base))
    assert edited.startswith('"""Edit of MetaWorld-Push: removed push.\n\nBase for rewardgym/MetaWorld-Reach-v0')
    assert not edited.startswith('"""Expert reward for MetaWorld-Push')
    result = critique(edited, reach.id, tmp_path, steps=10, num_envs=2, timeout_s=60)
    assert result.ok, result.reason
