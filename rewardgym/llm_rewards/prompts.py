"""Prompts for LLM reward synthesis: design, repair, reflection.

Three requests, in the spirit of the papers they come from:

* **Design** (Text2Reward, Xie et al., 2024; Eureka, Ma et al., 2024): the task's
  documentation exactly as ``rewardgym describe TASK`` prints it (instruction, success test,
  state view with shapes and units, the prelude), the behaviour to reward, the program
  format rules, few-shot examples retrieved from the reward library (Text2Reward's expert
  abstraction + examples), and a request for K different programs in separate fenced
  blocks (Eureka's sampling of K candidates).
* **Repair** (Auto MC-Reward's reward critic, Li et al., 2024): the failed program with
  line numbers and the exact error (stage, file, line, term) from
  :func:`rewardgym.llm_rewards.critic.critique`, asking for the whole corrected program.
* **Reflection** (Eureka's reward reflection; Auto MC-Reward's trajectory analyser): the
  best program so far, a text summary of its training (per-term statistics, success rate;
  written by the synthesis loop) and optional human feedback, asking for K improved
  programs.
* **Edit** (:mod:`rewardgym.llm_rewards.edit`, for weak models): a working base program with
  its numbers named, and a request for one JSON object that re-weights, removes or adds
  terms; the JSON schema goes with it.

**Fitting a context window.** Each builder takes ``examples`` (how many few-shot programs)
and ``prelude`` (``"full"``, ``"brief"``: helper signatures only, ``"none"``).
:func:`fit_prompt` builds the prompt at decreasing sizes until its conservative token
estimate (:func:`rewardgym.llm.client.estimate_tokens`) fits the budget, in this
documented order: drop few-shot examples (the least similar first), then shorten the
helper documentation to signatures, then drop it. The task's state view, the instruction,
the program rules, and the program under repair or reflection are never cut; a prompt that
does not fit then raises :class:`PromptTooLong`. What was cut is returned for the report.

Every prompt is a module-level template (``str.format`` fields in braces), so what the LLM
sees can be read here. Each user message starts with :data:`COMMON_TEMPLATE` (task
documentation, behaviour, program rules: the same text in every request of a run, so a
server's prefix cache serves it), then a title line (:data:`DESIGN_TITLE`,
:data:`REPAIR_TITLE`, :data:`REFLECTION_TITLE`, :data:`EDIT_TITLE`) that the test
server's transcripts route on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rewardgym.envs.task import TaskSpec

if TYPE_CHECKING:  # pragma: no cover
    from rewardgym.llm_rewards.critic import CriticResult
    from rewardgym.llm_rewards.edit import Parameterized
    from rewardgym.llm_rewards.library import LibraryEntry

Messages = list[dict[str, str]]

DESIGN_TITLE = "# Reward design request"
REPAIR_TITLE = "# Reward program repair request"
REFLECTION_TITLE = "# Reward reflection request"
EDIT_TITLE = "# Reward edit request"

SYSTEM_PROMPT = """\
You are an expert reward engineer for reinforcement learning on physics simulators and games.
You write reward programs: short, vectorised Python functions that turn the state of a batch
of simulated environments into a dense reward from which a policy-gradient agent (PPO) learns
the requested behaviour quickly and reliably. You read the task documentation carefully, use
only the state fields it documents, with their units and shapes, and you answer with complete
programs in ```python fenced blocks."""

PROGRAM_RULES = """\
- Define `compute_reward(state, action)` at module level. Return `(reward, terms)`: `reward` has
  shape (B,) (one value per environment in the batch) and `terms` is a dict of named (B,)
  components, each already weighted, that add up to the reward. The terms are logged during
  training and shown back to you, so name them after what they measure.
- `state.<field>` is batch-first, (B,) or (B, k), with the units given in the state view. Use
  only fields listed in the state view. `state.prev.<field>` is the same field one step earlier
  (the state in which `action` was taken), so `state.x - state.prev.x` is this step's change.
  `action` is (B, act_dim) float for continuous actions, (B,) int for discrete ones.
- In scope without imports: `np` and the prelude helpers documented above. `import numpy as np`
  and `import math` are allowed; nothing else may be imported.
- Vectorised numpy only: no Python loops over the batch. Use the function forms from the numpy
  subset above (`np.sum(x, axis=-1)`, not `x.sum()`): the same program also runs on torch tensors.
- Not allowed: classes, try/except, with, global, print or any other I/O, names starting with
  `__`, attributes starting with `_`, eval/exec/open/getattr, np.random (a reward is a
  deterministic function of state and action), assigning into state fields.
- At module level only: a docstring, imports, constants (`NAME = 0.5`) and function definitions.
  Helper functions are fine.
- Every value must be finite: guard divisions and logarithms (e.g. `np.maximum(x, 1e-6)`).
- Keep the per-step reward roughly within [-10, 10]; prefer bounded shaping terms (`tolerance`,
  `squash`, `exp_decay`, `linear_ramp`) plus a small action penalty. The reward must change with
  the state: a constant reward teaches nothing.
- Start the program with a docstring giving, one line per term, what it rewards and why."""

COMMON_TEMPLATE = """\
## Task documentation
{task_doc}

## Behaviour to reward
{instruction}

## Program format
{rules}
"""
"""The start of every request of a run, byte for byte: servers that cache a shared prompt
prefix (llama.cpp, vLLM, OpenAI) process it once per run, not once per request."""

EXAMPLE_TEMPLATE = """\
### Example {index}: `{name}` (task {task})
```python
{source}
```"""

EXAMPLES_HEADER = """\
## Example reward programs
Programs written for related tasks. Each reads the state view of the task named in its header,
which may differ from this task's: use them for structure and shaping ideas, and use only the
fields documented above."""

DESIGN_TEMPLATE = """\
{common}
{title}

{examples}## Your answer
Write {k_text} for this behaviour.{diversity}
Put each complete program, with its docstring, in its own ```python fenced block, preceded by
one or two sentences on its idea. Put nothing else in code blocks."""

REPAIR_TEMPLATE = """\
{common}
{title}

