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

Every prompt is a module-level template (``str.format`` fields in braces), so what the LLM
sees can be read here. Each user message starts with a title line (:data:`DESIGN_TITLE`,
:data:`REPAIR_TITLE`, :data:`REFLECTION_TITLE`) that the test server's transcripts route on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rewardgym.envs.task import TaskSpec

if TYPE_CHECKING:  # pragma: no cover
    from rewardgym.llm_rewards.critic import CriticResult
    from rewardgym.llm_rewards.library import LibraryEntry

Messages = list[dict[str, str]]

DESIGN_TITLE = "# Reward design request"
REPAIR_TITLE = "# Reward program repair request"
REFLECTION_TITLE = "# Reward reflection request"

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
{title}

## Task documentation
{task_doc}

## Behaviour to reward
{instruction}

## Program format
{rules}

{examples}## Your answer
Write {k_text} for this behaviour.{diversity}
Put each complete program, with its docstring, in its own ```python fenced block, preceded by
one or two sentences on its idea. Put nothing else in code blocks."""

REPAIR_TEMPLATE = """\
{title}

## Task documentation
{task_doc}

## Behaviour to reward
{instruction}

## Program format
{rules}

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
{title}

## Task documentation
{task_doc}

## Behaviour to reward
{instruction}

## Program format
{rules}

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
}


def task_documentation(task: TaskSpec) -> str:
    """What ``rewardgym describe TASK`` prints: ``task.describe()`` + the prelude documentation."""
    from rewardgym.rewards.prelude import describe_prelude

    return task.describe() + "\n\n" + describe_prelude()


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


def format_failure(failure: "CriticResult | str") -> str:
    """The "what went wrong" text: a critic result (stage, file:line, term, reason) or a string."""
    if isinstance(failure, str):
        return failure
    loc = []
    if failure.line is not None:
        loc.append(f"line {failure.line}")
    if failure.term:
        loc.append(f"`{failure.term}`")
    location = f" (at {', '.join(loc)})" if loc else ""
    stage = f"{failure.stage}: {STAGE_TEXT.get(failure.stage, failure.stage)}"
    return FAILURE_TEMPLATE.format(stage=stage, location=location, reason=failure.reason)


def _system() -> dict[str, str]:
    return {"role": "system", "content": SYSTEM_PROMPT}


def designer_messages(task: TaskSpec, instruction: str | None = None, examples: Sequence["LibraryEntry"] = (),
                      k: int = 1) -> Messages:
    """System + user messages asking for ``k`` reward programs for ``instruction`` on ``task``.

    Args:
        task: the task (its documentation is included verbatim).
        instruction: the behaviour to reward (default: the task's own instruction).
        examples: few-shot programs, e.g. from :func:`rewardgym.llm_rewards.library.retrieve`.
        k: programs requested, as separate fenced blocks.
    """
    diversity = ("\nMake them genuinely different (which quantities they reward, how they shape and weight\n"
                 "them), so that at least one works well.") if k > 1 else ""
    user = DESIGN_TEMPLATE.format(title=DESIGN_TITLE, task_doc=task_documentation(task),
                                  instruction=instruction or task.instruction, rules=PROGRAM_RULES,
                                  examples=format_examples(examples), k_text=_k_text(k), diversity=diversity)
    return [_system(), {"role": "user", "content": user}]


def repair_messages(task: TaskSpec, program: str, failure: "CriticResult | str", instruction: str | None = None,
                    attempt: int | None = None, max_attempts: int | None = None) -> Messages:
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
    user = REPAIR_TEMPLATE.format(title=REPAIR_TITLE, task_doc=task_documentation(task),
                                  instruction=instruction or task.instruction, rules=PROGRAM_RULES,
                                  numbered=numbered(program), attempt=att, failure=format_failure(failure))
    return [_system(), {"role": "user", "content": user}]


def reflection_messages(task: TaskSpec, program: str, training_summary: str, instruction: str | None = None,
                        human_feedback: str | None = None, k: int = 1) -> Messages:
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
    user = REFLECTION_TEMPLATE.format(title=REFLECTION_TITLE, task_doc=task_documentation(task),
                                      instruction=instruction or task.instruction, rules=PROGRAM_RULES,
                                      program=program.rstrip("\n"), training_summary=training_summary.strip(),
                                      feedback=feedback, k_text=_k_text(k))
    return [_system(), {"role": "user", "content": user}]


def followup_messages(messages: Sequence[dict[str, Any]], reply: str, feedback: str) -> Messages:
    """Continue a conversation: ``messages`` + the assistant's ``reply`` + a user ``feedback``.

    For a reply without a program, ``feedback`` is
    ``NO_CODE_FOLLOWUP.format(reason=exc.reason)`` of the :class:`~rewardgym.llm_rewards.extract.NoCodeFound`.
    """
    return [dict(m) for m in messages] + [{"role": "assistant", "content": reply},
                                          {"role": "user", "content": feedback}]
