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
and ``prelude``: a helper-documentation level (``"full"``, ``"brief"``: signatures only,
``"none"``) or a :class:`Form`, which also says whether the text is short and how compact
the state view is. :func:`prompt_forms` lists the forms of a prompt from the largest, in
this documented order: drop few-shot examples (the least similar first), shorten the
helper documentation to signatures, drop it; then the short form (:data:`SHORT_RULES`:
every rule in fewer words, shorter requests, a shown program's docstring cut to its first
line, the task's instruction line dropped when it is the behaviour to reward); then the
state view in :data:`VIEW_LEVELS` ever more compact forms (every field kept with its
name, shape and unit; the longest meanings and the view's introduction shortened first,
then the meanings dropped, then fields of one shape and unit listed on one line); last, a
training summary cut to its evaluation line.
:func:`fit_prompt` takes the first form whose conservative token estimate
(:func:`rewardgym.llm.client.estimate_tokens`, calibrated by the server's own counts once it
has answered) fits a budget; :func:`fit_request` also
chooses the reply cap (see there). No field, rule, instruction, or program under repair,
reflection or edit is ever cut; a prompt that does not fit raises :class:`PromptTooLong`.
What was shortened is returned for the report.

Every prompt is a module-level template (``str.format`` fields in braces), so what the LLM
sees can be read here. Each user message starts with :data:`COMMON_TEMPLATE` (task
documentation, behaviour, program rules: the same text in every request of a run, so a
server's prefix cache serves it), then a title line (:data:`DESIGN_TITLE`,
:data:`REPAIR_TITLE`, :data:`REFLECTION_TITLE`, :data:`EDIT_TITLE`) that the test
server's transcripts route on.

Size: above 600 lines because every prompt's text is here twice, in its full and its short
form (for small context windows), beside the fitting that chooses between them.
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

SHORT_SYSTEM_PROMPT = """\
You are an expert reward engineer for reinforcement learning: you write short, vectorised Python
reward programs over documented state fields."""
""":data:`SYSTEM_PROMPT` in fewer words (the short form, for small context windows)."""

SHORT_RULES = """\
- Module level: a docstring (one line per term: what it rewards, why), then only `import numpy as
  np`/`import math`, constants (`K = 0.5`) and functions.
- `compute_reward(state, action)` returns `(reward, terms)`: reward (B,); terms a dict of named
  (B,) weighted parts summing to it (logged, shown to you).
- `state.<field>` (listed fields only, batch-first, listed units); `state.prev.<field>`: one step
  earlier. `action`: (B, act_dim) float or (B,) int.
- `np` and the helpers are in scope. Vectorised, no loops over the batch; `np.sum(x, axis=-1)`,
  not `x.sum()` (it also runs on torch).
- Never: classes, try/except, with, global, print/I/O, `__x`, `._x`, eval/exec/open/getattr,
  np.random, writing to state.
- Finite values (`np.maximum(x, 1e-6)` in divisions, logs); reward in about [-10, 10]; bounded
  shaping (`tolerance`, `squash`, `exp_decay`, `linear_ramp`), a small action penalty; not constant."""
"""Every rule of :data:`PROGRAM_RULES` in fewer words (the short form)."""

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
{notes}{results}{failure}
## Your answer
Answer with one JSON object and nothing else:
- "idea": one short sentence on what you change and why;
- "set": a number for every constant above ({names}); keep a value to leave it unchanged;
- "remove_terms": names of terms to drop, from: {terms};
- "add_terms": at most {max_added} new terms, each {{"name": "lower_case_name", "weight": number,
  "expression": "one Python expression over state, action, np and the helpers"}}.
Example: {example}"""

SHORT_DESIGN_TEMPLATE = """\
{common}
{title}

{examples}## Your answer
Write {k_text}.{diversity} Each complete, with its docstring, in its own ```python block after one
sentence on its idea; nothing else in code blocks."""
""":data:`DESIGN_TEMPLATE` in the short form."""

SHORT_REFLECTION_TEMPLATE = """\
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
Analyse the results term by term in a few sentences (success near zero: rethink what is rewarded;
a term that barely changes: rescale, reshape or drop it; one that dwarfs the others: re-weight it;
one that grows while success does not: remove it or gate it on progress). Then write {k_text},
each complete, with its docstring, in its own ```python block."""
""":data:`REFLECTION_TEMPLATE` in the short form."""

SHORT_EDIT_TEMPLATE = """\
{common}
{title}

## Program to change: `{base_name}` (it passes every check; its numbers are the named constants)
```python
{program}
```
{notes}{results}{failure}
## Your answer
One JSON object only: "idea" (one sentence), "set" (a number for every constant above),
"remove_terms" (names of terms to drop), "add_terms" (at most {max_added} of {{"name": "lower_case_name",
"weight": number, "expression": "one Python expression over state, action, np and the helpers"}}).
Example: {example}"""
""":data:`EDIT_TEMPLATE` in the short form."""

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
SHORT_PRELUDE_NOTE = "Helpers: distance, norm, sum_sq, tolerance, squash, linear_ramp, smooth_step."

VIEW_LEVELS: tuple[tuple[int, int | None, bool], ...] = ((64, 240, False), (40, 100, False), (24, 0, False),
                                                        (0, 0, False), (0, 0, True))
"""The compact state views, level 1 onwards: ``(meaning, intro, group)`` of
:meth:`rewardgym.envs.view.ViewSpec.describe` (``rewardgym describe --compact LEVEL``)."""


@dataclass(frozen=True)
class Form:
    """How much documentation a prompt carries (module docstring, "Fitting a context window").

    Attributes:
        prelude: helper documentation, ``"full"``, ``"brief"`` (signatures) or ``"none"``.
        short: the short texts (:data:`SHORT_RULES`, :data:`SHORT_SYSTEM_PROMPT`, short
            requests; a shown program's docstring cut to its first line).
        view: 0: the state view as ``rewardgym describe`` prints it; ``1..len(VIEW_LEVELS)``:
            ever more compact (:data:`VIEW_LEVELS`).
        results: False: a training summary (reflection, edit) is cut to its first line, the
            evaluation (the last resort of the smallest form).
    """

    prelude: str = "full"
    short: bool = False
    view: int = 0
    results: bool = True

    def cuts(self) -> list[str]:
        """What this form shortened, in words, for the report."""
        out = []
        if self.prelude != "full":
            out.append("helper documentation shortened to signatures" if self.prelude == "brief"
                       else "helper documentation")
        if self.short:
            out.append("rules and requests in short form (every rule kept)")
        if self.view:
            meaning, intro, group = VIEW_LEVELS[self.view - 1]
            out.append("state view compact: every field kept, " + (
                "one line per shape and unit (names only)" if group else
                "names, shapes and units only" if meaning == 0 else
                f"meanings cut to {meaning} characters") + (", view introduction dropped" if intro == 0 else
                                                            f", view introduction cut to {intro} characters"))
        if not self.results:
            out.append("training results cut to the evaluation line (where a prompt has them)")
        return out


def _form(prelude: "str | Form") -> Form:
    form = prelude if isinstance(prelude, Form) else Form(prelude=prelude)
    if form.prelude not in PRELUDE_LEVELS:
        raise ValueError(f"prelude must be one of {PRELUDE_LEVELS}, got {form.prelude!r}")
    if not 0 <= form.view <= len(VIEW_LEVELS):
        raise ValueError(f"view level must be in 0..{len(VIEW_LEVELS)}, got {form.view}")
    return form


def describe_task(task: TaskSpec, view: int = 0, instruction: bool = True) -> str:
    """``task.describe()``, with its state view at compact level ``view`` (:data:`VIEW_LEVELS`;
    0: as is) and without the instruction line when ``instruction`` is False."""
    if view == 0:
        return task.describe() if instruction else task.describe(instruction=False)
    meaning, intro, group = VIEW_LEVELS[view - 1]
    return task.describe(meaning, intro, instruction, group=group)


def task_documentation(task: TaskSpec, prelude: "str | Form" = "full", instruction: str | None = None) -> str:
    """What ``rewardgym describe TASK`` prints: ``task.describe()`` + the prelude documentation
    (``prelude="brief"``: helper signatures only; ``"none"``: a one-line note). With a
    :class:`Form`, its compact view (``rewardgym describe --compact LEVEL``); a short form
    leaves out the task's instruction line when ``instruction`` (the behaviour to reward) is
    the same text."""
    from rewardgym.rewards.prelude import describe_prelude

    form = _form(prelude)
    helpers = ((SHORT_PRELUDE_NOTE if form.short else NO_PRELUDE_NOTE) if form.prelude == "none"
               else describe_prelude(brief=form.prelude == "brief"))
    same = form.short and (instruction is None or instruction.strip() == task.instruction.strip())
    return describe_task(task, form.view, instruction=not same) + "\n\n" + helpers


def compact_program(source: str) -> str:
    """``source`` as a short-form prompt shows it: the module docstring cut to its first line,
    comment lines dropped, and ``compute_potential`` / ``compute_success`` replaced by a
    one-line note (the model changes the reward, not those). The reward's code is unchanged.
    Text that does not parse is returned as is."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    lines = source.split("\n")
    replace: list[tuple[int, int, list[str]]] = []
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        summary = first.value.value.strip().split("\n")[0].strip()
        summary = summary.replace("\\", "\\\\").replace(chr(34) * 3, chr(39) * 3)
        replace.append((first.lineno - 1, first.end_lineno, [chr(34) * 3 + summary + chr(34) * 3]))
    hidden = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("compute_potential",
                                                                                  "compute_success")]
    for node in hidden:
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        replace.append((start - 1, node.end_lineno, [f"# {node.name}(state) is defined here too (not shown)"]))
    for start, end, new in sorted(replace, reverse=True):
        lines[start:end] = new
    out = [line for line in lines if not line.lstrip().startswith("#") or "(not shown)" in line]
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


class PromptTooLong(ValueError):
    """Even the smallest form of a prompt exceeds the token budget (the message gives both)."""


@dataclass
class FittedPrompt:
    """A prompt fitted to a budget: ``messages``, their estimated ``tokens``, what was ``cut``."""

    messages: "Messages"
    tokens: int
    cuts: list[str] = field(default_factory=list)


def prompt_forms(build: Callable[[int, "str | Form"], "Messages"], examples: Sequence[str] = (),
                 chars_per_token: float | None = None):
    """Every form of the prompt ``build`` makes, largest first (module docstring): yields
    ``FittedPrompt(messages, tokens, cuts)``, ``tokens`` by the client's estimate (at
    ``chars_per_token``, default 3)."""
    from rewardgym.llm.client import estimate_tokens

    n = len(examples)
    forms = [(k, Form()) for k in range(n, -1, -1)] + [(0, Form("brief")), (0, Form("none")),
                                                        (0, Form("none", short=True))]
    forms += [(0, Form("none", short=True, view=v)) for v in range(1, len(VIEW_LEVELS) + 1)]
    forms.append((0, Form("none", short=True, view=len(VIEW_LEVELS), results=False)))
    for k, form in forms:
        messages = build(k, form)
        yield FittedPrompt(messages, estimate_tokens(messages, chars_per_token),
                           [f"few-shot example {e}" for e in examples[k:]] + form.cuts())


def fit_prompt(build: Callable[[int, "str | Form"], "Messages"], budget: int | None, examples: Sequence[str] = ()
               ) -> FittedPrompt:
    """The largest form of ``build(n_examples, form)`` whose estimate fits ``budget`` tokens.

    Args:
        build: builds the messages with the first ``n_examples`` few-shot programs in the
            given :class:`Form` (passed as the builders' ``prelude`` argument).
        budget: tokens the prompt may take (None: no limit, the full prompt).
        examples: names of the few-shot programs, most similar first (for the cut list).

    Raises:
        PromptTooLong: not even the smallest form fits.
    """
    smallest = None
    for fitted in prompt_forms(build, examples):
        if budget is None or fitted.tokens <= budget:
            return fitted
        smallest = fitted.tokens
    raise PromptTooLong(f"the prompt needs about {smallest} tokens even in its shortest form (no few-shot examples "
                        f"or helper documentation, short rules, the most compact state view), more than the "
                        f"{budget} tokens the context window leaves")


CONTEXT_MARGIN = 64
"""Tokens kept free in the context window besides the prompt estimate and the reply cap: the
first estimate (3 characters per token) undercounted SmolLM2's edit prompts by 1.5% (1,611
estimated, 1,636 counted by llama.cpp), 25 tokens of a 2,048-token window."""
CALIBRATED_MARGIN = 16
""":data:`CONTEXT_MARGIN` once the estimate is calibrated by the server's counts (less 5%, which
already leaves NetHack-Oracle's 1,636-token edit prompt 111 tokens of slack)."""
MIN_REPLY_TOKENS = 512
"""Smallest reply cap a program request may leave (a short program needs about 300-500 tokens)."""
MIN_EDIT_REPLY_TOKENS = 256
"""Smallest reply cap an edit request may leave (one JSON object of named numbers)."""


def fit_request(build: Callable[[int, "str | Form"], "Messages"], context: int | None, reply_cap: int,
                examples: Sequence[str] = (), min_reply: int = MIN_REPLY_TOKENS, chars_per_token: float | None = None,
                margin: int = CONTEXT_MARGIN) -> tuple[FittedPrompt, int]:
    """The prompt and the reply cap of one request to a model with a ``context``-token window.

    In order: the largest form that leaves ``reply_cap`` tokens for the reply and ``margin``
    (:data:`CONTEXT_MARGIN`, or :data:`CALIBRATED_MARGIN` with a calibrated estimate); else
    the largest that leaves a third of the window (at least ``min_reply``), the cap lowered to the room it leaves; else the smallest form, with the
    cap lowered to what is left if that is at least ``min_reply``. A lowered cap is named in
    the cuts. ``context`` None: the full prompt and ``reply_cap``. ``chars_per_token``: the
    estimate's ratio (default 3; the client's calibrated one once the server has counted).

    Raises:
        PromptTooLong: not even the smallest form leaves ``min_reply`` tokens for the reply.
    """
    if context is None:
        return next(prompt_forms(build, examples, chars_per_token)), reply_cap
    forms = []
    for fitted in prompt_forms(build, examples, chars_per_token):
        room = context - margin - fitted.tokens
        if room >= reply_cap:
            return fitted, reply_cap
        forms.append((fitted, room))
    want = max(min_reply, context // 3)
    fitted, room = next(((f, r) for f, r in forms if r >= want), forms[-1])
    if room < min_reply:
        raise PromptTooLong(f"the prompt needs about {fitted.tokens} tokens even in its shortest form, plus at "
                            f"least {min_reply} for the reply: more than the {context}-token context window")
    return FittedPrompt(fitted.messages, fitted.tokens, fitted.cuts + [f"reply cap lowered to {room} tokens"]), room


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


def _common(task: TaskSpec, instruction: str | None, form: Form) -> str:
    return COMMON_TEMPLATE.format(task_doc=task_documentation(task, form, instruction),
                                  instruction=instruction or task.instruction,
                                  rules=SHORT_RULES if form.short else PROGRAM_RULES)


def _system(form: Form) -> dict[str, str]:
    return {"role": "system", "content": SHORT_SYSTEM_PROMPT if form.short else SYSTEM_PROMPT}


def _results(summary: str, form: Form) -> str:
    summary = summary.strip()
    return summary if form.results else summary.split("\n")[0] + " (details left out to fit the context window)"


def designer_messages(task: TaskSpec, instruction: str | None = None, examples: Sequence["LibraryEntry"] = (),
                      k: int = 1, prelude: "str | Form" = "full") -> Messages:
    """System + user messages asking for ``k`` reward programs for ``instruction`` on ``task``.

    Args:
        task: the task (its documentation is included verbatim).
        instruction: the behaviour to reward (default: the task's own instruction).
        examples: few-shot programs, e.g. from :func:`rewardgym.llm_rewards.library.retrieve`.
        k: programs requested, as separate fenced blocks.
        prelude: helper documentation level, or a :class:`Form` (module docstring).
    """
    form = _form(prelude)
    diversity = ("\nMake them genuinely different (which quantities they reward, how they shape and weight\n"
                 "them), so that at least one works well.") if k > 1 else ""
    if form.short and k > 1:
        diversity = " Make them genuinely different in what they reward and how."
    template = SHORT_DESIGN_TEMPLATE if form.short else DESIGN_TEMPLATE
    user = template.format(common=_common(task, instruction, form), title=DESIGN_TITLE,
                           examples=format_examples(examples), k_text=_k_text(k), diversity=diversity)
    return [_system(form), {"role": "user", "content": user}]


def repair_messages(task: TaskSpec, program: str, failure: "CriticResult | str", instruction: str | None = None,
                    attempt: int | None = None, max_attempts: int | None = None,
                    prelude: "str | Form" = "full") -> Messages:
    """System + user messages asking to fix ``program``, which failed with ``failure``.

    Args:
        task: the task.
        program: the failed program's source (shown with line numbers, whole in every form:
            the error's line numbers refer to it).
        failure: the critic's result (its stage, line, term and reason are shown) or a message.
        instruction: the behaviour to reward (default: the task's instruction).
        attempt, max_attempts: shown as "(repair attempt 2 of 3)" when given.
        prelude: helper documentation level, or a :class:`Form`.
    """
    form = _form(prelude)
    att = ""
    if attempt is not None:
        att = f" (repair attempt {attempt}" + (f" of {max_attempts}" if max_attempts else "") + ")"
    user = REPAIR_TEMPLATE.format(common=_common(task, instruction, form), title=REPAIR_TITLE,
                                  numbered=numbered(program), attempt=att, failure=format_failure(failure))
    return [_system(form), {"role": "user", "content": user}]


def reflection_messages(task: TaskSpec, program: str, training_summary: str, instruction: str | None = None,
                        human_feedback: str | None = None, k: int = 1, prelude: "str | Form" = "full") -> Messages:
    """System + user messages asking for ``k`` improved programs after training with ``program``.

    Args:
        task: the task.
        program: the best program so far (its docstring cut to the first line in the short form).
        training_summary: the synthesis loop's text summary of training with it (success
            rate, returns, per-term statistics over training).
        instruction: the behaviour to reward (default: the task's instruction).
        human_feedback: optional free text from a person.
        k: programs requested.
        prelude: helper documentation level, or a :class:`Form`.
    """
    form = _form(prelude)
    feedback = FEEDBACK_TEMPLATE.format(human_feedback=human_feedback.strip()) if human_feedback else ""
    template = SHORT_REFLECTION_TEMPLATE if form.short else REFLECTION_TEMPLATE
    shown = compact_program(program) if form.short else program
    user = template.format(common=_common(task, instruction, form), title=REFLECTION_TITLE,
                           program=shown.rstrip("\n"), training_summary=_results(training_summary, form),
                           feedback=feedback, k_text=_k_text(k))
    return [_system(form), {"role": "user", "content": user}]


def _example_edit(base: "Parameterized", short: bool = False) -> dict[str, Any]:
    """The example of the edit request: a real change (the first weight, ``W_...``, doubled), so a
    model that copies the example still proposes an edit; the short form shows two constants."""
    values = dict(base.values)
    name = next((n for n in values if n.startswith("W_")), next(iter(values), None))
    if name is not None:
        values = {name: values[name] * 2 if values[name] else 1.0,
                  **{n: v for n, v in values.items() if n != name}}
    if short:
        values = dict(list(values.items())[:2])
    idea = f"weight {name} twice as much" if name else "add a small action penalty"
    return {"idea": idea, "set": values, "remove_terms": [], "add_terms": []}


def edit_messages(task: TaskSpec, base: "Parameterized", instruction: str | None = None,
                  training_summary: str | None = None, previous_edit: str | None = None,
                  failure: "CriticResult | str | None" = None, prelude: "str | Form" = "full",
                  notes: str | None = None) -> Messages:
    """System + user messages asking for one JSON edit of ``base`` (edit mode).

    Args:
        task: the task.
        base: the parameterized base program (:func:`rewardgym.llm_rewards.edit.parameterize`;
            its docstring cut to the first line in the short form).
        instruction: the behaviour to reward (default: the task's instruction).
        training_summary: how training with ``base`` went, when it was trained.
        previous_edit, failure: the model's last edit and why it failed (an edit repair).
        prelude: helper documentation level, or a :class:`Form`.
        notes: what to know about the base (e.g. terms that read fields the instruction does
            not involve), shown under the program.
    """
    import json

    from rewardgym.llm_rewards.edit import MAX_ADDED_TERMS

    form = _form(prelude)
    names = ", ".join(base.values) or "(none)"
    terms = ", ".join(base.terms) or "(none: the program returns no terms)"
    example = json.dumps(_example_edit(base, short=form.short))
    if form.short and len(base.values) > 2:  # the constants are listed above: two show the form
        example = example.replace("}, \"remove_terms\"", ", ...}, \"remove_terms\"", 1)
    results = (EDIT_RESULTS_TEMPLATE.format(training_summary=_results(training_summary, form))
               if training_summary else "")
    fail = (EDIT_FAILURE_TEMPLATE.format(edit=previous_edit.strip(), failure=format_failure(failure))
            if previous_edit is not None and failure is not None else "")
    template = SHORT_EDIT_TEMPLATE if form.short else EDIT_TEMPLATE
    program = compact_program(base.source) if form.short else base.source
    user = template.format(common=_common(task, instruction, form), title=EDIT_TITLE, base_name=base.name,
                           program=program.rstrip("\n"), notes=f"\n{notes.strip()}\n" if notes else "",
                           results=results, failure=fail, names=names, terms=terms, max_added=MAX_ADDED_TERMS,
                           example=example)
    return [_system(form), {"role": "user", "content": user}]


def followup_messages(messages: Sequence[dict[str, Any]], reply: str, feedback: str) -> Messages:
    """Continue a conversation: ``messages`` + the assistant's ``reply`` + a user ``feedback``.

    For a reply without a program, ``feedback`` is
    ``NO_CODE_FOLLOWUP.format(reason=exc.reason)`` of the :class:`~rewardgym.llm_rewards.extract.NoCodeFound`.
    """
    return [dict(m) for m in messages] + [{"role": "assistant", "content": reply},
                                          {"role": "user", "content": feedback}]