## The program that failed{attempt}
Line numbers are shown only to locate the error; they are not part of the program.
```text
{numbered}
```

## What went wrong
{failure}

## Your answer
Fix this problem (and any other you notice), keeping what works. Answer with the complete
corrected program, without line numbers, in one ```python fenced block."""

REFLECTION_TEMPLATE = """\
{common}
{title}

## Best reward program so far
```python
{program}
```

## Training results with this reward
{training_summary}
{feedback}
## Your answer
First analyse the results term by term, in a few sentences:
- If the success rate stays near zero, the reward does not lead to the behaviour: rethink what
  it rewards rather than only re-weighting.
- A term whose values barely change cannot be optimised: rescale it, reshape it (e.g. a
  `tolerance` margin) or drop it.
- A term whose magnitude dwarfs the others decides the behaviour alone: re-weight it.
- A term that grows while success does not is being exploited: remove it or gate it on progress.
Then write {k_text}, each complete, with its docstring, in its own ```python fenced block."""

EDIT_TEMPLATE = """\
{common}
{title}

## Program to change: `{base_name}`
This program works (it passes every check). Its numbers are the named constants at the top.
```python
{program}
```
{results}{failure}
## Your answer
Answer with one JSON object and nothing else:
- "idea": one short sentence on what you change and why;
- "set": a number for every constant above ({names}); keep a value to leave it unchanged;
- "remove_terms": names of terms to drop, from: {terms};
- "add_terms": at most {max_added} new terms, each {{"name": "lower_case_name", "weight": number,
  "expression": "one Python expression over state, action, np and the helpers"}}.
