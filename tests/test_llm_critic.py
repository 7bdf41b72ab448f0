"""Extraction, prompts and the reward critic on the TEST TOOLING transcripts (real Hopper-v5 rollouts)."""

from __future__ import annotations

import pytest

from rewardgym.envs.registry import get_task
from rewardgym.llm.client import LLMClient, estimate_tokens
from rewardgym.llm_rewards.critic import critique
from rewardgym.llm_rewards.extract import NoCodeFound, extract_programs
from rewardgym.llm_rewards.library import retrieve
from rewardgym.llm_rewards.prompts import (DESIGN_TITLE, PROGRAM_RULES, REFLECTION_TITLE, REPAIR_TITLE, PromptTooLong,
                                           fit_prompt,
                                           designer_messages, numbered, reflection_messages, repair_messages,
                                           task_documentation)
from rewardgym.rewards.prelude import describe_prelude
from rewardgym.testing import ScriptedOpenAIServer
from rewardgym.testing.openai_server import load_transcript_file

CRITIC_LIMITS = dict(steps=20, num_envs=2, timeout_s=120.0, memory_mb=1024)  # generous: a busy machine
LOOP_TIMEOUT_S = 3.0  # only for the program that loops forever: the limit under test


def reply_of(name: str, index: int = 0) -> str:
    return load_transcript_file(name)["responses"][index]["text"]


# -- extraction ----------------------------------------------------------------------------
def test_extract_two_fenced_programs_with_line_mapping():
    reply = reply_of("good_programs")
    programs = extract_programs(reply)
    assert len(programs) == 2 and all(p.fenced and p.parses for p in programs)
    lines = reply.splitlines()
    for p in programs:
        assert "def compute_reward" in p.source and "```" not in p.source
        for i, text in enumerate(p.source.rstrip("\n").split("\n"), 1):
            assert lines[p.reply_line(i) - 1] == text  # each program line maps back to its reply line


def test_extract_merges_helper_blocks_and_skips_other_languages():
    programs = extract_programs(reply_of("several_blocks"))
    assert len(programs) == 1
    p = programs[0]
    assert p.blocks == (0, 1)  # helper block + reward block; the bash block is ignored
    assert p.source.index("def upright_bonus") < p.source.index("def compute_reward")
    assert "rewardgym check" not in p.source
    assert None in p.reply_lines  # separator lines between merged blocks map to no reply line


def test_extract_unused_helper_is_dropped_and_unfenced_code_found():
    reply = ("```python\ndef unused(x):\n    return x\n```\n\n"
             "```python\ndef compute_reward(state, action):\n    return state.torso_height\n```\n")
    (p,) = extract_programs(reply)
    assert "unused" not in p.source and p.blocks == (1,)
    (whole,) = extract_programs(reply_of("unfenced"))
    assert not whole.fenced and whole.source.startswith('"""Hop forward')
    prose = ("Here is my reward:\n\nimport numpy as np\n\ndef compute_reward(state, action):\n"
             "    return state.torso_lin_vel[:, 0]\n\nIt rewards speed.")
    (p,) = extract_programs(prose)
    assert p.source.startswith("import numpy") and "It rewards" not in p.source and p.parses
    assert p.reply_line(1) == 3


def test_extract_keeps_unparseable_program_and_reports_no_code():
    (p,) = extract_programs(reply_of("syntax_error"))
    assert not p.parses and "sum_sq(action" in p.source
    with pytest.raises(NoCodeFound, match="no Python code"):
        extract_programs(reply_of("prose_only"))
    with pytest.raises(NoCodeFound, match="none defines compute_reward"):
        extract_programs("```python\nx = 1\n```")
    truncated = "```python\ndef compute_reward(state, action):\n    return state.dt\n"  # cut off, no closing fence
    assert extract_programs(truncated)[0].parses


# -- prompts ----------------------------------------------------------------------------------
def test_designer_prompt_contains_exact_task_documentation_and_examples():
    task = get_task("Hopper-Hop")
    examples = retrieve("hop forward fast", task, k=2)
    messages = designer_messages(task, "Hop forward fast.", examples, k=3)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert f"\n{DESIGN_TITLE}\n" in user
    assert task_documentation(task) == task.describe() + "\n\n" + describe_prelude()  # `rewardgym describe`
    assert task_documentation(task) in user and PROGRAM_RULES in user
    assert "Write 3 different reward programs" in user and "Hop forward fast." in user
    for e in examples:
        assert e.source().rstrip("\n") in user and e.task_id in user
    assert "Hopper-Hop.py" not in user  # the task's own expert is not a few-shot example


