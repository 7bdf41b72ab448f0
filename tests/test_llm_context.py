"""Prompts that fit a 2,048-token context on every built-in task (issue 27, item 1): the
compact state view keeps every field, the short rules keep every rule, the reply cap adapts,
and the report says what was shortened. Token counts are the client's own estimate, the one
the synthesis loop fits with."""

from __future__ import annotations

import json
import re

import pytest

from rewardgym.envs.registry import all_tasks, get_task
from rewardgym.envs.view import short_meaning
from rewardgym.llm.client import estimate_tokens
from rewardgym.llm_rewards.edit import parameterize
from rewardgym.llm_rewards.library import get_program
from rewardgym.llm_rewards.prompts import (CONTEXT_MARGIN, MIN_EDIT_REPLY_TOKENS, MIN_REPLY_TOKENS, PROGRAM_RULES,
                                           SHORT_RULES, VIEW_LEVELS, Form, PromptTooLong, compact_program,
                                           designer_messages, edit_messages, fit_request, prompt_forms,
                                           reflection_messages, task_documentation)

CONTEXT = 2048
TASKS = sorted(all_tasks())


def summary(terms) -> str:
    """A training summary as the synthesis loop writes it (format_analysis), one line per term."""
    return "\n".join([
        "Evaluation (5 episodes, deterministic policy): success rate 0.00, return 12.3 ± 4.56, env return 7.89, "
        "episode length 500.",
        "Training (2048 env steps, 4 updates): success rate 0 -> 0 (best 0.00); env return 1.23 -> 4.56.",
        "Episodes end early: mean length 123 of at most 500 steps (the env terminates them — e.g. the robot falls "
        "or the task ends).",
        "Reward terms (episode sums: first quarter -> last quarter of training; share of the total reward scale):"]
        + [f"  {t}: 1.23 -> 4.56 (range -0.123 .. 7.89), share 33%  NEVER CHANGED" for t in terms])


def _fits(build, min_reply: int) -> tuple[int, int]:
    fitted, cap = fit_request(build, CONTEXT, 2048, (), min_reply)
    assert fitted.tokens == estimate_tokens(fitted.messages)
    assert fitted.tokens + cap + CONTEXT_MARGIN <= CONTEXT
    assert cap >= min_reply
    return fitted.tokens, cap


@pytest.mark.parametrize("task_id", TASKS)
def test_designer_and_edit_prompts_fit_2048_tokens_on_every_task(task_id):
    task = get_task(task_id)
    _fits(lambda k, form: designer_messages(task, None, [], k=1, prelude=form), MIN_REPLY_TOKENS)
    _fits(lambda k, form: designer_messages(task, None, [], k=4, prelude=form), MIN_REPLY_TOKENS)
    own = get_program(task.short_name)  # edit mode starts from the task's own program
    base = parameterize(own.source(), own.name)
    _fits(lambda k, form: edit_messages(task, base, prelude=form), MIN_EDIT_REPLY_TOKENS)
    # an edit of the best program after training, with the summary of every term
    results = summary(base.terms or ["reward"])
    _fits(lambda k, form: edit_messages(task, base, training_summary=results, prelude=form), MIN_EDIT_REPLY_TOKENS)


@pytest.mark.parametrize("task_id", TASKS)
def test_reflection_fits_2048_tokens_or_is_refused_for_the_loop_to_edit_instead(task_id):
    """A reflection carries a whole program and asks for another: where both cannot fit, the
    loop asks for edits of the best program instead (tests/test_synthesize.py)."""
    task = get_task(task_id)
    own = get_program(task.short_name)
    results = summary(parameterize(own.source(), own.name).terms or ["reward"])
    build = lambda k, form: reflection_messages(task, own.source(), results, prelude=form)  # noqa: E731
    try:
        _fits(build, MIN_REPLY_TOKENS)
    except PromptTooLong as exc:
        assert task.family in ("nethack", "minihack", "mamujoco") and f"{CONTEXT}-token context window" in str(exc)
        smallest = list(prompt_forms(build))[-1]
        assert smallest.tokens + MIN_REPLY_TOKENS + CONTEXT_MARGIN > CONTEXT
        assert "training results cut to the evaluation line (where a prompt has them)" in smallest.cuts