Example: {example}"""

EDIT_RESULTS_TEMPLATE = """
## Training results with this program
{training_summary}
"""

EDIT_FAILURE_TEMPLATE = """
## Your previous edit failed
```json
{edit}
```
{failure}
"""

FEEDBACK_TEMPLATE = """
## Feedback from a person who watched the policy
{human_feedback}
"""

FAILURE_TEMPLATE = """\
Stage: {stage}{location}
{reason}"""

NO_CODE_FOLLOWUP = """\
Your reply contained no usable program: {reason}. Answer again with the complete program(s) in
```python fenced blocks."""

STAGE_TEXT = {
    "extract": "no program found in the reply",
    "validate": "rejected by the static validator before running",
    "load": "failed while loading the program",
    "runtime": "failed while computing the reward on random rollouts of the simulator",
    "timeout": "did not finish within the time limit",
    "memory": "exceeded the memory limit",
    "crash": "the evaluation process crashed",
    "stats": "ran, but the reward statistics on random rollouts show it cannot work",
    "edit": "the reply was not a usable edit",
    "llm": "the request for it failed",
}


PRELUDE_LEVELS = ("full", "brief", "none")
NO_PRELUDE_NOTE = ("(The helper documentation was left out to fit the model's context window: use `np` and "
                   "the helpers distance, norm, sum_sq, tolerance, squash, linear_ramp, smooth_step.)")


def task_documentation(task: TaskSpec, prelude: str = "full") -> str:
    """What ``rewardgym describe TASK`` prints: ``task.describe()`` + the prelude documentation
    (``prelude="brief"``: helper signatures only; ``"none"``: a one-line note)."""
    from rewardgym.rewards.prelude import describe_prelude

    if prelude not in PRELUDE_LEVELS:
        raise ValueError(f"prelude must be one of {PRELUDE_LEVELS}, got {prelude!r}")
    helpers = NO_PRELUDE_NOTE if prelude == "none" else describe_prelude(brief=prelude == "brief")
    return task.describe() + "\n\n" + helpers


class PromptTooLong(ValueError):
    """Even the smallest form of a prompt exceeds the token budget (the message gives both)."""


@dataclass
class FittedPrompt:
    """A prompt fitted to a budget: ``messages``, their estimated ``tokens``, what was ``cut``."""

    messages: "Messages"
    tokens: int
    cuts: list[str] = field(default_factory=list)


def fit_prompt(build: Callable[[int, str], "Messages"], budget: int | None, examples: Sequence[str] = ()
               ) -> FittedPrompt:
    """The largest form of ``build(n_examples, prelude)`` whose estimate fits ``budget`` tokens.

    Args:
        build: builds the messages with the first ``n_examples`` few-shot programs and the
            prelude documentation at level ``prelude`` (:data:`PRELUDE_LEVELS`).
        budget: tokens the prompt may take (None: no limit, the full prompt).
        examples: names of the few-shot programs, most similar first (for the cut list).

    Raises:
        PromptTooLong: not even the smallest form fits.
    """
    from rewardgym.llm.client import estimate_tokens

    n = len(examples)
    forms = [(k, "full") for k in range(n, -1, -1)] + [(0, "brief"), (0, "none")]
    smallest = None
    for k, prelude in forms:
        messages = build(k, prelude)
        tokens = estimate_tokens(messages)
        smallest = tokens
        if budget is None or tokens <= budget:
            cuts = [f"few-shot example {e}" for e in examples[k:]]
            if prelude != "full":
                cuts.append("helper documentation shortened to signatures" if prelude == "brief"
                            else "helper documentation")
            return FittedPrompt(messages, tokens, cuts)
    raise PromptTooLong(f"the prompt needs about {smallest} tokens even without few-shot examples and helper "
                        f"documentation, more than the {budget} tokens the context window leaves")


def numbered(source: str) -> str:
    """``source`` with right-aligned 1-based line numbers (``  7 | code``)."""
    lines = source.rstrip("\n").split("\n")
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


def _k_text(k: int) -> str:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return "one reward program" if k == 1 else f"{k} different reward programs"


def format_examples(examples: Sequence["LibraryEntry"]) -> str:
    """The few-shot section (empty string when there are no examples)."""
    if not examples:
        return ""
    parts = [EXAMPLES_HEADER]
    for i, entry in enumerate(examples, 1):
        parts.append(EXAMPLE_TEMPLATE.format(index=i, name=entry.name, task=entry.task_id or "unknown",
                                             source=entry.source().rstrip("\n")))
    return "\n\n".join(parts) + "\n\n"


def format_failure(failure: "CriticResult | Mapping[str, Any] | str") -> str:
    """The "what went wrong" text: a critic result, a recorded attempt (a dict with its
    ``stage``, ``reason``, ``line``, ``term``), or a string."""
    if isinstance(failure, str):
        return failure
    get = failure.get if isinstance(failure, Mapping) else lambda key: getattr(failure, key, None)
    loc = []
    if get("line") is not None:
        loc.append(f"line {get('line')}")
    if get("term"):
        loc.append(f"`{get('term')}`")
    location = f" (at {', '.join(loc)})" if loc else ""
    stage = get("stage") or "?"
    return FAILURE_TEMPLATE.format(stage=f"{stage}: {STAGE_TEXT.get(stage, stage)}", location=location,
                                   reason=get("reason") or "")


def _common(task: TaskSpec, instruction: str | None, prelude: str) -> str:
    return COMMON_TEMPLATE.format(task_doc=task_documentation(task, prelude),
                                  instruction=instruction or task.instruction, rules=PROGRAM_RULES)


def _system() -> dict[str, str]:
    return {"role": "system", "content": SYSTEM_PROMPT}


def designer_messages(task: TaskSpec, instruction: str | None = None, examples: Sequence["LibraryEntry"] = (),
                      k: int = 1, prelude: str = "full") -> Messages:
    """System + user messages asking for ``k`` reward programs for ``instruction`` on ``task``.

    Args:
        task: the task (its documentation is included verbatim).
        instruction: the behaviour to reward (default: the task's own instruction).
        examples: few-shot programs, e.g. from :func:`rewardgym.llm_rewards.library.retrieve`.
        k: programs requested, as separate fenced blocks.
        prelude: helper documentation level (:func:`task_documentation`).
    """
    diversity = ("\nMake them genuinely different (which quantities they reward, how they shape and weight\n"
                 "them), so that at least one works well.") if k > 1 else ""
    user = DESIGN_TEMPLATE.format(common=_common(task, instruction, prelude), title=DESIGN_TITLE,
                                  examples=format_examples(examples), k_text=_k_text(k), diversity=diversity)
    return [_system(), {"role": "user", "content": user}]


def repair_messages(task: TaskSpec, program: str, failure: "CriticResult | str", instruction: str | None = None,
                    attempt: int | None = None, max_attempts: int | None = None, prelude: str = "full") -> Messages:
    """System + user messages asking to fix ``program``, which failed with ``failure``.

    Args:
        task: the task.
        program: the failed program's source (shown with line numbers).
        failure: the critic's result (its stage, line, term and reason are shown) or a message.
        instruction: the behaviour to reward (default: the task's instruction).
        attempt, max_attempts: shown as "(repair attempt 2 of 3)" when given.
    """
    att = ""
    if attempt is not None:
        att = f" (repair attempt {attempt}" + (f" of {max_attempts}" if max_attempts else "") + ")"
    user = REPAIR_TEMPLATE.format(common=_common(task, instruction, prelude), title=REPAIR_TITLE,
                                  numbered=numbered(program), attempt=att, failure=format_failure(failure))
    return [_system(), {"role": "user", "content": user}]


def reflection_messages(task: TaskSpec, program: str, training_summary: str, instruction: str | None = None,
                        human_feedback: str | None = None, k: int = 1, prelude: str = "full") -> Messages:
    """System + user messages asking for ``k`` improved programs after training with ``program``.

    Args:
        task: the task.
        program: the best program so far.
        training_summary: the synthesis loop's text summary of training with it (success
            rate, returns, per-term statistics over training).
        instruction: the behaviour to reward (default: the task's instruction).
        human_feedback: optional free text from a person.
        k: programs requested.
    """
    feedback = FEEDBACK_TEMPLATE.format(human_feedback=human_feedback.strip()) if human_feedback else ""
    user = REFLECTION_TEMPLATE.format(common=_common(task, instruction, prelude), title=REFLECTION_TITLE,
                                      program=program.rstrip("\n"), training_summary=training_summary.strip(),
                                      feedback=feedback, k_text=_k_text(k))
    return [_system(), {"role": "user", "content": user}]


def edit_messages(task: TaskSpec, base: "Parameterized", instruction: str | None = None,
                  training_summary: str | None = None, previous_edit: str | None = None,
                  failure: "CriticResult | str | None" = None, prelude: str = "full") -> Messages:
    """System + user messages asking for one JSON edit of ``base`` (edit mode).

    Args:
        task: the task.
        base: the parameterized base program (:func:`rewardgym.llm_rewards.edit.parameterize`).
        instruction: the behaviour to reward (default: the task's instruction).
        training_summary: how training with ``base`` went, when it was trained.
        previous_edit, failure: the model's last edit and why it failed (an edit repair).
        prelude: helper documentation level.
    """
    import json

    from rewardgym.llm_rewards.edit import MAX_ADDED_TERMS

    names = ", ".join(base.values) or "(none)"
    terms = ", ".join(base.terms) or "(none: the program returns no terms)"
    example = json.dumps({"idea": "weight the main term more", "set": {n: v for n, v in base.values.items()},
                          "remove_terms": [], "add_terms": []})
    results = EDIT_RESULTS_TEMPLATE.format(training_summary=training_summary.strip()) if training_summary else ""
    fail = (EDIT_FAILURE_TEMPLATE.format(edit=previous_edit.strip(), failure=format_failure(failure))
            if previous_edit is not None and failure is not None else "")
    user = EDIT_TEMPLATE.format(common=_common(task, instruction, prelude), title=EDIT_TITLE, base_name=base.name,
                                program=base.source.rstrip("\n"), results=results, failure=fail, names=names,
                                terms=terms, max_added=MAX_ADDED_TERMS, example=example)
    return [_system(), {"role": "user", "content": user}]


def followup_messages(messages: Sequence[dict[str, Any]], reply: str, feedback: str) -> Messages:
    """Continue a conversation: ``messages`` + the assistant's ``reply`` + a user ``feedback``.

    For a reply without a program, ``feedback`` is
    ``NO_CODE_FOLLOWUP.format(reason=exc.reason)`` of the :class:`~rewardgym.llm_rewards.extract.NoCodeFound`.
    """
    return [dict(m) for m in messages] + [{"role": "assistant", "content": reply},
                                          {"role": "user", "content": feedback}]