def test_repair_and_reflection_prompts(tmp_path):
    task = get_task("Hopper-Hop")
    program = extract_programs(reply_of("unknown_field"))[0].source
    result = critique(program, task.id, tmp_path, **CRITIC_LIMITS)
    user = repair_messages(task, program, result, attempt=1, max_attempts=3)[1]["content"]
    assert f"\n{REPAIR_TITLE}\n" in user and "(repair attempt 1 of 3)" in user
    assert numbered(program) in user and "\n2 |     forward = state.forward_velocity\n" in user
    assert result.reason in user and "at line 2, `state.forward_velocity`" in user
    refl = reflection_messages(task, program, "success rate 0.00; term forward mean 0.01",
                               human_feedback="It falls over at once.", k=2)[1]["content"]
    assert f"\n{REFLECTION_TITLE}\n" in refl and "It falls over at once." in refl
    assert "success rate 0.00" in refl and "write 2 different reward programs" in refl
    # every request of a run starts with the same text (a server's prefix cache serves it)
    common = user[:user.index(REPAIR_TITLE)]
    assert refl.startswith(common) and len(common) > 0.8 * len(user) - len(numbered(program)) - 2000


def test_prompts_fit_a_context_window_in_the_documented_order():
    task = get_task("MetaWorld-Reach")
    examples = retrieve(task.instruction, task, k=2)
    names = [e.name for e in examples]

    def build(k, prelude):
        return designer_messages(task, None, examples[:k], k=2, prelude=prelude)

    full = fit_prompt(build, None, names)
    assert full.cuts == [] and full.tokens == estimate_tokens(full.messages)
    steps = [fit_prompt(build, budget, names) for budget in (full.tokens - 1, 3000, 2600, 2400)]
    assert steps[0].cuts == [f"few-shot example {names[1]}"]
    assert steps[1].cuts[:2] == [f"few-shot example {n}" for n in names]
    assert steps[-1].cuts[-1] == "helper documentation"
    for fitted, budget in zip(steps, (full.tokens - 1, 3000, 2600, 2400)):
        assert fitted.tokens <= budget
        user = fitted.messages[1]["content"]
        assert task.describe() in user and PROGRAM_RULES in user  # never cut
    short = fit_prompt(build, 2000, names)  # then the short form and the compact views
    assert short.tokens <= 2000 and "rules and requests in short form (every rule kept)" in short.cuts
    with pytest.raises(PromptTooLong, match="300 tokens"):
        fit_prompt(build, 300, names)


# -- critic ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["syntax_error", "import_os", "unknown_field", "nan_reward", "wrong_shape",
                                  "infinite_loop", "memory_hog", "constant_reward"])
def test_critic_catches_each_bad_program(name, tmp_path):
    data = load_transcript_file(name)
    expect = data["expect"]
    (program,) = extract_programs(data["responses"][0]["text"])
    limits = {**CRITIC_LIMITS, "timeout_s": LOOP_TIMEOUT_S} if name == "infinite_loop" else CRITIC_LIMITS
    result = critique(program.source, data["task"], tmp_path, **limits)
    assert not result.ok and result.stage == expect["stage"], result.reason
    assert result.file is not None and result.file.startswith(str(tmp_path))
    assert str(tmp_path) not in result.reason  # the reason names the file, not its full path
    if "line" in expect:
        assert result.line == expect["line"] and f":{expect['line']}" in result.reason
    if "term" in expect:
        assert result.term == expect["term"]
    assert result.summary().startswith(expect["stage"])


def test_critic_accepts_good_programs_with_advisory_warnings(tmp_path):
    programs = extract_programs(reply_of("good_programs"))
    results = [critique(p.source, "Hopper-Hop", tmp_path, **CRITIC_LIMITS) for p in programs]
    assert all(r.ok and r.stage == "ok" and r.reason == "" for r in results)
    assert {t.name for t in results[0].report.terms} == {"reward", "forward", "upright", "alive", "ctrl"}
    assert any("alive" in w for w in results[0].warnings)  # constant survival bonus: advisory only


def test_synthesis_round_over_http(tmp_path):
    """Design -> extract -> critique -> repair -> reflect, each prompt routed by the test server."""
    task = get_task("Hopper-Hop")
    with ScriptedOpenAIServer("synthesis_hopper") as server:
        client = LLMClient(model=server.model, base_url=server.base_url, api_key=server.api_key,
                           run_dir=tmp_path, cache_dir=tmp_path / "cache", timeout_s=5, max_retries=0)
        reply = client.complete(designer_messages(task, k=2, examples=retrieve(task.instruction, task, k=1)))
        results = [critique(p.source, task.id, tmp_path, **CRITIC_LIMITS) for p in extract_programs(reply.text)]
        assert [r.stage for r in results] == ["validate", "ok"]
        bad = extract_programs(reply.text)[0].source
        fixed = client.complete(repair_messages(task, bad, results[0], attempt=1))
        (repaired,) = extract_programs(fixed.text)
        assert "(repaired)" in repaired.source
        assert critique(repaired.source, task.id, tmp_path, **CRITIC_LIMITS).ok
        better = client.complete(reflection_messages(task, repaired.source, results[1].report.format(), k=1))
        (improved,) = extract_programs(better.text)
        assert critique(improved.source, task.id, tmp_path, **CRITIC_LIMITS).ok
        assert server.chat_request_count == 3