@pytest.mark.parametrize("task_id", ["rewardgym/NetHack-Scout-v0", "rewardgym/MetaWorld-Reach-v0",
                                     "rewardgym/MaMuJoCo-Ant-2x4-v0"])
def test_every_compact_form_keeps_every_field_with_its_shape_and_unit(task_id):
    task = get_task(task_id)
    for level in range(1, len(VIEW_LEVELS) + 1):
        doc = task_documentation(task, Form("none", short=True, view=level))
        assert "Success test: " + task.success_doc in doc
        for f in task.view.fields.values():
            shape = re.escape(f.shape.replace(" ", ""))
            if VIEW_LEVELS[level - 1][2]:  # grouped: the field's name on its shape-and-unit line
                line = next(ln for ln in doc.splitlines() if ln.startswith(f"{f.shape.replace(' ', '')} {f.unit}:"))
                assert re.search(rf"\b{f.name}\b", line), (level, f.name)
            else:
                assert re.search(rf"^{f.name} {shape} {re.escape(f.unit)}", doc, re.M), (level, f.name)
    sizes = [estimate_tokens(task_documentation(task, Form("none", short=True, view=v)))
             for v in range(len(VIEW_LEVELS) + 1)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 2


def test_the_short_rules_keep_every_rule():
    for phrase in ("compute_reward(state, action)", "(reward, terms)", "state.prev.", "docstring", "import numpy",
                   "math", "loops", "np.sum(x, axis=-1)", "torch", "classes", "try/except", "with", "global",
                   "print", "eval/exec/open/getattr", "np.random", "[-10, 10]", "tolerance", "action penalty",
                   "constant", "np.maximum(x, 1e-6)", "(B, act_dim)"):
        assert phrase in PROGRAM_RULES and phrase in SHORT_RULES, phrase
    assert estimate_tokens(SHORT_RULES) < 0.6 * estimate_tokens(PROGRAM_RULES)


def test_short_meanings_drop_remarks_then_clauses_then_words():
    assert short_meaning("Hero map column, 0..78 (blstats); the map is glyphs[y, x].", 40) == "Hero map column, 0..78"
    assert short_meaning("Armor class; LOWER is better (starts around 10).", 30) == "Armor class; LOWER is better."
    assert short_meaning("Short.", 40) == "Short."
    assert short_meaning("Anything", 0) == ""
    cut = short_meaning("Chebyshev distance from the hero to the nearest displayed down staircase", 30)
    assert cut.endswith("...") and len(cut) <= 30


def test_a_shown_program_keeps_its_code_and_loses_its_long_docstring():
    source = get_program("MetaWorld-Push").source()
    short = compact_program(source)
    assert short.startswith('"""Expert reward for MetaWorld-Push') and short.count("\n") < source.count("\n")
    assert "def compute_reward(state, action):" in short and "compute_potential(state) is defined here" in short
    body = source[source.index("def compute_reward"):source.index("def compute_potential")].strip()
    assert body in short


def test_the_reply_cap_adapts_and_says_so():
    task = get_task("NetHack-Scout")
    build = lambda k, form: designer_messages(task, None, [], prelude=form)  # noqa: E731
    fitted, cap = fit_request(build, 8192, 2048)
    assert cap == 2048 and fitted.cuts == []
    fitted, cap = fit_request(build, CONTEXT, 2048)
    assert MIN_REPLY_TOKENS <= cap < 2048 and f"reply cap lowered to {cap} tokens" in fitted.cuts
    assert any(c.startswith("state view compact: every field kept") for c in fitted.cuts)
    with pytest.raises(PromptTooLong, match="1024-token context window"):
        fit_request(build, 1024, 2048)
    assert json.dumps(fitted.cuts)  # the report stores them
